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

import math
import random
import resource
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

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
    to_device,
    units_per_item,
)
from flops_fit.training.store import STATUS_COMPLETED, STATUS_DIVERGED, RunRecord



@dataclass
class TrainConfig:
    """Every number of a run, with its default and why.

    Optimiser
        lr: 3e-3, the peak AdamW learning rate for a model of ``lr_ref_params``
            parameters. lr_scaling="params" lowers it for larger models:
            ``lr_eff = lr · min(1, (lr_ref_params / N) ** lr_scaling_exponent)``.
            With exponent 0.25 this is lr ∝ 1/sqrt(width) for a fixed-depth
            transformer (N ∝ width²), the learning-rate-decreases-with-width
            rule of Porian et al. (2024); it never raises the LR above ``lr``
            for small models. "none" uses ``lr`` for every size. The effective
            LR is stored in every record (details["train_config"]["lr_effective"]).
            A model with ``optimizer_param_groups(lr, weight_decay)`` (e.g. the
            built-in GPT, which applies u-μP per-parameter scales there) builds
            its own groups; otherwise weight decay goes on parameters with
            ndim >= 2 (matrices) only.
        betas: (0.9, 0.99). beta2 = 0.99 rather than GPT-3's 0.95 because sweep
            runs use small batches (thousands of tokens per step), where Porian
            et al. (2024) find beta2 = 0.99 essential; it is overridable.
        weight_decay: 0.1 on matrices only (decoupled, AdamW).
        grad_clip: 1.0 (global L2 norm; 0 or None disables).
    Schedule
        Linear warmup, then cosine decay from the peak to ``min_lr_ratio`` (10%)
        of it, reaching the minimum exactly at the run's last optimizer step.
        warmup="N": about N units of warmup (DESIGN.md), i.e.
        ceil(N / units_per_step) steps, clipped to [1, warmup_max_fraction·steps];
        a float in (0, 1) is a fraction of the run's steps instead.
    Batching
        batch_size samples per micro-batch, grad_accum_steps micro-batches per
        optimizer step.
    Precision/device
        device="auto": CUDA when available else CPU. dtype="auto": bf16
        autocast on CUDA, fp32 on CPU ("fp32"/"bf16" force it). compile: wrap
        the model in torch.compile.
    Evaluation
        The final loss is the mean loss on a held-out validation split of
        ``val_units`` units (None: 256 samples), the same split for every run.
    Divergence
        A non-finite loss, or a smoothed (EMA 0.9) training loss above
        ``divergence_factor`` × the initial loss, stops the run with
        status="diverged". Losses are read back every ``log_every`` steps.
    Checkpoints
        Every ``checkpoint_every_s`` seconds, or every
        ``checkpoint_every_steps`` steps when that is set (for tests).
    """

    batch_size: int = 32
    grad_accum_steps: int = 1
    lr: float = 3e-3
    lr_scaling: str = "params"
    lr_ref_params: float = 1e6
    lr_scaling_exponent: float = 0.25
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float | None = 1.0
    warmup: float | str = "N"
    warmup_max_fraction: float = 0.2
    min_lr_ratio: float = 0.1
    device: str = "auto"
    dtype: str = "auto"
    compile: bool = False
    val_units: float | None = None
    val_batch_size: int | None = None
    divergence_factor: float = 3.0
    log_every: int = 10
    loss_curve_points: int = 50
    checkpoint_every_s: float = 120.0
    checkpoint_every_steps: int | None = None
    num_threads: int | None = None
    measure_flops: bool = True
    progress: bool | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        _pos_int("batch_size", self.batch_size)
        _pos_int("grad_accum_steps", self.grad_accum_steps)
        _pos_int("log_every", self.log_every)
        _pos_int("loss_curve_points", self.loss_curve_points)
        for name in ("lr", "lr_ref_params", "divergence_factor", "checkpoint_every_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                raise ValueError(f"TrainConfig.{name}: expected a positive finite number, found {v!r}")
        if self.lr_scaling not in ("params", "none"):
            raise ValueError(f"TrainConfig.lr_scaling: expected 'params' or 'none', found {self.lr_scaling!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"TrainConfig.betas: expected two numbers in [0, 1), found {self.betas!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"TrainConfig.min_lr_ratio: expected a number in [0, 1], found {self.min_lr_ratio!r}")
        if not 0 < self.warmup_max_fraction <= 1:
            raise ValueError(
                f"TrainConfig.warmup_max_fraction: expected a number in (0, 1], found {self.warmup_max_fraction!r}"
            )
        if not (self.warmup == "N" or (isinstance(self.warmup, (int, float)) and 0 <= self.warmup < 1)):
            raise ValueError(f"TrainConfig.warmup: expected 'N' or a fraction in [0, 1), found {self.warmup!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise ValueError(f"TrainConfig.device: expected 'auto', 'cpu', 'cuda', ..., found {self.device!r}") from None
        if self.dtype not in ("auto", "fp32", "bf16"):
            raise ValueError(f"TrainConfig.dtype: expected 'auto', 'fp32' or 'bf16', found {self.dtype!r}")
        if self.val_units is not None and not self.val_units > 0:
            raise ValueError(f"TrainConfig.val_units: expected a positive number or None, found {self.val_units!r}")
        if self.val_batch_size is not None:
            _pos_int("val_batch_size", self.val_batch_size)
        if self.checkpoint_every_steps is not None:
            _pos_int("checkpoint_every_steps", self.checkpoint_every_steps)
        if self.num_threads is not None:
            _pos_int("num_threads", self.num_threads)
        if self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay: expected >= 0, found {self.weight_decay!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    #: fields that change how a run executes, not what it computes (left out of a sweep's fingerprint)
    OPERATIONAL_FIELDS = ("progress", "checkpoint_every_s", "checkpoint_every_steps", "num_threads", "device",
                          "compile")

    def identity(self) -> dict[str, Any]:
        """The fields that determine a run's result: part of the plan's fingerprint."""
        return {k: v for k, v in self.to_dict().items() if k not in self.OPERATIONAL_FIELDS}


def _pos_int(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"TrainConfig.{name}: expected a positive integer, found {v!r}")


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


def effective_lr(config: TrainConfig, num_params: float) -> float:
    if config.lr_scaling == "none":
        return float(config.lr)
    return float(config.lr) * min(1.0, (config.lr_ref_params / float(num_params)) ** config.lr_scaling_exponent)


def warmup_steps(config: TrainConfig, total_steps: int, num_params: float, units_per_step: float) -> int:
    if config.warmup == "N":
        w = math.ceil(float(num_params) / units_per_step)
    else:
        w = round(float(config.warmup) * total_steps)
    cap = max(1, int(config.warmup_max_fraction * total_steps))
    return int(min(max(1, w), cap))


def lr_factor(step: int, warmup: int, total_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak LR for optimizer step `step` (0-based).

    Linear warmup over steps 0..warmup-1 (reaching 1 at step warmup-1), then
    cosine from 1 down to min_ratio, exactly min_ratio at step total_steps-1.
    """
    if step < warmup:
        return (step + 1) / warmup
    decay_steps = total_steps - warmup
    if decay_steps <= 0:
        return 1.0
    progress = min(1.0, (step - warmup + 1) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


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
    extra: dict[str, Any] = field(default_factory=dict)


def _build_model(inp: RunInputs, size_value: int) -> torch.nn.Module:
    kwargs = dict(inp.model_kwargs)
    kwargs[inp.size_param] = size_value
    return inp.model_factory(**kwargs)


def run_fingerprint(exp: Any, inp: RunInputs, **extra: Any) -> str:
    """Settings a run's checkpoint must match to be resumed; `extra` names what differs per engine."""
    return ckpt.fingerprint(
        {
            "experiment": [exp.experiment_id, exp.size_value, exp.num_params, exp.num_tokens],
            "config": inp.config.identity(),  # operational settings (threads, progress, ...) may change on resume
            "seed": inp.seed,
            "model_kwargs": inp.model_kwargs,
            "size_param": inp.size_param,
            "val_units": inp.val_units,
            **extra,
        }
    )


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, lr: float, warm: int,
                   total_steps: int) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over :func:`param_groups`, with the warmup + cosine schedule ending at step total_steps - 1."""
    optimizer = torch.optim.AdamW(
        param_groups(model, lr, cfg.weight_decay), lr=lr, betas=cfg.betas, eps=cfg.eps,
        weight_decay=cfg.weight_decay, foreach=True,
    )
    min_ratio = cfg.min_lr_ratio
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warm, total_steps, min_ratio)
    )
    return optimizer, scheduler


def _next_micro_batch(stream: SampleStream, inp: RunInputs, remaining: float) -> tuple[Any, float, int]:
    """(collated batch, its units, its samples), cut to the first samples that reach `remaining`."""
    cfg = inp.config
    n = cfg.batch_size
    if not inp.info.has_mask:  # fixed units per sample: take only what is needed
        n = min(n, max(1, math.ceil(remaining / inp.info.units_per_sample - 1e-9)))
    batch = stream.take_batch(n)
    per = units_per_item(batch, inp.info)
    total = float(per.sum())
    if total > remaining:
        cum = torch.cumsum(per, 0)
        k = int(torch.searchsorted(cum, torch.tensor(remaining - 1e-9))) + 1
        k = min(k, len(per))
        if k < len(per):
            batch = slice_batch(batch, k)
            total = float(cum[k - 1])
    return batch, total, batch_size_of(batch)


def train_run(exp: Any, inp: RunInputs) -> RunRecord:
    """Train one experiment to exactly its D units; resumable from its checkpoint. Holds the run's lock, so
    no second process trains the same experiment at the same time."""
    with ckpt.run_lock(ckpt.checkpoint_dir(inp.output_dir, exp.experiment_id)):
        return _train_run(exp, inp)


def _train_run(exp: Any, inp: RunInputs) -> RunRecord:
    t_start = time.perf_counter()
    cfg = inp.config
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg)
    amp_dtype = resolve_dtype(cfg, device)
    ckpt_dir = ckpt.checkpoint_dir(inp.output_dir, exp.experiment_id)
    # the resolved precision is part of the run's identity: a CPU (fp32) checkpoint never resumes as bf16 on a GPU
    fp = run_fingerprint(exp, inp, flops_accounting=inp.flops_accounting,
                         precision="bf16-autocast" if amp_dtype is not None else "fp32")
    done = ckpt.load_record(ckpt_dir, fp)
    if done is not None:  # finished before a crash kept the driver from storing it
        ckpt.remove_state(ckpt_dir)
        return RunRecord(**done)

    D = float(exp.num_tokens)
    epochs = check_repeat(D, inp.train_units, allow_repeat=inp.allow_repeat, run=exp.experiment_id)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seed_everything(inp.seed)
    model = _build_model(inp, exp.size_value).to(device)
    model.train()
    n_params = float(exp.num_params)
    units_per_step = cfg.batch_size * cfg.grad_accum_steps * inp.info.units_per_sample
    total_steps = max(1, math.ceil(D / units_per_step - 1e-9))
    lr = effective_lr(cfg, n_params)
    warm = warmup_steps(cfg, total_steps, n_params, units_per_step)
    optimizer, scheduler = make_optimizer(model, cfg, lr, warm, total_steps)
    fwd_model = torch.compile(model) if cfg.compile else model
    stream = SampleStream(inp.source, seed=inp.seed, indices=inp.train_indices, skip=inp.skip,
                          allow_repeat=inp.allow_repeat)

    step = 0
    units_seen = 0.0
    initial_loss: float | None = None
    ema: float | None = None
    curve: list[list[float]] = []
    signature = inp.info.loss_signature
    resumed_from = 0
    prior_wall = 0.0
    flops_per_unit: float | None = None

    state = ckpt.load_state(ckpt_dir, fp)  # None unless this run's own plain-tensor checkpoint
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        stream.load_state(state["data"])
        step, units_seen = int(state["step"]), float(state["units_seen"])
        initial_loss, ema, curve = state["initial_loss"], state["ema"], list(state["curve"])
        prior_wall = float(state["wall_time_s"])
        flops_per_unit = state.get("flops_per_unit")
        resumed_from = step
        _set_rng_state(state["rng"])

    curve_every = max(1, total_steps // cfg.loss_curve_points)
    pending: list[torch.Tensor] = []  # per-step losses not yet read back
    pending_first = step
    status = STATUS_COMPLETED
    stop_reason = ""

    def save_checkpoint() -> None:
        ckpt.save_state(
            ckpt_dir,
            {
                "fingerprint": fp,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _rng_state(),
                "data": stream.state(),
                "step": step,
                "units_seen": units_seen,
                "initial_loss": initial_loss,
                "ema": ema,
                "curve": curve,
                "wall_time_s": prior_wall + time.perf_counter() - t_start,
                "flops_per_unit": flops_per_unit,
            },
        )

    def drain() -> str:
        """Read back pending losses: divergence check, EMA, loss curve. Returns a stop reason or ''."""
        nonlocal pending, pending_first, initial_loss, ema
        if not pending:
            return ""
        values = torch.stack(pending).float().cpu().tolist()
        first = pending_first
        pending, pending_first = [], first + len(values)
        for i, v in enumerate(values):
            s = first + i
            if initial_loss is None:
                initial_loss = v
            if not math.isfinite(v):
                return f"non-finite training loss ({v}) at step {s}"
            ema = v if ema is None else 0.9 * ema + 0.1 * v
            if s % curve_every == 0 or s == total_steps - 1:
                curve.append([s, v])
            if initial_loss is not None and math.isfinite(initial_loss) and ema > cfg.divergence_factor * initial_loss:
                return (
                    f"smoothed training loss {ema:.4g} exceeded {cfg.divergence_factor:g} x initial loss "
                    f"{initial_loss:.4g} at step {s}"
                )
        return ""

    from tqdm.auto import tqdm

    bar = tqdm(
        total=total_steps, initial=step, desc=exp.experiment_id, unit="step", leave=False, position=1,
        dynamic_ncols=True, disable=None if cfg.progress is None else not cfg.progress,
    )
    last_ckpt = time.perf_counter()
    t_loop = time.perf_counter()
    units_at_start = units_seen
    try:
        while units_seen < D - 1e-9:
            remaining_step = min(units_per_step, D - units_seen)
            micro: list[tuple[Any, float, int]] = []
            for _ in range(cfg.grad_accum_steps):
                if remaining_step <= 1e-9:
                    break
                b, u, n = _next_micro_batch(stream, inp, remaining_step)
                micro.append((b, u, n))
                remaining_step -= u
            n_step = sum(m[2] for m in micro)
            if cfg.measure_flops and flops_per_unit is None:
                t_m = time.perf_counter()
                flops_per_unit = _measure_flops(model, micro[0][0], inp, signature, device, amp_dtype)
                t_loop += time.perf_counter() - t_m  # not training time
            step_loss = None
            for b, u, n in micro:
                b = to_device(b, device)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    out = call_model(fwd_model, b)
                    signature, loss = compute_loss(inp.loss_fn, out, b, signature)
                w = n / n_step
                scaled = loss * w if w != 1.0 else loss
                scaled.backward()
                ld = scaled.detach()
                step_loss = ld if step_loss is None else step_loss + ld
                units_seen += u
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip, foreach=True)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step + 1 < total_steps:  # hold the final LR for any extra (masked-data) steps
                scheduler.step()
            step += 1
            pending.append(step_loss)
            bar.update(1)
            final = units_seen >= D - 1e-9
            if step % cfg.log_every == 0 or final or step == 1:
                stop_reason = drain()
                if stop_reason:
                    status = STATUS_DIVERGED
                    break
                if bar.disable is False and ema is not None:
                    rate = (units_seen - units_at_start) / max(1e-9, time.perf_counter() - t_loop)
                    bar.set_postfix_str(f"loss {ema:.3f}, {rate:,.0f} {inp.info.units}/s", refresh=False)
            if not final:
                due = (
                    step % cfg.checkpoint_every_steps == 0
                    if cfg.checkpoint_every_steps
                    else time.perf_counter() - last_ckpt >= cfg.checkpoint_every_s
                )
                if due:
                    stop_reason = drain()
                    if stop_reason:
                        status = STATUS_DIVERGED
                        break
                    save_checkpoint()
                    last_ckpt = time.perf_counter()
    finally:
        bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_time = time.perf_counter() - t_loop
    units_per_s = (units_seen - units_at_start) / train_time if train_time > 0 else float("nan")

    final_loss: float | None = None
    if status == STATUS_COMPLETED:
        final_loss = evaluate(model, inp.val_batches, inp.loss_fn, signature, inp.info, device, amp_dtype)
        if not math.isfinite(final_loss):
            status, stop_reason, final_loss = STATUS_DIVERGED, f"non-finite validation loss ({final_loss})", None
    if inp.train_units:
        epochs = units_seen / inp.train_units
    else:  # iterable of unknown length: known once it has been exhausted
        epochs = stream.epochs_done
        if epochs is not None and epochs > 1 and stream.epoch_size:
            check_repeat(units_seen, stream.epoch_size * inp.info.units_per_sample,
                         allow_repeat=True, run=exp.experiment_id)
    flops_6nd = flops_mod.six_nd(exp.num_params, D)
    flops_measured = flops_per_unit * D if flops_per_unit is not None else None
    use_measured = inp.flops_accounting == flops_mod.FLOPS_MEASURED and flops_measured is not None
    wall = prior_wall + time.perf_counter() - t_start
    details = {
        "initial_loss": initial_loss,
        "smoothed_train_loss": ema,
        "loss_curve": curve,
        "train_config": {
            **cfg.to_dict(),
            "lr_effective": lr,
            "warmup_steps": warm,
            "total_steps": total_steps,
            "units_per_step": units_per_step,
            "schedule": f"linear warmup {warm} steps, cosine to {cfg.min_lr_ratio:g}x at step {total_steps - 1}",
        },
        "units_per_s": units_per_s,
        "wall_time_train_s": train_time,
        "peak_memory_bytes": peak_memory_bytes(device),
        "epochs": epochs,
        "device": str(device),
        "dtype": "bf16-autocast" if amp_dtype is not None else "fp32",
        "flops_6nd": flops_6nd,
        "flops_measured": flops_measured,
        "flops_per_unit_measured": flops_per_unit,
        "steps": step,
        "units_trained": units_seen,
        "units_per_sample": inp.info.units_per_sample,
        "resumed_from_step": resumed_from,
        "val_units": inp.val_units,
        "loss_signature": signature,
        "seed": inp.seed,
        "num_params_model": _count(model),
    }
    if stop_reason:
        details["stop_reason"] = stop_reason
    record = RunRecord(
        experiment_id=exp.experiment_id,
        compute_budget=exp.compute_budget,
        size_value=exp.size_value,
        num_params=exp.num_params,
        num_tokens=exp.num_tokens,
        final_loss=final_loss,
        status=status,
        flops=flops_measured if use_measured else flops_6nd,
        flops_method=flops_mod.FLOPS_MEASURED if use_measured else flops_mod.FLOPS_6ND,
        units=inp.info.units,
        error=stop_reason or None,
        wall_time_s=wall,
        details=details,
    )
    ckpt.save_record(ckpt_dir, record.to_dict(), fp)
    ckpt.remove_state(ckpt_dir)
    return record


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
