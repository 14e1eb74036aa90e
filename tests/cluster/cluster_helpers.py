"""Run functions, a tiny model and data for the cluster tests.

Registered with cloudpickle "by value" so workers (Ray, Dask, submitit
subprocesses) need not import this test module.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import torch

from flops_fit.training.mock import MockLaw, mock_run


def ship_by_value() -> None:
    """Let workers unpickle functions and classes of this module without importing it."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        import ray.cloudpickle as rcp

        rcp.register_pickle_by_value(sys.modules[__name__])
    except ImportError:  # pragma: no cover
        pass


def crash_once(exp, marker_dir: str, target_id: str, law: MockLaw, seed: int, how: str = "kill"):
    """Kill (or raise in) the worker on the first attempt of `target_id`, then behave like mock_run."""
    marker = Path(marker_dir) / f"{exp.experiment_id}.attempts"
    with open(marker, "a") as fh:  # one line per attempt, any experiment
        fh.write(f"{os.getpid()}\n")
    if exp.experiment_id == target_id and len(marker.read_text().splitlines()) == 1:
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError(f"first attempt of {exp.experiment_id} fails on purpose")
    return mock_run(exp, law, seed)


def always_fails(exp, target_id: str, law: MockLaw, seed: int):
    if exp.experiment_id == target_id:
        raise ValueError(f"{exp.experiment_id} can never succeed")
    return mock_run(exp, law, seed)


class TinyMLP(torch.nn.Module):
    """Regression MLP whose hidden width is the size parameter."""

    def __init__(self, width: int, d_in: int = 8) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(d_in, width), torch.nn.Tanh(), torch.nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def regression_data(n: int = 2048, d_in: int = 8, seed: int = 0) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    w = torch.randn(d_in, generator=g)
    y = torch.sin(x @ w) + 0.1 * torch.randn(n, generator=g)
    return torch.utils.data.TensorDataset(x, y)


def mse(outputs: torch.Tensor, batch) -> torch.Tensor:
    return torch.nn.functional.mse_loss(outputs, batch[1])


class LockedDataset(torch.utils.data.Dataset):
    """A dataset that holds a lock: it cannot be pickled."""

    def __init__(self, base) -> None:
        self.base = base
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        with self._lock:
            return self.base[i]
