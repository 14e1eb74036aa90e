"""One run on several processes/GPUs with PyTorch DistributedDataParallel: the same trainer.

There is one training loop, :func:`flops_fit.training.trainer.train_run`; in a
process group every rank calls it (nanoGPT's pattern: one loop for one process
and DDP alike). Divergence detection, measured FLOPs, the token budget,
``allow_repeat``, checkpoints and the record are the single-process trainer's.

Global batch and token budget do not depend on the number of processes:
every rank draws the same global micro-batch of ``config.batch_size`` samples
from the same seeded sample stream, keeps its own contiguous share (sizes
differ by at most one sample), and scales its mean loss by
``n_rank · world / n_step`` before backward. DDP averages gradients over ranks,
so each optimizer step follows the gradient of the mean loss over the whole
global step, exactly as one process with the same global batch; gradients are
synchronised on the last micro-batch of a step only (``no_sync`` before).
Step losses are summed over ranks when read back (every ``log_every`` steps),
so every rank takes the same divergence decision; rank 0's clock decides a
time-based checkpoint. Rank 0 alone writes (checkpoints under
output_dir/checkpoints/<id>/ and the finished record); every rank reads the
checkpoint on resume, and a checkpoint resumes under any number of processes.
Data with an attention mask (varying tokens per sample) trains in one process.

Launch::

    torchrun --nproc_per_node=4 my_train.py        # my_train.py calls init_distributed() then ddp_train_run()

or, for tests and single-node use, :func:`spawn_local` (``torch.multiprocessing.spawn``).
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from flops_fit.training.store import RunRecord
from flops_fit.training.trainer import RunInputs, _share, train_run

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


def ddp_train_run(exp: Any, inp: RunInputs) -> RunRecord | None:
    """Train one experiment data-parallel over the current process group (``train_run`` on every rank);
    rank 0 returns its record, the others None. Without a process group it is one process."""
    if not isinstance(inp, RunInputs):
        raise TypeError(f"inp: expected flops_fit.training.trainer.RunInputs, found {type(inp).__name__}")
    return train_run(exp, inp)


def _split(n: int, world: int) -> list[range]:
    """Every rank's share of n samples (the trainer's own rule, for inspection and tests)."""
    return [range(*_share(n, world, r)) for r in range(world)]


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
