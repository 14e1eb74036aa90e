"""One real training run: AdamW, warmup + cosine to the run's own last step, exact token budget.

:func:`train_run` trains one experiment of a sweep and returns its
:class:`~flops_fit.training.store.RunRecord`. It never reads the sweep's files;
it only writes its own checkpoint folder (see :mod:`flops_fit.training.checkpoint`).

Token budget
    steps = ceil(D / units_per_step), units_per_step = batch_size ·
    grad_accum_steps · units_per_sample. Every step but the last takes full
    micro-batches; the last one is cut to the first whole samples that reach
    D, so a run trains on ``units_trained`` ∈ [D, D + units_per_sample) units
    (exactly ceil(D / units_per_sample) samples when every sample has the same
    size) and ``details["units_trained"]`` records the count. With padded
    (masked) data the units per step vary: training still stops at the first
    sample that reaches D, and the schedule, planned for the nominal step
    count, holds its final LR for any extra steps.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from flops_fit import flops as flops_mod
from flops_fit.training import checkpoint as ckpt
from flops_fit.training.datautil import (
    SIG_BATCH,
    SIG_LABELS,
    DataInfo,
    DataSource,
    SampleStream,
    batch_size_of,
    call_loss,
    call_model,
    check_repeat,
    slice_batch,
    slice_rows,
    to_device,
    units_per_item,
)
from flops_fit.training.config import TrainConfig  # noqa: F401  (re-exported: flops_fit.training.trainer.TrainConfig)
from flops_fit.training.schedule import (  # noqa: F401  (re-exported)
    CONSTANT,
    cooldown_steps,
    describe_schedule,
    effective_lr,
    lr_factor,
    warmup_steps,
)
from flops_fit.training.store import STATUS_COMPLETED, STATUS_DIVERGED, RunRecord

#: a run that trains longer than this without a terminal logs a progress line this often (seconds)
RUN_LOG_EVERY_S = 60.0



# ---------------------------------------------------------------------------
# pieces


def resolve_device(config: TrainConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        why = "this PyTorch build has no CUDA" if not torch.backends.cuda.is_built() else "no CUDA device is visible"
        raise ValueError(f"TrainConfig.device: {config.device!r} was asked for, but {why}; use device='auto' "
                         "(CUDA when available, else CPU) or 'cpu'")
    return device


def resolve_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = plain fp32)."""
    if config.dtype == "bf16" or (config.dtype == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    if callable(getattr(model, "optimizer_param_groups", None)):
        return list(model.optimizer_param_groups(lr, weight_decay))
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "lr": lr, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0})
    return groups


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA: peak allocated tensor memory; CPU: peak resident set size of the process."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def resolve_loss_signature(loss_fn: Callable[..., Any], outputs: Any, batch: Any) -> tuple[str, Any]:
    """(signature, loss): try loss_fn(outputs, batch); for pairs fall back to loss_fn(outputs, labels)."""
    try:
        return SIG_BATCH, loss_fn(outputs, batch)
    except Exception as first:  # noqa: BLE001
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            try:
                return SIG_LABELS, loss_fn(outputs, batch[1])
            except Exception:  # noqa: BLE001
                pass
        raise first


def compute_loss(loss_fn: Callable[..., Any], outputs: Any, batch: Any, signature: str) -> tuple[str, Any]:
    """(signature, loss); signature "auto" is resolved on this call (see resolve_loss_signature)."""
    if signature == "auto":
        return resolve_loss_signature(loss_fn, outputs, batch)
    return signature, call_loss(loss_fn, outputs, batch, signature)


