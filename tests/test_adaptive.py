"""Adaptive sweeps (mock): budgets smallest first, each centred on the N_opt its predecessors predict, an
unbracketed budget extended on its open side, a target precision that stops the sweep early; every round in
sweep.json, replayed on resume. The truth here is a law of our choosing whose optimum sits far from the
20-tokens-per-parameter guess the fixed grid is centred on."""

from __future__ import annotations

import json

import pytest

import flops_fit as ff
from flops_fit import pipeline

# N_opt ∝ C^0.54 (beta > alpha): at 1e21 FLOPs the optimum is ~5x the 20-tokens/param centre
LAW = ff.MockLaw(E=1.7, A=400.0, B=2000.0, alpha=0.34, beta=0.40, noise=0.01)
COMMON = dict(mode="mock", mock_law=LAW, compute_budgets=[1e18, 1e19, 1e20, 1e21], model_kwargs={"n_layers": 4},
              num_model_sizes=5, span_decades=0.5, size_multiple=16, n_bootstrap=100, progress=False)


def test_adaptive_brackets_every_budget_that_the_fixed_grid_misses(tmp_path):
    fixed = ff.find_optimal("gpt", output_dir=tmp_path / "fixed", **COMMON)
    ad = ff.find_optimal("gpt", output_dir=tmp_path / "adaptive", adaptive=True, **COMMON)
    assert sum(o.in_range for o in fixed.analysis.isoflop.optima) < 4  # the off-centre grid misses one
    assert all(o.in_range for o in ad.analysis.isoflop.optima) and len(ad.analysis.isoflop.optima) == 4
    saved = json.loads((tmp_path / "adaptive" / "sweep.json").read_text())
    rounds = saved["adaptive"]["rounds"]
    assert [r["compute_budget"] for r in rounds if r["kind"] == "budget"] == COMMON["compute_budgets"]
    guess = (1e19 / (6 * 20)) ** 0.5  # the fixed grid's centre at 1e19: 20 tokens per parameter
    assert rounds[1]["centre"] > 1.5 * guess  # moved towards the truth, which lies above the guess
    ids = [i for r in rounds for i in r.get("experiments", [])]
    assert sorted(ids) == sorted(r.experiment_id for r in ad.records)  # every run belongs to a recorded round
    text = ad.summary()
    assert "adaptive: 4 of 4 budgets trained, smallest first" in text and "C=1e+19 budget: centred on N=" in text


def test_a_resumed_adaptive_sweep_replays_its_rounds(tmp_path, monkeypatch):
    out = tmp_path / "a"
    whole = ff.find_optimal("gpt", output_dir=tmp_path / "whole", adaptive=True, **COMMON)
    real, calls = pipeline.train, []

    def dies_on_third_round(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "train", dies_on_third_round)
    with pytest.raises(KeyboardInterrupt):
        ff.find_optimal("gpt", output_dir=out, adaptive=True, **COMMON)
    monkeypatch.setattr(pipeline, "train", real)
    before = json.loads((out / "sweep.json").read_text())["adaptive"]["rounds"]
    assert len(before) == 3  # the third round was decided and recorded before its runs trained
    again = ff.find_optimal("gpt", output_dir=out, adaptive=True, **COMMON)
    after = json.loads((out / "sweep.json").read_text())["adaptive"]["rounds"]
    assert after[:3] == before and after == json.loads((tmp_path / "whole" / "sweep.json").read_text())["adaptive"][
        "rounds"]
    assert {r.experiment_id: r.final_loss for r in again.records} == {r.experiment_id: r.final_loss
                                                                     for r in whole.records}
    stamps = {r.experiment_id: r.timestamp for r in again.records}
    third = ff.find_optimal("gpt", output_dir=out, adaptive=True, **COMMON)  # done: trains nothing
    assert {r.experiment_id: r.timestamp for r in third.records} == stamps


