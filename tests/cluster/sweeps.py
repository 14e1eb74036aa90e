"""Shared sweep drivers for the cluster tests (local reference vs an executor)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import cluster_helpers as h

import flops_fit as ff
from flops_fit.planning import SweepPlan
from flops_fit.training.store import ResultsStore, RunRecord
from flops_fit.training.sweep import run_sweep

MOCK_BUDGETS = [1e17, 1e18, 1e19]


class ToyModel:
    def __init__(self, d_model: int, n_layers: int = 4, vocab: int = 256) -> None:
        self.d_model, self.n_layers, self.vocab = d_model, n_layers, vocab

    def num_params(self) -> int:
        return 12 * self.n_layers * self.d_model**2 + self.vocab * self.d_model


def mock_sweep(out: Path, executor: Any = None, seed: int = 3) -> dict[str, float]:
    """find_optimal in mock mode; returns {experiment_id: final_loss} read back from results.json."""
    ff.find_optimal(
        ToyModel, "d_model", compute_budgets=MOCK_BUDGETS, num_model_sizes=3, mode="mock", seed=seed,
        output_dir=out, progress=False, executor=executor, n_bootstrap=20,
    )
    _, records = ResultsStore.read(out / "results.json")
    return {r.experiment_id: r.final_loss for r in records}


def mock_plan(out: Path, seed: int = 3) -> SweepPlan:
    return ff.find_optimal(
        ToyModel, "d_model", compute_budgets=MOCK_BUDGETS, num_model_sizes=3, mode="mock", seed=seed,
        output_dir=out, train=False,
    )


def sweep_with(plan: SweepPlan, run_fn: Any, out: Path, executor: Any) -> list[RunRecord]:
    store = ResultsStore(out / "results.json", plan.fingerprint())
    run_sweep(plan, run_fn, store, executor=executor, progress=False)
    _, records = ResultsStore.read(out / "results.json")
    return records


def tiny_real_plan(budgets: tuple[float, ...] = (3e5, 1e6)) -> SweepPlan:
    from flops_fit.planning import PlanSettings, plan_sweep

    model = h.TinyMLP
    return plan_sweep(
        list(budgets), lambda w: model(w).num_params(), size_param="width", model_name="TinyMLP",
        settings=PlanSettings(num_model_sizes=2, span_decades=0.3, size_min=2, center_tokens_per_param=5.0),
    )


def tiny_real_run_fn(out: Path):
    """make_run_fn over the tiny MLP regression task (CPU, one thread, deterministic)."""
    from flops_fit.training.local import make_run_fn
    from flops_fit.training.trainer import TrainConfig

    cfg = TrainConfig(batch_size=32, device="cpu", measure_flops=False, num_threads=1, progress=False,
                      val_units=128, checkpoint_every_steps=5)
    return make_run_fn(
        model_factory=h.TinyMLP, size_param="width", model_kwargs={}, dataset=h.regression_data(),
        loss_fn=h.mse, train_config=cfg, output_dir=out, seed=0,
    )


def losses(records: list[RunRecord]) -> dict[str, float]:
    return {r.experiment_id: r.final_loss for r in records}


def crash_run_fn(marker_dir: Path, target: str, how: str = "kill", seed: int = 3):
    return functools.partial(h.crash_once, marker_dir=str(marker_dir), target_id=target, law=ff.MockLaw(),
                             seed=seed, how=how)