def evaluate(model: torch.nn.Module, val_batches: Sequence[Any], loss_fn: Callable[..., Any], signature: str,
             info: DataInfo, device: torch.device, amp_dtype: torch.dtype | None) -> float:
    """Unit-weighted mean loss over the validation batches."""
    was_training = model.training
    model.eval()
    total, weight = 0.0, 0.0
    with torch.no_grad():
        for batch in val_batches:
            w = float(units_per_item(batch, info).sum())
            b = to_device(batch, device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                signature, loss = compute_loss(loss_fn, call_model(model, b), b, signature)
            total += float(loss.detach().float()) * w
            weight += w
    model.train(was_training)
    return total / weight if weight > 0 else float("nan")


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain values, so a checkpoint loads with weights_only=True."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------
# the run


@dataclass
class RunInputs:
    """Everything one run needs besides its Experiment (built once per sweep by local.make_run_fn)."""

    model_factory: Callable[..., torch.nn.Module]
    size_param: str
    model_kwargs: dict[str, Any]
    source: DataSource
    train_indices: np.ndarray | None
    skip: int
    train_units: float | None  # units in the training split (None: unknown)
    val_batches: list[Any]
    val_units: float
    info: DataInfo
    loss_fn: Callable[..., Any]
    config: TrainConfig
    output_dir: Path
    seed: int
    flops_accounting: str = flops_mod.FLOPS_6ND
    allow_repeat: bool = True
    #: called on rank 0 with the trained model of a completed run, before its record is written (e.g. to save
    #: the weights of a single model run); a sweep needs none
    on_finish: Callable[[torch.nn.Module], None] | None = None
    #: trackers (flops_fit.tracking.Callback) told the training metrics at each read-back
    callbacks: tuple = ()
    #: the sweep's trunk-and-branch design (sweep.json's "design"), None for separate runs
    design: dict[str, Any] | None = None


def _build_model(inp: RunInputs, size_value: int) -> torch.nn.Module:
    kwargs = dict(inp.model_kwargs)
    kwargs[inp.size_param] = size_value
    return inp.model_factory(**kwargs)


def run_fingerprint(exp: Any, inp: RunInputs, precision: str, fork: dict[str, Any] | None = None) -> str:
    """Settings a run's checkpoint must match to be resumed. Operational settings (threads, progress, the
    number of DDP processes: the global batch is the same) may change; the resolved precision may not, so a
    CPU (fp32) checkpoint never resumes as bf16 on a GPU."""
    return ckpt.fingerprint(
        {
            "experiment": [exp.experiment_id, exp.size_value, exp.num_params, exp.num_tokens],
            "config": inp.config.identity(),
            "seed": inp.seed,
            "model_kwargs": inp.model_kwargs,
            "size_param": inp.size_param,
            "val_units": inp.val_units,
            "flops_accounting": inp.flops_accounting,
            "precision": precision,
            **({"fork": fork} if fork else {}),  # a branch never resumes a separate run's checkpoint, or back
        }
    )


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, lr: float, warm: int, total_steps: int,
                   schedule: str | None = None) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over :func:`param_groups`, with the config's schedule (:func:`lr_factor`; `schedule` overrides
    it: a trunk holds the peak) ending at step total_steps - 1."""
    optimizer = torch.optim.AdamW(
        param_groups(model, lr, cfg.weight_decay), lr=lr, betas=cfg.betas, eps=cfg.eps,
        weight_decay=cfg.weight_decay, foreach=True,
    )
    shape = dict(min_ratio=cfg.min_lr_ratio, schedule=schedule or cfg.schedule, cooldown_fraction=cfg.cooldown_fraction,
                 cooldown_shape=cfg.cooldown_shape)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warm, total_steps, **shape))
    return optimizer, scheduler


def train_run(exp: Any, inp: RunInputs) -> RunRecord | None:
    """Train one experiment to exactly its D units; resumable from its checkpoint.

    In one process it holds the run's lock, so no second process trains the same
    experiment at once. In a process group (``torch.distributed``; see
    :mod:`flops_fit.training.distributed`) every rank calls it: each trains its share
    of every global micro-batch under DistributedDataParallel, the losses that decide
    divergence are reduced over ranks (every rank decides alike), rank 0 alone writes
    checkpoints and returns the record, the others return None.
    """
    if inp.design is not None and exp.experiment_id in inp.design.get("branches", {}):
        from flops_fit.training.branches import train_branch

        return train_branch(exp, inp)
    run = _Run(exp, inp)
    if run.world > 1:
        return run.train()
    with ckpt.run_lock(run.ckpt_dir):
        return run.train()


class _Run:
    """One run's state and its steps: setup, resume, micro-batches, step, read-back, checkpoint, record."""

    def __init__(self, exp: Any, inp: RunInputs, *, fork: dict[str, Any] | None = None,
                 schedule: str | None = None, warm: int | None = None) -> None:
        """`fork` (a cooldown branch): {"trunk_id", "fork_step", "warmup_steps", "trunk_dir", "trunk_fp"}: the
        run starts from the trunk's state at fork_step with the trunk's warmup. `schedule`/`warm` override the
        config's (a trunk: constant LR after its warmup)."""
        self.t_start = time.perf_counter()
        self.cpu_train_s: float | None = None  # set when the loop ends
        self.exp, self.inp, self.cfg = exp, inp, inp.config
        self.fork, self.schedule, self.forked_at = fork, schedule or inp.config.schedule, None
        self.ddp = dist.is_available() and dist.is_initialized()
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if self.ddp else (0, 1)
        if self.world > 1 and inp.info.has_mask:
            raise ValueError("inp.info.has_mask: data-parallel training expects a fixed number of units per sample, "
                             "found data with an attention mask; train this run in one process")
        if self.cfg.num_threads:
            torch.set_num_threads(self.cfg.num_threads)
        device = resolve_device(self.cfg)
        if self.ddp and device.type == "cuda" and device.index is None:  # each rank its own GPU
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        self.device, self.amp_dtype = device, resolve_dtype(self.cfg, device)
        self.precision = "bf16-autocast" if self.amp_dtype is not None else "fp32"
        self.ckpt_dir = ckpt.checkpoint_dir(inp.output_dir, exp.experiment_id)
        self.fp = run_fingerprint(exp, inp, self.precision, None if fork is None else {
            k: fork[k] for k in ("trunk_id", "fork_step", "warmup_steps", "trunk_fp")})
        self.D = float(exp.num_tokens)
        self.units_per_step = self.cfg.batch_size * self.cfg.grad_accum_steps * inp.info.units_per_sample
        self.total_steps = max(1, math.ceil(self.D / self.units_per_step - 1e-9))
        self.lr = effective_lr(self.cfg, float(exp.num_params))
        self.warm = warm if warm is not None else fork["warmup_steps"] if fork is not None else \
            warmup_steps(self.cfg, self.total_steps, float(exp.num_params), self.units_per_step)
        self.curve_every = max(1, self.total_steps // self.cfg.loss_curve_points)
        self.step, self.units_seen, self.resumed_from, self.prior_wall = 0, 0.0, 0, 0.0
        self.initial_loss: float | None = None
        self.ema: float | None = None
        self.curve: list[list[float]] = []
        self.flops_per_unit: float | None = None
        self.pending: list[torch.Tensor] = []  # per-step losses not yet reduced or read back
        self.signature = inp.info.loss_signature
        self.status, self.stop_reason = STATUS_COMPLETED, ""

    # ---- setup ----------------------------------------------------------------
    def _build(self) -> None:
        inp, cfg = self.inp, self.cfg
        check_repeat(self.D, inp.train_units, allow_repeat=inp.allow_repeat, run=self.exp.experiment_id)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        seed_everything(inp.seed)
        self.model = _build_model(inp, self.exp.size_value).to(self.device)
        self.model.train()
        self.optimizer, self.scheduler = make_optimizer(self.model, cfg, self.lr, self.warm, self.total_steps,
                                                        self.schedule)
        self.stream = SampleStream(inp.source, seed=inp.seed, indices=inp.train_indices, skip=inp.skip,
                                   allow_repeat=inp.allow_repeat)
        self._resume()
        if cfg.measure_flops and self.flops_per_unit is None and inp.val_batches:  # before DDP hooks the model
            self.flops_per_unit = _measure_flops(self.model, inp.val_batches[0], inp, self.signature, self.device,
                                                 self.amp_dtype)
        net = self.model
        if cfg.compile:  # True: torch's default mode; a string names the mode ("reduce-overhead": CUDA graphs)
            net = torch.compile(self.model, mode=None if cfg.compile is True else cfg.compile)
        if self.ddp:
            net = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.net = net

    def _resume(self) -> None:
        state = ckpt.load_state(self.ckpt_dir, self.fp)  # None unless this run's own plain-tensor checkpoint
        if state is None and self.fork is not None:  # a branch's first start: the trunk at its fork step
            from flops_fit.training.branches import load_fork

            self._load(load_fork(self.fork))
            self.forked_at = (self.step, self.units_seen)
            self.prior_wall, self.resumed_from = 0.0, 0  # the trunk's time is the trunk's, not this branch's
            self.scheduler.last_epoch = self.step  # the trunk's last step may not have stepped its scheduler
            for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):  # this run's LR now
                group["lr"] = base * self.scheduler.lr_lambdas[0](self.step)
            return
        if state is not None:
            self._load(state)

    def _load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.stream.load_state(state["data"])
        self.step, self.units_seen = int(state["step"]), float(state["units_seen"])
        self.initial_loss, self.ema, self.curve = state["initial_loss"], state["ema"], list(state["curve"])
        self.prior_wall = float(state["wall_time_s"])
        self.flops_per_unit = state.get("flops_per_unit")
        self.resumed_from = self.step
        if state.get("forked_at") is not None:
            self.forked_at = (int(state["forked_at"][0]), float(state["forked_at"][1]))
        _set_rng_state(state["rng"])

    def _state(self) -> dict[str, Any]:
        """Everything a resume needs, as plain tensors and values (no pickled objects)."""
        return {
            "fingerprint": self.fp, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": _rng_state(), "data": self.stream.state(),
            "step": self.step, "units_seen": self.units_seen, "initial_loss": self.initial_loss, "ema": self.ema,
            "curve": self.curve, "wall_time_s": self.prior_wall + time.perf_counter() - self.t_start,
            "flops_per_unit": self.flops_per_unit,
            "forked_at": list(self.forked_at) if self.forked_at is not None else None,
        }

    def _save_checkpoint(self) -> None:
        if self.rank == 0:
            ckpt.save_state(self.ckpt_dir, self._state())
        if self.ddp:
            dist.barrier()

    # ---- one optimizer step -------------------------------------------------------
    def _micro_batches(self) -> list[tuple[Any, float, int]]:
        """(collated global micro-batch, its units, its samples) for one step, the last cut to reach D."""
        remaining = min(self.units_per_step, self.D - self.units_seen)
        micro = []
        for _ in range(self.cfg.grad_accum_steps):
            if remaining <= 1e-9:
                break
            n = self.cfg.batch_size
            if not self.inp.info.has_mask:  # fixed units per sample: take only what is needed
                n = min(n, max(1, math.ceil(remaining / self.inp.info.units_per_sample - 1e-9)))
            batch = self.stream.take_batch(n)
            per = units_per_item(batch, self.inp.info)
            total = float(per.sum())
            if total > remaining:
                cum = torch.cumsum(per, 0)
                k = min(int(torch.searchsorted(cum, torch.tensor(remaining - 1e-9))) + 1, len(per))
                if k < len(per):
                    batch, total = slice_batch(batch, k), float(cum[k - 1])
            micro.append((batch, total, batch_size_of(batch)))
            remaining -= total
        return micro

    def _train_step(self, micro: list[tuple[Any, float, int]]) -> None:
        """Forward and backward of this rank's share of each micro-batch (gradients synchronised on the last
        only), clip, AdamW step, schedule step."""
        n_step = sum(m[2] for m in micro)
        step_loss = None
        for j, (batch, units, n) in enumerate(micro):
            weight = n / n_step
            if self.world > 1:
                lo, hi = _share(n, self.world, self.rank)
                # an empty share still joins the all-reduce, with weight 0
                batch = slice_rows(batch, lo, hi) if hi > lo else slice_batch(batch, 1)
                weight = (hi - lo) * self.world / n_step
            b = to_device(batch, self.device)
            sync = not self.ddp or j == len(micro) - 1
            with contextlib.nullcontext() if sync else self.net.no_sync():
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    out = call_model(self.net, b)
                    self.signature, loss = compute_loss(self.inp.loss_fn, out, b, self.signature)
                scaled = loss * weight if weight != 1.0 else loss
                scaled.backward()
            ld = scaled.detach() / self.world if self.world > 1 else scaled.detach()
            step_loss = ld if step_loss is None else step_loss + ld
            self.units_seen += units
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip, foreach=True)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.step + 1 < self.total_steps:  # hold the final LR for any extra (masked-data) steps
            self.scheduler.step()
        self.step += 1
        self.pending.append(step_loss)

    def _drain(self) -> str:
        """Read back pending losses (summed over ranks: one collective, one host sync): divergence check, EMA,
        loss curve. Every rank sees the same values and so stops alike. Returns a stop reason or ''."""
        if not self.pending:
            return ""
        values = torch.stack(self.pending).float()
        if self.ddp:
            dist.all_reduce(values)
        values = values.cpu().tolist()
        first = self.step - len(values)
        self.pending = []
        cfg = self.cfg
        for i, v in enumerate(values):
            s = first + i
            if self.initial_loss is None:
                self.initial_loss = v
            if not math.isfinite(v):
                return f"non-finite training loss ({v}) at step {s}"
            self.ema = v if self.ema is None else 0.9 * self.ema + 0.1 * v
            if s % self.curve_every == 0 or s == self.total_steps - 1:
                self.curve.append([s, v])
            if math.isfinite(self.initial_loss) and self.ema > cfg.divergence_factor * self.initial_loss:
                return (f"smoothed training loss {self.ema:.4g} exceeded {cfg.divergence_factor:g} x initial loss "
                        f"{self.initial_loss:.4g} at step {s}")
        if self.inp.callbacks and self.rank == 0:
            from flops_fit.tracking import notify

            notify(self.inp.callbacks, "on_step", self.exp, self.step,
                   {"loss": values[-1], "smoothed_loss": self.ema, "lr": self.optimizer.param_groups[0]["lr"]})
        return ""

    def _checkpoint_due(self, last: float) -> bool:
        if self.cfg.checkpoint_every_steps:
            return self.step % self.cfg.checkpoint_every_steps == 0
        due = time.perf_counter() - last >= self.cfg.checkpoint_every_s
        if self.ddp:  # ranks must agree on a time-based checkpoint: rank 0's clock decides
            flag = torch.tensor([1.0 if due else 0.0], device=self.device)
            dist.broadcast(flag, 0)
            due = bool(flag.item())
        return due

    # ---- the loop ---------------------------------------------------------------------
    def train(self) -> RunRecord | None:
        done = ckpt.load_record(self.ckpt_dir, self.fp)
        if done is not None:  # finished before a crash kept the driver from storing it
            if self.rank == 0:
                ckpt.remove_state(self.ckpt_dir)
            return RunRecord(**done) if self.rank == 0 else None
        self._build()
        from tqdm.auto import tqdm

        bar = tqdm(total=self.total_steps, initial=self.step, desc=self.exp.experiment_id, unit="step", leave=False,
                   position=1, dynamic_ncols=True,
                   disable=(None if self.cfg.progress is None else not self.cfg.progress) if self.rank == 0 else True)
        last_ckpt = t_loop = last_line = time.perf_counter()
        cpu_loop = time.process_time()
        units_at_start = self.units_seen
        # without a terminal (nohup, SLURM, a pipe) and unless progress=False: a line every RUN_LOG_EVERY_S
        periodic = self.rank == 0 and self.cfg.progress is None and not sys.stderr.isatty()
        try:
            while self.units_seen < self.D - 1e-9:
                self._train_step(self._micro_batches())
                bar.update(1)
                final = self.units_seen >= self.D - 1e-9
                if self.step % self.cfg.log_every == 0 or final or self.step == 1:
                    if self._stop(self._drain()):
                        break
                    rate = (self.units_seen - units_at_start) / max(1e-9, time.perf_counter() - t_loop)
                    if bar.disable is False and self.ema is not None:
                        bar.set_postfix_str(f"loss {self.ema:.3f}, {rate:,.0f} {self.inp.info.units}/s", refresh=False)
                    if periodic and not final and time.perf_counter() - last_line >= RUN_LOG_EVERY_S:
                        last_line = time.perf_counter()
                        self._log_line(rate, last_line - t_loop)
                if not final and self._checkpoint_due(last_ckpt):
                    if self._stop(self._drain()):
                        break
                    self._save_checkpoint()
                    last_ckpt = time.perf_counter()
        finally:
            bar.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        train_time = time.perf_counter() - t_loop
        self.cpu_train_s = time.process_time() - cpu_loop
        return self._finish(train_time, (self.units_seen - units_at_start) / train_time if train_time > 0 else math.nan)

    def _log_line(self, rate: float, elapsed: float) -> None:
        from flops_fit.log import progress_logger

        frac = self.units_seen / self.D if self.D else 1.0
        left = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        loss = f"loss {self.ema:.4f}" if self.ema is not None else "loss ?"
        progress_logger().info(f"[flops-fit] {self.exp.experiment_id}: step {self.step}/{self.total_steps} "
                               f"({frac:.0%}), {loss}, {rate:,.0f} {self.inp.info.units}/s, {elapsed:.0f} s in, "
                               f"about {left:.0f} s left")

    def _stop(self, reason: str) -> bool:
        if reason:
            self.status, self.stop_reason = STATUS_DIVERGED, reason
        return bool(reason)

    # ---- the record ---------------------------------------------------------------------
    def _finish(self, train_time: float, units_per_s: float) -> RunRecord | None:
        """Validation loss (every rank alike), then rank 0 writes the record beside the checkpoint."""
        final_loss: float | None = None
        if self.status == STATUS_COMPLETED:
            final_loss = evaluate(self.model, self.inp.val_batches, self.inp.loss_fn, self.signature, self.inp.info,
                                  self.device, self.amp_dtype)
            if not math.isfinite(final_loss):
                self.status, self.stop_reason = STATUS_DIVERGED, f"non-finite validation loss ({final_loss})"
                final_loss = None
        if self.rank != 0:
            dist.barrier()  # wait for rank 0's record
            return None
        if self.inp.on_finish is not None and self.status == STATUS_COMPLETED:
            self.inp.on_finish(self.model)
        record = self._record(final_loss, train_time, units_per_s)
        ckpt.save_record(self.ckpt_dir, record.to_dict(), self.fp)
        ckpt.remove_state(self.ckpt_dir)
        if self.ddp:
            dist.barrier()
        return record

    def _epochs(self) -> float | None:
        inp = self.inp
        if inp.train_units:
            return self.units_seen / inp.train_units
        epochs = self.stream.epochs_done  # an iterable of unknown length: known once it has been exhausted
        if epochs is not None and epochs > 1 and self.stream.epoch_size:
            check_repeat(self.units_seen, self.stream.epoch_size * inp.info.units_per_sample, allow_repeat=True,
                         run=self.exp.experiment_id)
        return epochs

    def _record(self, final_loss: float | None, train_time: float, units_per_s: float) -> RunRecord:
        exp, inp, cfg = self.exp, self.inp, self.cfg
        flops_6nd = flops_mod.six_nd(exp.num_params, self.D)
        flops_measured = self.flops_per_unit * self.D if self.flops_per_unit is not None else None
        use_measured = inp.flops_accounting == flops_mod.FLOPS_MEASURED and flops_measured is not None
        details = {
            "initial_loss": self.initial_loss, "smoothed_train_loss": self.ema, "loss_curve": self.curve,
            "train_config": {
                **cfg.to_dict(), "lr_effective": self.lr, "warmup_steps": self.warm, "total_steps": self.total_steps,
                "units_per_step": self.units_per_step,
                "schedule": describe_schedule(cfg, self.warm, self.total_steps),
            },
            "units_per_s": units_per_s, "wall_time_train_s": train_time,
            # this process's CPU seconds in the loop (all its threads): beside the wall time it tells a run
            # slowed by other processes (wall > CPU at one thread) from one with more work
            "cpu_time_train_s": self.cpu_train_s,
            "peak_memory_bytes": peak_memory_bytes(self.device), "epochs": self._epochs(),
            "device": str(self.device), "dtype": self.precision, "world_size": self.world,
            "flops_6nd": flops_6nd, "flops_measured": flops_measured, "flops_per_unit_measured": self.flops_per_unit,
            "steps": self.step, "units_trained": self.units_seen, "units_per_sample": inp.info.units_per_sample,
            "resumed_from_step": self.resumed_from, "val_units": inp.val_units, "loss_signature": self.signature,
            "seed": inp.seed, "num_params_model": _count(self.model),
        }
        if self.stop_reason:
            details["stop_reason"] = self.stop_reason
        if self.fork is not None:  # a cooldown branch: what it shares with its trunk and what it cost itself
            step, units = self.forked_at if self.forked_at is not None else (self.fork["fork_step"], math.nan)
            own = self.D - units
            details.update(trunk_id=self.fork["trunk_id"], forked_at_step=step, forked_at_units=units,
                           branch_units=own, branch_flops=(self.flops_per_unit if use_measured else 6.0 * exp.num_params) * own,
                           **getattr(self, "trunk_work", {}))  # the trunk training this run paid for, if any
        return RunRecord.of(
            exp, final_loss=final_loss, status=self.status,
            flops=flops_measured if use_measured else flops_6nd,
            flops_method=flops_mod.FLOPS_MEASURED if use_measured else flops_mod.FLOPS_6ND,
            units=inp.info.units, error=self.stop_reason or None,
            wall_time_s=self.prior_wall + time.perf_counter() - self.t_start, details=details,
        )


def _share(n: int, world: int, rank: int) -> tuple[int, int]:
    """Rows [lo, hi) of a global micro-batch of n samples that `rank` trains: contiguous, sizes differ by <= 1."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def _count(model: torch.nn.Module) -> int | None:
    f = getattr(model, "num_params", None)
    try:
        return int(f()) if callable(f) else int(sum(p.numel() for p in model.parameters()))
    except Exception:  # noqa: BLE001
        return None


def _measure_flops(model: Any, batch: Any, inp: RunInputs, signature: str, device: torch.device,
                   amp_dtype: torch.dtype | None) -> float | None:
    """Per-unit FLOPs of one forward+backward on `batch`; leaves RNG and gradients untouched."""
    units = float(units_per_item(batch, inp.info).sum())
    b = to_device(batch, device)

    def step() -> None:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            _, loss = compute_loss(inp.loss_fn, call_model(model, b), b, signature)
        loss.backward()

    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            value = flops_mod.measured_flops_per_unit(step, units)
    except Exception:  # noqa: BLE001 - measurement is a diagnostic, never a reason to fail a run
        value = None
    for p in model.parameters():
        p.grad = None
    return value
