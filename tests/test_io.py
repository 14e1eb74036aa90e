"""Atomic writes: a failure mid-write leaves the old file whole and no temp file behind."""

from __future__ import annotations

import json
import os
import stat

import pytest

from flops_fit import io


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "results.json"
    io.atomic_write_json(path, {"records": [1, 2]})
    with pytest.raises(RuntimeError, match="disk full"):
        with io.atomic_open(path, "w") as fh:
            fh.write('{"records": [1, 2, 3')  # half a file...
            raise RuntimeError("disk full")  # ...then the write fails
    assert json.loads(path.read_text()) == {"records": [1, 2]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_files_get_umask_permissions_not_private_ones(tmp_path):
    old = os.umask(0o022)
    try:
        io.atomic_write_json(tmp_path / "a.json", {"x": 1})
        io.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    finally:
        os.umask(old)
    for name in ("a.json", "b.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644  # readable by a team on shared storage
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_non_finite_floats_become_null_and_bad_mode_is_refused(tmp_path):
    io.atomic_write_json(tmp_path / "n.json", {"loss": float("nan"), "c": [float("inf"), 1.0]})
    assert json.loads((tmp_path / "n.json").read_text()) == {"loss": None, "c": [None, 1.0]}
    with pytest.raises(ValueError, match="mode: expected 'w' or 'wb', found 'a'"):
        with io.atomic_open(tmp_path / "x", "a"):
            pass
