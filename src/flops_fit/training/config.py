"""TrainConfig: every number of a real training run, with its default (torch-free, so the CLI's
configuration is built from it without importing torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from flops_fit.validation import check_int, check_number


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
        Linear warmup, then (schedule="cosine") cosine decay from the peak to
        ``min_lr_ratio`` (10%) of it, reaching the minimum exactly at the run's last
        optimizer step; or (schedule="wsd", Hägele et al. 2024) the peak held
        constant, then a cooldown over the last ``cooldown_fraction`` (20%) of the
        steps, shaped ``cooldown_shape`` ("1-sqrt", their best, or "linear"), to the
        same minimum at the same last step. Every record says which.
        warmup="N": about N units of warmup (DESIGN.md), i.e.
        ceil(N / units_per_step) steps, clipped to [1, warmup_max_fraction·steps];
        a float in (0, 1) is a fraction of the run's steps instead.
    Batching
        batch_size samples per micro-batch, grad_accum_steps micro-batches per
        optimizer step.
    Precision/device
        device="auto": CUDA when available else CPU. dtype="auto": bf16
        autocast on CUDA, fp32 on CPU ("fp32"/"bf16" force it). compile: wrap
        the model in torch.compile (True), or in one of its modes by name:
        "reduce-overhead" records CUDA graphs, which pays for tiny models
        whose steps are launch-bound on a GPU (see benchmarks/gpu_check.py).
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
    schedule: str = "cosine"
    cooldown_fraction: float = 0.2
    cooldown_shape: str = "1-sqrt"
    device: str = "auto"
    dtype: str = "auto"
    compile: bool | str = False
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
            check_number(getattr(self, name), f"TrainConfig.{name}", min=0, min_inclusive=False,
                         expected="a positive finite number")
        if self.lr_scaling not in ("params", "none"):
            raise ValueError(f"TrainConfig.lr_scaling: expected 'params' or 'none', found {self.lr_scaling!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"TrainConfig.betas: expected two numbers in [0, 1), found {self.betas!r}")
        if self.schedule not in ("cosine", "wsd"):
            raise ValueError(f"TrainConfig.schedule: expected 'cosine' or 'wsd', found {self.schedule!r}")
        check_number(self.cooldown_fraction, "TrainConfig.cooldown_fraction", min=0, max=1, min_inclusive=False,
                     expected="a fraction in (0, 1] of the run's steps")
        if self.cooldown_shape not in ("1-sqrt", "linear"):
            raise ValueError(f"TrainConfig.cooldown_shape: expected '1-sqrt' or 'linear', found {self.cooldown_shape!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"TrainConfig.min_lr_ratio: expected a number in [0, 1], found {self.min_lr_ratio!r}")
        if not 0 < self.warmup_max_fraction <= 1:
            raise ValueError(
                f"TrainConfig.warmup_max_fraction: expected a number in (0, 1], found {self.warmup_max_fraction!r}"
            )
        if not (self.warmup == "N" or (isinstance(self.warmup, (int, float)) and 0 <= self.warmup < 1)):
            raise ValueError(f"TrainConfig.warmup: expected 'N' or a fraction in [0, 1), found {self.warmup!r}")
        if self.device != "auto":
            import torch  # only here: the config itself is light (the CLI composes it without torch)

            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise ValueError(f"TrainConfig.device: expected 'auto', 'cpu', 'cuda', ..., found {self.device!r}") from None
        if self.dtype not in ("auto", "fp32", "bf16"):
            raise ValueError(f"TrainConfig.dtype: expected 'auto', 'fp32' or 'bf16', found {self.dtype!r}")
        if not (isinstance(self.compile, bool) or self.compile in COMPILE_MODES):
            raise ValueError(f"TrainConfig.compile: expected True, False or one of {list(COMPILE_MODES)}, "
                             f"found {self.compile!r}")
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



#: torch.compile's modes, by the names it takes
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _pos_int(name: str, v: Any) -> None:
    check_int(v, f"TrainConfig.{name}", min=1)
