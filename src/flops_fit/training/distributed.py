"""One run on several processes/GPUs with PyTorch DistributedDataParallel.

Why a separate loop: :func:`flops_fit.training.trainer.train_run` trains in
one process and has no hook for a process group; this is the same run, made
data-parallel, in a loop short enough to read. It takes the same inputs
(:class:`~flops_fit.training.trainer.RunInputs`, e.g. from
``make_run_fn(...).keywords["inp"]``) and returns the same RunRecord.

Global batch and token budget do not depend on the number of processes:
every rank draws the same global micro-batch of ``config.batch_size`` samples
from the same seeded sample stream, keeps its own contiguous share
(:func:`_split`, so shares differ by at most one sample), and scales
its mean loss by ``n_rank · world / n_step`` before backward. DDP averages
gradients over ranks, so each optimizer step follows the gradient of the mean
loss over the whole global step, exactly as one process with the same global
batch. Steps, warmup, cosine schedule and the last, shortened step (the run
stops at its planned D) are those of the single-process trainer.

How TrainConfig maps: batch_size (global micro-batch, split over ranks),
grad_accum_steps (``no_sync`` on all but the last micro-batch), lr,
lr_scaling, lr_ref_params, lr_scaling_exponent, betas, eps, weight_decay,
grad_clip, warmup, warmup_max_fraction, min_lr_ratio, device ("auto": the
rank's own GPU, ``cuda:LOCAL_RANK``, else CPU), dtype (bf16 autocast on
CUDA), checkpoint_every_steps / checkpoint_every_s, num_threads,
loss_curve_points and log_every (step losses are summed over ranks and read
back every log_every steps, not every step) are honoured; compile,
measure_flops, divergence checks and progress bars are left to the
single-process trainer. Data with an attention mask (varying tokens per
sample) is not supported here.

Rank 0 alone writes (checkpoints under output_dir/checkpoints/<id>/ and the
finished record); every rank reads the checkpoint on resume. Launch::

    torchrun --nproc_per_node=4 my_train.py        # my_train.py calls init_distributed() then ddp_train_run()

or, for tests and single-node use, :func:`spawn_local` (``torch.multiprocessing.spawn``).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from flops_fit import flops as flops_mod
from flops_fit.training import checkpoint as ckpt
from flops_fit.training.datautil import SampleStream, call_model, to_device
from flops_fit.training.store import STATUS_COMPLETED, STATUS_DIVERGED, RunRecord
from flops_fit.training.trainer import (
    RunInputs,
    _build_model,
    compute_loss,
    effective_lr,
    evaluate,
    make_optimizer,
    resolve_dtype,
    run_fingerprint,
    seed_everything,
    warmup_steps,
)

__all__ = ["ddp_train_run", "init_distributed", "spawn_local"]


def init_distributed(backend: str | None = None) -> tuple[int, int]:
    """Join the process group torchrun describes in the environment; returns (rank, world_size).

    backend: None picks "nccl" when CUDA is available, else "gloo".
    """
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"init_distributed: environment variable {missing[0]} is not set; launch with torchrun "
            "(torchrun --nproc_per_node=N script.py) or use spawn_local()"
        )
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend=backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


def _device(inp: RunInputs) -> torch.device:
    if inp.config.device != "auto":
        return torch.device(inp.config.device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def ddp_train_run(exp: Any, inp: RunInputs) -> RunRecord | None:
    """Train one experiment data-parallel over the current process group; rank 0 returns its record.

    Needs an initialised process group (init_distributed() or spawn_local());
    without one it runs as a group of one. Other ranks return None.
    """
    if not isinstance(inp, RunInputs):
        raise TypeError(f"inp: expected flops_fit.training.trainer.RunInputs, found {type(inp).__name__}")
    if inp.info.has_mask:
        raise ValueError(
            "inp.info.has_mask: DDP training expects a fixed number of units per sample, found data with an "
            "attention mask; train this run with the single-process trainer"
        )
    t_start = time.perf_counter()
    cfg = inp.config
    ddp = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = _device(inp)
    amp_dtype = resolve_dtype(cfg, device)
    ckpt_dir = ckpt.checkpoint_dir(inp.output_dir, exp.experiment_id)
    fp = run_fingerprint(exp, inp, engine="ddp")  # world size left out: the global batch is the same

    D = float(exp.num_tokens)
    ups = float(inp.info.units_per_sample)
    n_params = float(exp.num_params)
    units_per_step = cfg.batch_size * cfg.grad_accum_steps * ups
    total_steps = max(1, math.ceil(D / units_per_step - 1e-9))
    samples_total = max(1, math.ceil(D / ups - 1e-9))
    lr = effective_lr(cfg, n_params)
    warm = warmup_steps(cfg, total_steps, n_params, units_per_step)

    seed_everything(inp.seed)
    model = _build_model(inp, exp.size_value).to(device)
    model.train()
    optimizer, scheduler = make_optimizer(model, cfg, lr, warm, total_steps)
    stream = SampleStream(inp.source, seed=inp.seed, indices=inp.train_indices, skip=inp.skip)
    step, samples_seen, curve, prior_wall = 0, 0, [], 0.0

    state = ckpt.load_state(ckpt_dir, fp)  # every rank reads the same file (shared storage)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        stream.load_state(state["data"])
        step, samples_seen, curve = int(state["step"]), int(state["samples_seen"]), list(state["curve"])
        prior_wall = float(state["wall_time_s"])
    resumed_from = step
    net: torch.nn.Module = (
        torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if ddp else model
    )
    signature = inp.info.loss_signature
    last_ckpt = time.perf_counter()
    pending: list[torch.Tensor] = []  # this rank's share of each step's mean loss, not yet reduced or read back

    def drain() -> None:
        """Sum the pending losses over ranks and append them to the curve: one collective and one host sync."""
        if pending:
            values = torch.stack(pending)
            if ddp:
                dist.all_reduce(values)  # the global steps' mean losses, identical on every rank
            first = step - len(pending)
            curve.extend([first + i, v] for i, v in enumerate(values.tolist()))
            pending.clear()

    while samples_seen < samples_total:
        n_step = min(cfg.batch_size * cfg.grad_accum_steps, samples_total - samples_seen)
        micro = []
        left = n_step
        while left > 0:
            take = min(cfg.batch_size, left)
            micro.append(stream.take(take))
            left -= take
        step_loss = torch.zeros((), device=device)
        for j, samples in enumerate(micro):
            share = _split(len(samples), world)[rank]
            mine = [samples[i] for i in share] or samples[:1]  # an empty share still joins the all-reduce
            weight = (len(share) * world / n_step) if share else 0.0
            batch = to_device(inp.source.collate(mine), device)
            sync = j == len(micro) - 1
            ctx = net.no_sync() if (ddp and not sync) else contextlib.nullcontext()
            with ctx:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    signature, loss = compute_loss(inp.loss_fn, call_model(net, batch), batch, signature)
                (loss * weight).backward()
            step_loss = step_loss + loss.detach().float() * (len(share) / n_step)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step + 1 < total_steps:
            scheduler.step()
        step += 1
        samples_seen += n_step
        pending.append(step_loss)
        done = samples_seen >= samples_total
        if step % cfg.log_every == 0 or done:
            drain()
        due = (step % cfg.checkpoint_every_steps == 0) if cfg.checkpoint_every_steps else (
            time.perf_counter() - last_ckpt >= cfg.checkpoint_every_s)
        if ddp and not cfg.checkpoint_every_steps:  # ranks must agree on time-based checkpoints
            flag = torch.tensor([1.0 if due else 0.0], device=device)
            dist.broadcast(flag, 0)
            due = bool(flag.item())
        if due and not done:
            drain()
            if rank == 0:
                ckpt.save_state(ckpt_dir, {
                    "fingerprint": fp, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "data": stream.state(), "step": step,
                    "samples_seen": samples_seen, "curve": curve,
                    "wall_time_s": prior_wall + time.perf_counter() - t_start,
                })
            if ddp:
                dist.barrier()
            last_ckpt = time.perf_counter()

    if rank != 0:
        if ddp:
            dist.barrier()  # wait for rank 0's evaluation and record
        return None
    final_loss: float | None = evaluate(model, inp.val_batches, inp.loss_fn, signature, inp.info, device, amp_dtype)
    status, error = STATUS_COMPLETED, None
    if not math.isfinite(final_loss):
        status, error, final_loss = STATUS_DIVERGED, f"non-finite validation loss ({final_loss})", None
    every = max(1, total_steps // cfg.loss_curve_points)
    record = RunRecord(
        experiment_id=exp.experiment_id,
        compute_budget=exp.compute_budget,
        size_value=exp.size_value,
        num_params=exp.num_params,
        num_tokens=exp.num_tokens,
        final_loss=final_loss,
        status=status,
        flops=flops_mod.six_nd(exp.num_params, D),
        flops_method=flops_mod.FLOPS_6ND,
        units=inp.info.units,
        error=error,
        wall_time_s=prior_wall + time.perf_counter() - t_start,
        details={
            "initial_loss": curve[0][1] if curve else None,
            "loss_curve": [c for c in curve if c[0] % every == 0 or c[0] == total_steps - 1],
            "loss_curve_full": [c[1] for c in curve],
            "train_config": {**cfg.to_dict(), "lr_effective": lr, "warmup_steps": warm,
                             "total_steps": total_steps, "units_per_step": units_per_step},
            "world_size": world,
            "global_batch_size": cfg.batch_size * cfg.grad_accum_steps,
            "steps": step,
            "units_trained": samples_seen * ups,
            "resumed_from_step": resumed_from,
            "device": str(device),
            "seed": inp.seed,
            "engine": "ddp",
        },
    )
    ckpt.save_record(ckpt_dir, record.to_dict(), fp)
    ckpt.remove_state(ckpt_dir)
    if ddp:
        dist.barrier()
    return record


def _split(n: int, world: int) -> list[range]:
    """Contiguous shares of n samples over `world` ranks, sizes differing by at most one."""
    base, extra = divmod(n, world)
    out, start = [], 0
    for r in range(world):
        size = base + (1 if r < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawned(rank: int, world: int, port: int, backend: str, result_path: str, fn: Callable[..., Any],
             args: tuple) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    try:
        out = fn(*args)
        if rank == 0:  # plain JSON, never a pickle: rank 0's RunRecord (or a JSON-able value)
            from flops_fit import io

            io.atomic_write_json(result_path, {"record": out.to_dict()} if isinstance(out, RunRecord)
                                 else {"value": out})
    finally:
        dist.destroy_process_group()


def spawn_local(world_size: int, fn: Callable[..., Any], *args: Any, backend: str = "gloo") -> Any:
    """Run fn(*args) on `world_size` local processes in one process group; returns rank 0's result.

    fn and args must pickle with the standard pickler (module-level functions and classes).
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size: expected a positive integer, found {world_size!r}")
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="flops-fit-ddp-") as tmp:
        path = str(Path(tmp) / "rank0.json")
        mp.spawn(_spawned, args=(world_size, _free_port(), backend, path, fn, args), nprocs=world_size, join=True)
        from flops_fit import io

        data = io.read_json(path)
        return RunRecord(**data["record"]) if "record" in data else data["value"]
