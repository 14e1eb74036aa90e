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

``state.json``
    The gate of ``state.pt``: its fingerprint, read (as plain JSON) before the
    tensor file is opened at all.

An output directory is untrusted input (shared, copied, synced): a checkpoint
holds tensors and plain values only and is read with ``torch.load(weights_only=True)``,
which refuses anything that would run code. A checkpoint made under other settings,
a torn file, or one that is not plain data is reported in one warning line naming
the file and set aside as ``state.pt.rejected-<time>`` (kept for a human to
inspect), never resumed and never silently dropped. Ids are validated before they
reach the file system, and every path must stay under the output directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from flops_fit import io

STATE_FILE = "state.pt"
STATE_GATE = "state.json"
RECORD_FILE = "record.json"
from flops_fit.layout import CHECKPOINT_DIR, RunDir  # noqa: E402


def checkpoint_dir(output_dir: str | os.PathLike, experiment_id: str) -> Path:
    """checkpoints/<id>/ of one experiment; the id is validated and the path must stay inside output_dir."""
    return RunDir(output_dir).checkpoint(experiment_id)


def fingerprint(obj: Any) -> str:
    """Stable short hash of JSON-able settings (repr for anything else)."""
    blob = json.dumps(obj, sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_state(ckpt_dir: Path, state: dict[str, Any]) -> Path:
    """Atomically write the in-progress state (tensors and plain values; `state["fingerprint"]` required),
    then its JSON gate. A kill between the two leaves a gate of the same run: both are checked on load."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / STATE_FILE
    with io.atomic_open(path, "wb") as fh:
        torch.save(state, fh)
    io.atomic_write_json(ckpt_dir / STATE_GATE, {"fingerprint": state["fingerprint"]})
    return path


def load_state(ckpt_dir: Path, fp: str) -> dict[str, Any] | None:
    """The saved state of the run with fingerprint `fp`, or None.

    The fingerprint is read from the JSON gate first, so a foreign checkpoint's tensor
    file is never opened; the tensor file is then read with weights_only=True. Anything
    that does not check out is set aside with one warning naming the file.
    """
    path = ckpt_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        gate = io.read_json(ckpt_dir / STATE_GATE)
    except (FileNotFoundError, ValueError):
        gate = None
    if not isinstance(gate, dict) or gate.get("fingerprint") != fp:
        why = "it was made with different settings" if isinstance(gate, dict) else "its state.json is missing or corrupt"
        set_aside(path, why)
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torn, corrupt, or not plain data (a pickle payload is refused here)
        set_aside(path, f"it could not be read as plain tensors ({type(exc).__name__}: {str(exc)[:120]})")
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fp:
        set_aside(path, "its contents belong to another run")
        return None
    return state


def set_aside(path: Path, why: str) -> Path:
    """Rename a checkpoint that will not be resumed to <name>.rejected-<time>, with one warning line."""
    aside = path.with_name(f"{path.name}.rejected-{time.strftime('%Y%m%d-%H%M%S')}")
    k = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.rejected-{time.strftime('%Y%m%d-%H%M%S')}-{k}")
        k += 1
    try:
        os.replace(path, aside)
    except OSError:
        aside = path
    warnings.warn(f"{path}: not resumed because {why}; set aside as {aside.name}, the run starts from step 0",
                  UserWarning, stacklevel=3)
    return aside


RUN_LOCK = ".run.lock"


class RunBusyError(RuntimeError):
    """Another process holds this experiment's run lock: it is training the same run right now."""


@contextlib.contextmanager
def run_lock(ckpt_dir: Path, *, name: str = RUN_LOCK, wait: bool = False) -> Iterator[None]:
    """Hold checkpoints/<id>/.run.lock while training, so no two processes (an orphan of a killed driver, a
    job of an earlier submission) ever train the same experiment into the same checkpoint. `wait`: block
    until the lock is free instead of raising RunBusyError (a trunk that a second branch waits for)."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with io.open_lock_file(ckpt_dir / name) as fd:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusyError(f"{ckpt_dir / name}: another process is training this experiment now; "
                               "it is retried once that process has finished") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def save_record(ckpt_dir: Path, record: dict[str, Any], fp: str) -> None:
    io.atomic_write_json(ckpt_dir / RECORD_FILE, {"fingerprint": fp, "record": record})


def load_record(ckpt_dir: Path, fp: str) -> dict[str, Any] | None:
    """The finished record of the run with fingerprint `fp`, or None; a record that is not a valid
    results record (a forged or damaged file) is set aside with a warning."""
    from flops_fit.training.store import RunRecord

    path = ckpt_dir / RECORD_FILE
    if not path.exists():
        return None
    try:
        data = io.read_json(path)
    except ValueError as exc:
        set_aside(path, str(exc))
        return None
    if not isinstance(data, dict) or data.get("fingerprint") != fp:
        set_aside(path, "it was made with different settings")
        return None
    try:
        RunRecord.from_dict(data.get("record"), str(path), 0)
    except (ValueError, TypeError) as exc:
        set_aside(path, str(exc))
        return None
    return data.get("record")


def remove_state(ckpt_dir: Path) -> None:
    for name in (STATE_FILE, STATE_GATE):
        try:
            (ckpt_dir / name).unlink()
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
        d = checkpoint_dir(output_dir, exp_id)  # refuses an id that would reach outside output_dir
        if d.is_dir() and not d.is_symlink():
            shutil.rmtree(d, ignore_errors=True)
            removed.append(exp_id)
    try:
        root.rmdir()  # only if empty
    except OSError:
        pass
    return removed