def test_a_target_precision_stops_adding_budgets_and_says_how_far_it_got(tmp_path):
    loose = ff.find_optimal("gpt", output_dir=tmp_path / "loose", target={"compute": 1e22, "max_ratio": 100.0},
                            **COMMON)
    trained = sorted({r.compute_budget for r in loose.records})
    assert len(trained) < 4  # stopped before the largest budgets
    rounds = loose.plan.adaptive["rounds"]
    assert rounds[-1]["kind"] == "stop" and rounds[-1]["ratio"] <= 100
    assert "target reached: N_opt at C=1e+22: interval ×" in loose.summary()
    tight = ff.find_optimal("gpt", output_dir=tmp_path / "tight", target={"compute": 1e25, "max_ratio": 1.01},
                            **COMMON)
    assert len({r.compute_budget for r in tight.records}) == 4
    assert "target NOT reached: N_opt at C=1e+25 spans ×" in tight.summary()
    assert "forecast: " in tight.summary()  # how much more would reach it (or that budgets alone would not)
    spent = sum(r.compute_budget for r in loose.records)
    assert spent < 0.2 * sum(r.compute_budget for r in tight.records)


@pytest.mark.parametrize("target, msg", [
    ({"compute": -1, "max_ratio": 2}, "target.compute: expected a positive finite number of FLOPs, found -1"),
    ({"compute": 1e22, "max_ratio": 1}, "target.max_ratio: expected"),
    ({"compute": 1e22, "max_ratio": 2, "width": 3}, "target: unknown field 'width'"),
    ({"compute": 1e22, "max_ratio": 2, "quantity": "loss"}, "target.quantity: expected 'N_opt', found 'loss'"),
])
def test_bad_targets_are_named_before_anything_runs(tmp_path, target, msg):
    with pytest.raises(ValueError, match=msg.replace("(", r"\(")):
        ff.find_optimal("gpt", output_dir=tmp_path, target=target, **COMMON)
    assert not (tmp_path / "sweep.json").exists()


def test_a_target_needs_bootstrap_intervals(tmp_path):
    with pytest.raises(ValueError, match="target: judged by the bootstrap interval, so n_bootstrap must be 50"):
        ff.find_optimal("gpt", output_dir=tmp_path, target={"compute": 1e22, "max_ratio": 2},
                        **{**COMMON, "n_bootstrap": 0})


def test_the_cli_runs_the_same_adaptive_sweep(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "cli"))
    from ff_cli_helpers import ff as ff_cli

    args = ["preset=mock_demo", "compute.budgets=[1e18,1e19,1e20,1e21]", "planning.num_model_sizes=5",
            "planning.span_decades=0.5", "planning.size_multiple=16", "model.n_layers=4", "analysis.n_bootstrap=100",
            "mock_law.E=1.7", "mock_law.A=400", "mock_law.B=2000", "mock_law.alpha=0.34", "mock_law.beta=0.40",
            "mock_law.noise=0.01", "adaptive=true", "output_dir=cli"]
    proc = ff_cli("run", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "adaptive: 4 of 4 budgets trained" in proc.stdout
    lib = ff.find_optimal("gpt", output_dir=tmp_path / "lib", adaptive=True, **COMMON)
    cli_rounds = json.loads((tmp_path / "cli" / "sweep.json").read_text())["adaptive"]["rounds"]
    assert [r["kind"] for r in cli_rounds] == [r["kind"] for r in lib.plan.adaptive["rounds"]]


def test_a_tampered_round_in_sweep_json_is_refused(tmp_path):
    ff.find_optimal("gpt", output_dir=tmp_path, adaptive=True, **{**COMMON, "n_bootstrap": 0})
    path = tmp_path / "sweep.json"
    data = json.loads(path.read_text())
    data["adaptive"]["rounds"][0]["experiments"].append("../../etc")
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"field 'adaptive'.rounds\[0\]: '../../etc' is not an experiment of this plan"):
        ff.SweepPlan.load(str(path))
    data["adaptive"]["rounds"][0] = {"kind": "rm -rf", "compute_budget": 1e18}
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"rounds\[0\]: expected kind budget/extend/stop"):
        ff.SweepPlan.load(str(path))
