"""estimate_cost: positive, per experiment, grows with D and N."""

from __future__ import annotations

import pytest

from ff_train_helpers import TinyLM, TokenData, lm_loss
from flops_fit.planning import Experiment, SweepPlan
from flops_fit.training.cost import estimate_cost
from flops_fit.training.trainer import TrainConfig


def test_estimate_cost_shape_and_monotone():
    exps = [
        Experiment("a", 1e9, 0, 8, TinyLM(8).num_params(), 1e4, 1.0),
        Experiment("b", 1e9, 0, 8, TinyLM(8).num_params(), 4e4, 1.0),
        Experiment("c", 1e9, 0, 64, TinyLM(64).num_params(), 1e4, 1.0),
        Experiment("skip", 1e9, 0, 64, TinyLM(64).num_params(), 1e4, 1.0, flagged=True, flag_reason="x"),
    ]
    plan = SweepPlan(budgets=[1e9], experiments=exps, size_param="d_model", model_name="TinyLM")
    est = estimate_cost(plan, TinyLM, "d_model", {}, TokenData(128), lm_loss, TrainConfig(batch_size=8, val_units=64))
    assert set(est["per_experiment"]) == {"a", "b", "c"}
    per = est["per_experiment"]
    assert per["b"] > 3 * per["a"] > 0
    assert est["total_seconds"] == pytest.approx(sum(per.values()))
    assert est["device"] == "cpu" and est["units"] == "tokens"
    assert len(est["seconds_per_unit"]) == 2


def test_estimate_cost_probe_steps_checked():
    plan = SweepPlan(budgets=[1e9], experiments=[Experiment("a", 1e9, 0, 8, 100, 1e4, 1.0)],
                     size_param="d_model", model_name="TinyLM")
    with pytest.raises(ValueError, match=r"probe_steps: expected a positive integer, found 0"):
        estimate_cost(plan, TinyLM, "d_model", {}, TokenData(16), lm_loss, TrainConfig(), probe_steps=0)
