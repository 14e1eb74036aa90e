"""The LR schedule of a run, as pure step arithmetic (no torch): the planner of a trunk-and-branch design and
the trainer count warmup, cooldown and fork steps with these same functions."""

from __future__ import annotations

import math

from flops_fit.training.config import TrainConfig

#: the trunk of a trunk-and-branch design: warmup, then the peak LR held (no decay)
CONSTANT = "constant"


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


def cooldown_steps(total_steps: int, warmup: int, fraction: float) -> int:
    """Steps of a WSD run's cooldown: ceil(fraction · total), never into the warmup."""
    return max(0, min(math.ceil(fraction * total_steps - 1e-9), total_steps - warmup))


def lr_factor(step: int, warmup: int, total_steps: int, min_ratio: float, schedule: str = "cosine",
              cooldown_fraction: float = 0.2, cooldown_shape: str = "1-sqrt") -> float:
    """Multiplier of the peak LR for optimizer step `step` (0-based).

    Linear warmup over steps 0..warmup-1 (reaching 1 at step warmup-1), then, reaching
    exactly min_ratio at step total_steps-1:

    - ``"cosine"``: cosine from 1 down to min_ratio;
    - ``"wsd"`` (warmup-stable-decay, Hägele et al. 2024): 1 until the last
      ``cooldown_steps`` steps, then a cooldown to min_ratio shaped ``1 - sqrt(p)``
      (their best) or ``1 - p`` (linear), p the fraction of the cooldown done.
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == CONSTANT:
        return 1.0
    if schedule == "wsd":
        n_cool = cooldown_steps(total_steps, warmup, cooldown_fraction)
        start = total_steps - n_cool
        if n_cool <= 0 or step < start:
            return 1.0
        p = min(1.0, (step - start + 1) / n_cool)
        return min_ratio + (1.0 - min_ratio) * (1.0 - (math.sqrt(p) if cooldown_shape == "1-sqrt" else p))
    decay_steps = total_steps - warmup
    if decay_steps <= 0:
        return 1.0
    progress = min(1.0, (step - warmup + 1) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def describe_schedule(cfg: TrainConfig, warm: int, total_steps: int) -> str:
    """The schedule of one run in words, for its record."""
    if cfg.schedule == "wsd":
        n = cooldown_steps(total_steps, warm, cfg.cooldown_fraction)
        return (f"linear warmup {warm} steps, constant, then {cfg.cooldown_shape} cooldown over the last {n} steps "
                f"to {cfg.min_lr_ratio:g}x at step {total_steps - 1} (WSD)")
    return f"linear warmup {warm} steps, cosine to {cfg.min_lr_ratio:g}x at step {total_steps - 1}"
