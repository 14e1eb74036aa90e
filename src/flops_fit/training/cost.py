"""Predict a sweep's wall time before paying for it, from a few timed training steps.

Method: time `probe_steps` real optimizer steps (after one untimed warm-up
step) of the smallest and the largest model of the plan on the device the
runs will use; seconds per data unit is interpolated between the two
linearly in log N - log(seconds/unit) (extrapolated flat outside), and each
run costs D · s(N) plus a forward-only validation pass (≈ val_units · s(N) / 3).
Startup, checkpoints and FLOPs measurement are not included, so short runs
take somewhat longer than predicted.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch

from flops_fit.training.datautil import DataSource, call_model, to_device, units_per_item
from flops_fit.training.local import DEFAULT_VAL_SAMPLES, infer_data_info
from flops_fit.training.trainer import (
    TrainConfig,
    compute_loss,
    effective_lr,
    param_groups,
    resolve_device,
    resolve_dtype,
)

def _seconds_per_unit(model: torch.nn.Module, batch: Any, units: float, loss_fn: Callable[..., Any],
                      cfg: TrainConfig, device: torch.device, probe_steps: int) -> float:
    amp = resolve_dtype(cfg, device)
    n = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(param_groups(model, effective_lr(cfg, n), cfg.weight_decay), betas=cfg.betas, foreach=True)
    b = to_device(batch, device)
    signature = "auto"

    def step() -> None:
        nonlocal signature
        for _ in range(cfg.grad_accum_steps):
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                signature, loss = compute_loss(loss_fn, call_model(model, b), b, signature)
            loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up: allocation, kernel selection
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(probe_steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / (probe_steps * units * cfg.grad_accum_steps)


def estimate_cost(
    plan: Any,
    model_factory: Callable[..., torch.nn.Module],
    size_param: str,
    model_kwargs: dict[str, Any],
    dataset: Any,
    loss_fn: Callable[..., Any],
    train_config: TrainConfig,
    *,
    probe_steps: int = 2,
    units_per_sample: int | None = None,
) -> dict[str, Any]:
    """Predicted wall time of every runnable experiment of `plan` on this machine.

    Returns {"total_seconds", "device", "per_experiment": {id: seconds},
    "seconds_per_unit": {str(N): s}, "probe_steps", "method"}; JSON-able,
    for sweep.json.
    """
    if isinstance(probe_steps, bool) or not isinstance(probe_steps, int) or probe_steps < 1:
        raise ValueError(f"probe_steps: expected a positive integer, found {probe_steps!r}")
    runs = list(plan.runnable)
    device = resolve_device(train_config)
    if not runs:
        return {"total_seconds": 0.0, "device": str(device), "per_experiment": {}, "seconds_per_unit": {},
                "probe_steps": probe_steps, "method": "no runnable experiments"}
    source = DataSource(dataset, name="dataset")
    info = infer_data_info(source, units_per_sample)
    batch = source.collate(source.first_samples(train_config.batch_size))
    units = float(units_per_item(batch, info).sum())
    by_size = sorted({(e.num_params, e.size_value) for e in runs})
    probes = [by_size[0]] if len(by_size) == 1 else [by_size[0], by_size[-1]]
    spu: dict[int, float] = {}
    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    if train_config.num_threads:  # time the steps with the threads the runs will have
        torch.set_num_threads(train_config.num_threads)
    try:
        for n_params, value in probes:
            model = model_factory(**{**dict(model_kwargs), size_param: value}).to(device)
            model.train()
            spu[n_params] = _seconds_per_unit(model, batch, units, loss_fn, train_config, device, probe_steps)
            del model
    finally:
        torch.set_rng_state(state)
        torch.set_num_threads(threads)
    xs = np.log([float(n) for n in spu])
    ys = np.log([max(v, 1e-12) for v in spu.values()])

    def s_of(n: float) -> float:
        return float(math.exp(np.interp(math.log(n), xs, ys)))

    val_units = (train_config.val_units if train_config.val_units is not None
                 else DEFAULT_VAL_SAMPLES * info.units_per_sample)
    per = {e.experiment_id: s_of(e.num_params) * (e.num_tokens + val_units / 3.0) for e in runs}
    return {
        "total_seconds": float(sum(per.values())),
        "device": str(device),
        "per_experiment": per,
        "seconds_per_unit": {str(k): v for k, v in spu.items()},
        "units": info.units,
        "num_threads": train_config.num_threads or threads,
        "probe_steps": probe_steps,
        "method": "timed optimizer steps of the smallest and largest model, log-log interpolation in N",
    }
