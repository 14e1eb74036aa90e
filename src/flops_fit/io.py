"""Crash-safe JSON files: every file the pipeline writes is replaced atomically.

A kill, a crash or a full disk at any moment leaves either the old file or the
new one, never half of either.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file beside `path`; on success fsync it and rename it over `path`, else delete it.

    The file gets the permissions a plain ``open`` would (umask), not mkstemp's 0600,
    so results on shared storage stay readable by the rest of a team.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb', found {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a quota: say which file could not be written
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise OSError(exc.errno, f"{path}: could not be written ({exc.strerror or exc}); the previous version "
                                 "is intact") from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def atomic_write_bytes(path: str | os.PathLike, content: bytes) -> None:
    """Replace `path` with `content` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(content)


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Replace `path` with JSON (NaN/inf stored as null) atomically."""
    text = json.dumps(_finite(data), indent=1, sort_keys=False, allow_nan=False)
    with atomic_open(path, "w") as fh:
        fh.write(text)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: store them as null so every file stays standard JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        try:
            return _finite(obj.item())
        except (TypeError, ValueError):
            return obj
    return obj


def read_json(path: str | os.PathLike) -> Any:
    """Read a pipeline file; a missing or corrupt file raises an error naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); the file is corrupt") from None
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "the file is corrupt or was edited by hand"
        ) from None


def check_header(data: Any, kind: str, schema: int, source: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object, found {type(data).__name__}")
    if data.get("kind") != kind:
        raise ValueError(f"{source}: field 'kind': expected {kind!r}, found {data.get('kind')!r}")
    if data.get("schema") != schema:
        raise ValueError(
            f"{source}: field 'schema': expected {schema} (this version of flops-fit), "
            f"found {data.get('schema')!r}"
        )


def require(data: dict, key: str, source: str) -> Any:
    if key not in data:
        raise ValueError(f"{source}: required field {key!r} is missing")
    return data[key]


#: What an id or name read from a file may look like before it touches the file system:
#: letters, digits and ``. _ + -``, starting with a letter or digit, at most 128 characters.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def check_id(value: Any, source: str) -> str:
    """`value` if it is a safe id (no separators, no '..', a fixed character set), else ValueError naming `source`."""
    if not isinstance(value, str) or not _ID.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{source}: expected an id of letters, digits and '._+-' (no path separators, no '..', at most 128 "
            f"characters), found {value!r}; the file may have been edited or planted"
        )
    return value


def inside(root: str | os.PathLike, *parts: str) -> Path:
    """root/parts..., refused unless it resolves (symlinks followed) to a path under root."""
    base = Path(root).resolve()
    path = Path(root, *parts)
    real = path.resolve()
    if real != base and base not in real.parents:
        raise ValueError(f"{path}: resolves to {real}, outside {base}; refusing to touch it")
    return path


def clean_stale_temp_files(root: str | os.PathLike, older_than_s: float = 900.0) -> list[Path]:
    """Remove the atomic writers' temp files (``.<name>.*.tmp``) that a killed writer left behind.

    Only files older than `older_than_s` are removed, so a writer still at work
    (a job-array task, a run saving a checkpoint) keeps its own. Symlinks are never followed.
    """
    removed = []
    now = time.time()
    base = Path(root)
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        for name in filenames:
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            p = Path(dirpath) / name
            try:
                st = p.lstat()
                if not p.is_symlink() and now - st.st_mtime > older_than_s:
                    p.unlink()
                    removed.append(p)
            except OSError:
                continue
    return removed


@contextlib.contextmanager
def open_lock_file(path: str | os.PathLike) -> Iterator[int]:
    """A lock file's descriptor, opened without following a symlink (O_NOFOLLOW): a planted link to a
    user's file is refused, never truncated or written through."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if Path(path).is_symlink():
            raise ValueError(f"{path}: is a symbolic link; refusing to use it as a lock file (remove it)") from None
        raise OSError(exc.errno, f"{path}: cannot open the lock file: {exc.strerror}") from None
    try:
        yield fd
    finally:
        os.close(fd)
