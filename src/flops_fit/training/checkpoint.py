"""Mid-run checkpoints, so a killed sweep resumes its interrupted run instead of restarting it.

Layout: ``<output_dir>/checkpoints/<experiment_id>/``

``state.pt``
    The run in progress: model, optimizer, LR scheduler, RNG states (torch,
    CUDA, numpy, python), data position (epoch, offset), step, units seen and
    the loss history so far. Written every ``TrainConfig.checkpoint_every_s``
    seconds (or ``checkpoint_every_steps`` steps) with ``torch.save`` to a temp
    file and ``os.replace``, so a kill leaves the previous checkpoint intact.
``record.json``
    The run's finished record. The run function writes it, deletes
    ``state.pt``, and returns the record; the sweep driver then writes it to
    results.json. If the process dies in between, the redo of that experiment
    returns this record at once instead of training again. The small
    ``record.json`` files are removed by :func:`cleanup_checkpoints` once
    results.json holds them (the API calls it after the sweep).

Both files carry a fingerprint of (experiment, train config, seed, model); a
checkpoint made under different settings is ignored (with a warning) and
replaced, never silently resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

import torch

from flops_fit import io

STATE_FILE = "state.pt"
RECORD_FILE = "record.json"
CHECKPOINT_DIR = "checkpoints"


def checkpoint_dir(output_dir: str | os.PathLike, experiment_id: str) -> Path:
    return Path(output_dir) / CHECKPOINT_DIR / experiment_id


def fingerprint(obj: Any) -> str:
    """Stable short hash of JSON-able settings (repr for anything else)."""
    blob = json.dumps(obj, sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_state(ckpt_dir: Path, state: dict[str, Any]) -> Path:
    """Atomically write the in-progress state (temp file in the same directory, then rename)."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / STATE_FILE
    with io.atomic_open(path, "wb") as fh:
        torch.save(state, fh)
    return path


def load_state(ckpt_dir: Path) -> dict[str, Any] | None:
    """The saved state, or None if there is none (a corrupt file counts as none)."""
    path = ckpt_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        # our own file: it holds numpy RNG state, which weights_only=True refuses
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - a torn/corrupt checkpoint means: start over
        return None


def save_record(ckpt_dir: Path, record: dict[str, Any], fp: str) -> None:
    io.atomic_write_json(ckpt_dir / RECORD_FILE, {"fingerprint": fp, "record": record})


def load_record(ckpt_dir: Path, fp: str) -> dict[str, Any] | None:
    path = ckpt_dir / RECORD_FILE
    if not path.exists():
        return None
    try:
        data = io.read_json(path)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("fingerprint") != fp:
        return None
    return data.get("record")


def remove_state(ckpt_dir: Path) -> None:
    try:
        (ckpt_dir / STATE_FILE).unlink()
    except FileNotFoundError:
        pass


def cleanup_checkpoints(output_dir: str | os.PathLike, experiment_ids: Iterable[str]) -> list[str]:
    """Delete the checkpoint folders of experiments whose results are written; returns those removed.

    Call after the driver has stored the records (e.g. with
    ``store.done_ids(include_failed=False)``); folders of other experiments
    are left alone so their runs can still resume.
    """
    removed = []
    root = Path(output_dir) / CHECKPOINT_DIR
    for exp_id in experiment_ids:
        d = root / exp_id
        if d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
            removed.append(exp_id)
    try:
        root.rmdir()  # only if empty
    except OSError:
        pass
    return removed
