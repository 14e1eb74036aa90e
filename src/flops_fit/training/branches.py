"""Trunk-and-branch training (``design="branches"``; the plan is :mod:`flops_fit.design`).

A trunk trains one model size at the peak LR after warmup and saves a snapshot of its whole state
(model, optimizer, RNG, data position) at every planned fork step, in
``checkpoints/trunk-<size>/fork-<step>/``; between snapshots it checkpoints like any run, so a
killed trunk resumes from its latest state. A branch is a normal run of its own experiment whose
first start loads the snapshot at its fork step instead of step 0, then trains its WSD cooldown:
it equals, step for step, the WSD run of its own length that shares the trunk's warmup.

Trunks are trained on demand by the first branch that needs one, under a blocking lock on the
trunk's folder, so any executor (one process, a pool, a cluster job array) can run branches in any
order: a second branch of the same size waits for the trunk, then finds its snapshot.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable

from flops_fit import io
from flops_fit.training import checkpoint as ckpt
from flops_fit.training.schedule import CONSTANT
from flops_fit.training.store import RunRecord
from flops_fit.training.trainer import RunInputs, _Run

TRUNK_LOCK = ".trunk.lock"


def _snapshot_dir(trunk_dir: Path, step: int) -> Path:
    return trunk_dir / f"fork-{int(step):09d}"


def trunk_fingerprint(inp: RunInputs, trunk: dict[str, Any], trunk_id: str, precision: str) -> str:
    """What a trunk's states must match: the model at this size, the training settings, the seed, the precision
    and the warmup. Not its length: a trunk is a prefix of any longer one, so it can be extended."""
    return ckpt.fingerprint({
        "trunk": [trunk_id, trunk["size_value"], trunk["num_params"], trunk["warmup_steps"]],
        "config": inp.config.identity(), "seed": inp.seed, "model_kwargs": inp.model_kwargs,
        "size_param": inp.size_param, "precision": precision,
    })


class _Trunk(_Run):
    """A trunk to its last planned fork step: constant LR after warmup, a snapshot at every fork step, no
    validation and no record."""

    def __init__(self, inp: RunInputs, trunk_id: str, trunk: dict[str, Any], fp: str, start_limit: int) -> None:
        """`start_limit`: resume from no state beyond this step (the first fork whose snapshot is missing)."""
        last = max(trunk["fork_steps"])
        ups = inp.config.batch_size * inp.config.grad_accum_steps * inp.info.units_per_sample
        exp = SimpleNamespace(experiment_id=trunk_id, size_value=trunk["size_value"], num_params=trunk["num_params"],
                              num_tokens=float(last * ups), compute_budget=0.0)
        super().__init__(exp, dataclasses.replace(inp, callbacks=(), design=None), schedule=CONSTANT,
                         warm=trunk["warmup_steps"])
        self.fp, self.forks, self.last, self.limit = fp, set(trunk["fork_steps"]), last, start_limit

    def _resume(self) -> None:
        """The latest of the trunk's own checkpoint and its snapshots up to the start limit (a design that
        grew may fork below where the trunk has been: it goes on from the last state before that fork)."""
        best = ckpt.load_state(self.ckpt_dir, self.fp)
        if best is not None and best["step"] > self.limit:
            best = None
        for step in sorted((s for s in self.forks if s <= self.limit), reverse=True):
            if best is not None and best["step"] >= step:
                break
            snap = _snapshot_dir(self.ckpt_dir, step)
            if (snap / ckpt.STATE_FILE).exists():
                state = ckpt.load_state(snap, self.fp)
                if state is not None:
                    best = state
                    break
        if best is not None:
            self._load(best)

    def run(self) -> int:
        """Train to the last fork step; returns the step it started from (0, or where it resumed)."""
        self._build()
        start = self.step
        last_ckpt = time.perf_counter()
        while self.step < self.last:
            self._train_step(self._micro_batches())
            if self.step in self.forks or self.step % self.cfg.log_every == 0:
                reason = self._drain()
                if reason:
                    raise RuntimeError(f"{self.exp.experiment_id}: the trunk diverged ({reason}); its branches "
                                       "cannot be trained")
            if self.step in self.forks:
                ckpt.save_state(_snapshot_dir(self.ckpt_dir, self.step), self._state())
            elif self.step < self.last and self._checkpoint_due(last_ckpt):
                self._save_checkpoint()
                last_ckpt = time.perf_counter()
        self._drain()
        self._save_checkpoint()  # the end state: a longer design later extends the trunk from here
        return start


def ensure_trunk(inp: RunInputs, trunk_id: str, fork_step: int, precision: str) -> dict[str, Any]:
    """Train the trunk (from its latest state) unless the snapshot at `fork_step` exists. What was trained here
    ({} if nothing): seconds, and the steps from and to, for the record of the branch that paid for it."""
    t0 = time.perf_counter()
    trunk = inp.design["trunks"][trunk_id]
    fp = trunk_fingerprint(inp, trunk, trunk_id, precision)
    trunk_dir = ckpt.checkpoint_dir(inp.output_dir, trunk_id)
    with ckpt.run_lock(trunk_dir, name=TRUNK_LOCK, wait=True):  # a second branch waits for the first
        if _has_snapshot(trunk_dir, fork_step, fp):
            return {}
        missing = [s for s in trunk["fork_steps"] if not _has_snapshot(trunk_dir, s, fp)]
        start = _Trunk(inp, trunk_id, trunk, fp, min(missing)).run()
    return {"trunk_wall_time_s": time.perf_counter() - t0, "trunk_trained_from_step": start,
            "trunk_trained_to_step": max(trunk["fork_steps"])}


def _has_snapshot(trunk_dir: Path, step: int, fp: str) -> bool:
    try:
        return io.read_json(_snapshot_dir(trunk_dir, step) / ckpt.STATE_GATE).get("fingerprint") == fp
    except (FileNotFoundError, ValueError, AttributeError):
        return False


def load_fork(fork: dict[str, Any]) -> dict[str, Any]:
    """The trunk's state at a branch's fork step (checked against the trunk's fingerprint)."""
    state = ckpt.load_state(_snapshot_dir(Path(fork["trunk_dir"]), fork["fork_step"]), fork["trunk_fp"])
    if state is None or int(state["step"]) != int(fork["fork_step"]):
        raise RuntimeError(f"{fork['trunk_id']}: no usable snapshot at step {fork['fork_step']}; the trunk is "
                           "trained again on the next attempt")
    return state


def train_branch(exp: Any, inp: RunInputs) -> RunRecord | None:
    """One cooldown branch: its own record or checkpoint if it has one, else fork from the trunk (trained
    first if need be) and train the cooldown."""
    br = inp.design["branches"][exp.experiment_id]
    tid = br["trunk_id"]
    trunk = inp.design["trunks"][tid]
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        raise ValueError("design: 'branches' trains each run in one process; data-parallel branches are not "
                         "supported (use design='separate' for a DDP run)")
    from flops_fit.training.trainer import resolve_device, resolve_dtype

    precision = "bf16-autocast" if resolve_dtype(inp.config, resolve_device(inp.config)) is not None else "fp32"
    fp = trunk_fingerprint(inp, trunk, tid, precision)
    fork = {"trunk_id": tid, "fork_step": int(br["fork_step"]), "warmup_steps": int(trunk["warmup_steps"]),
            "trunk_fp": fp, "trunk_dir": str(ckpt.checkpoint_dir(inp.output_dir, tid))}
    run = _Run(exp, inp, fork=fork)
    own = (run.ckpt_dir / ckpt.RECORD_FILE).exists() or (run.ckpt_dir / ckpt.STATE_FILE).exists()
    run.trunk_work = {} if own else ensure_trunk(inp, tid, fork["fork_step"], precision)
    run.t_start = time.perf_counter()  # the branch's own wall time starts here, after the trunk
    with ckpt.run_lock(run.ckpt_dir):
        return run.train()


def cleanup_trunks(output_dir: str | Path, design: dict[str, Any] | None, done: Iterable[str]) -> list[str]:
    """Delete the folders of trunks all of whose branches have their results written; returns those removed."""
    if not design:
        return []
    done = set(done)
    removed = []
    for tid, trunk in design.get("trunks", {}).items():
        if set(trunk.get("branches", [])) <= done:
            d = ckpt.checkpoint_dir(output_dir, tid)
            if d.is_dir() and not d.is_symlink():
                shutil.rmtree(d, ignore_errors=True)
                removed.append(tid)
    return removed
