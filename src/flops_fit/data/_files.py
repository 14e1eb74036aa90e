"""Atomic file writes for the data caches (thin names over flops_fit.io, which every writer shares)."""

from __future__ import annotations

import os

from flops_fit.io import atomic_open, atomic_write_bytes


def atomic_write(path: str | os.PathLike[str], content: bytes) -> None:
    """Write ``content`` to ``path`` atomically (readers never see half a file)."""
    atomic_write_bytes(path, content)


__all__ = ["atomic_open", "atomic_write"]
