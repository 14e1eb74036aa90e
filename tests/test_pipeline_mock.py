"""The whole pipeline in mock mode: plan → train → analyse → Result, and resume."""

import json
import re
import os

import numpy as np
import pandas as pd
import pytest

import flops_fit as ff
from flops_fit.training import mock as mock_mod
from flops_fit.training.store import ResultsStore

BUDGETS = [1e17, 1e18, 1e19, 1e20, 1e21]


def run(toy_model, out, **kw):
    kw.setdefault("compute_budgets", BUDGETS)
    kw.setdefault("n_bootstrap", 20)  # intervals are tested in tests/analysis; keep the pipeline fast
    return ff.find_optimal(toy_model, "d_model", mode="mock", output_dir=out, progress=False, **kw)


def test_recovers_the_mock_law_without_noise(tmp_path, toy_model):
    law = ff.MockLaw(noise=0)
    res = run(toy_model, tmp_path, mock_law=law)
    a = res.analysis.isoflop.n_opt_fit.exponent_a
    assert abs(a - law.beta / (law.alpha + law.beta)) < 0.01
    G = (law.alpha * law.A / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
    analytic = G * (1e24 / 6) ** (law.beta / (law.alpha + law.beta))
    p = res.predict(1e24)
    assert p["optimal_params"] == pytest.approx(analytic, rel=0.10)
    assert 6 * p["optimal_params"] * p["optimal_tokens"] == pytest.approx(1e24, rel=1e-12)
    assert p["tokens_per_param"] == pytest.approx(p["optimal_tokens"] / p["optimal_params"])
    # Approach 2's loss law must land near the true optimum loss too
    n_true = law.optimal_params(1e21)
    assert p["expected_loss"] < res.analysis.isoflop.optima[0].loss_opt
    assert res.predict(1e21)["expected_loss"] == pytest.approx(law.loss(n_true, 1e21 / (6 * n_true)), rel=0.01)


def test_second_call_trains_nothing_and_gives_same_answer(tmp_path, toy_model, monkeypatch):
    calls = []
    real = mock_mod.mock_run

    def counting(exp, law, seed):
        calls.append(exp.experiment_id)
        return real(exp, law, seed)

    monkeypatch.setattr("flops_fit.pipeline.mock_run", counting)
    first = run(toy_model, tmp_path)
    n_first = len(calls)
    assert n_first == 35
    second = run(toy_model, tmp_path)
    assert len(calls) == n_first, "resume retrained finished experiments"
    assert second.predict(1e23) == first.predict(1e23)


def test_every_finished_run_is_durable_before_the_next_and_results_json_is_written_once(tmp_path, toy_model,
                                                                                        monkeypatch):
    seen, compactions = [], []
    real_fsync, real_replace = os.fsync, os.replace

    def checked_fsync(fd):
        real_fsync(fd)
        if os.readlink(f"/proc/self/fd/{fd}").endswith("results.journal.jsonl"):
            fp, records = ResultsStore.read(tmp_path / "results.json")  # raises if invalid
            seen.append(len(records))

    def checked_replace(src, dst):
        real_replace(src, dst)
        if str(dst).endswith("results.json"):
            compactions.append(len(ResultsStore.read(dst)[1]))

    monkeypatch.setattr("flops_fit.training.store.os.fsync", checked_fsync)
    monkeypatch.setattr("flops_fit.io.os.replace", checked_replace)
    run(toy_model, tmp_path)
    assert seen == list(range(1, 36)), "one durable append per finished experiment"
    assert compactions == [35], "results.json is written once, at the end (linear in the number of runs)"
    assert not (tmp_path / "results.journal.jsonl").exists()


def test_noise_is_seeded_and_order_independent(tmp_path, toy_model):
    a = run(toy_model, tmp_path / "a", seed=1)
    b = run(toy_model, tmp_path / "b", seed=1)
    c = run(toy_model, tmp_path / "c", seed=2)
    la = {r.experiment_id: r.final_loss for r in a.records}
    assert la == {r.experiment_id: r.final_loss for r in b.records}
    assert la != {r.experiment_id: r.final_loss for r in c.records}
    exp = a.plan.experiments[3]
    law = ff.MockLaw()
    # a single draw does not depend on which runs came before it
    assert law.sample(exp.num_params, exp.num_tokens, seed=1, key=exp.experiment_id) == la[exp.experiment_id]
    ratios = np.array([r.final_loss / law.loss(r.num_params, r.num_tokens) for r in a.records])
    assert 0.003 < np.std(np.log(ratios)) < 0.02  # 1% log-normal noise


def test_changed_plan_in_same_directory_is_refused(tmp_path, toy_model):
    run(toy_model, tmp_path)
    with pytest.raises(ValueError, match="different plan"):
        run(toy_model, tmp_path, compute_budgets=[1e17, 1e18])
    with pytest.raises(ValueError, match="different plan"):
        run(toy_model, tmp_path, mock_law=ff.MockLaw(E=2.0))
    res = run(toy_model, tmp_path, compute_budgets=[1e17, 1e18, 1e19], resume=False)
    assert len(res.records) == 21
    assert len(list(tmp_path.glob("results.*.json"))) == 1


def test_train_false_returns_plan_with_cost_and_writes_sweep_json(tmp_path, toy_model):
    plan = ff.find_optimal(toy_model, "d_model", compute_budgets=[1e15, 1e16], train=False, output_dir=tmp_path)
    assert isinstance(plan, ff.SweepPlan)
    assert plan.total_flops == pytest.approx(sum(e.flops for e in plan.runnable))
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["schema"] == 1 and saved["fingerprint"] == plan.fingerprint()
    assert len(saved["experiments"]) == len(plan.experiments)
    assert not (tmp_path / "results.json").exists()
    df = plan.to_dataframe()
    assert {"compute_budget", "N", "D", "tokens_per_param", "flags" if False else "flagged"} <= set(df.columns)
    assert "total compute" in plan.summary()


def test_local_mode_without_data_returns_plan_with_warning(tmp_path, toy_model):
    with pytest.warns(UserWarning, match="dataset: not given"):
        plan = ff.find_optimal(toy_model, "d_model", compute_budgets=[1e15, 1e16], output_dir=tmp_path)
    assert isinstance(plan, ff.SweepPlan)


def test_result_files_table_plots_and_reload(tmp_path, toy_model):
    res = run(toy_model, tmp_path)
    data = json.loads((tmp_path / "analysis" / "scaling_laws.json").read_text())
    for key in ("n_opt_fit", "d_opt_fit", "l_opt_fit"):
        assert {"coefficient_k", "exponent_a", "r_squared"} <= set(data[key])
    assert len(data["optimal_points"]) == 5 and data["optimal_ratio"] > 0
    assert data["flops_accounting"] == "6ND"
    # D fit is derived from the N fit: 6 N D = C exactly
    assert data["n_opt_fit"]["exponent_a"] + data["d_opt_fit"]["exponent_a"] == pytest.approx(1.0)
    assert 6 * data["n_opt_fit"]["coefficient_k"] * data["d_opt_fit"]["coefficient_k"] == pytest.approx(1.0)

    table = res.chinchilla_table([1e20, 1e22])
    lines = [ln for ln in table.splitlines() if ln.startswith("| 1.00e+")]
    assert len(lines) == 2 and "extrapolated" in lines[1] and "extrapolated" not in lines[0]
    df = res.chinchilla_dataframe()
    assert np.allclose(6 * df.N_opt * df.D_opt, df.compute_budget)

    figs = res.plot()
    assert len(figs) == 3
    for name in ("isoflops_curves.png", "scaling_laws.png", "tokens_per_param.png"):
        f = tmp_path / "plots" / name
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 10_000
    ax = figs[0].axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() and ax.get_ylabel()

    back = ff.Result.load(tmp_path)
    assert back.predict(1e22) == res.predict(1e22)  # same files, stored seed: the same numbers
    assert back.chinchilla_table() == res.chinchilla_table()
    with pytest.raises(ValueError, match="compute_budget: expected a positive finite number of FLOPs, found -5"):
        back.predict(-5)


def test_unbracketed_budget_falls_back_and_says_so(tmp_path, toy_model):
    # centre the sweep at 2000 tokens/param: far too small models, the optimum is above the range
    res = run(toy_model, tmp_path, center_tokens_per_param=2000, span_decades=0.5,
              mock_law=ff.MockLaw(noise=0))
    opt = res.analysis.isoflop.optima
    assert any(o.method == "best_sampled" for o in opt)
    fallback = next(o for o in opt if o.method == "best_sampled")
    assert "does not bracket the optimum" in fallback.warning
    assert fallback.n_opt == max(r.num_params for r in res.records if r.compute_budget == fallback.compute_budget)
    assert any("did not bracket" in w for w in res.analysis.warnings)


def test_groups_by_planned_budget_not_rounded_log(tmp_path, toy_model):
    # 1e18 and 1.004e18 round to the same log10 at 2 decimals; they must stay two budgets
    res = run(toy_model, tmp_path, compute_budgets=[1e18, 1.004e18, 1e19])
    assert [o.compute_budget for o in res.analysis.isoflop.optima] == [1e18, 1.004e18, 1e19]


def test_compare_two_architectures(tmp_path, toy_model):
    wide = ff.MockLaw(alpha=0.30, beta=0.40, A=300, B=800, E=2.0, noise=0)
    cmp = ff.compare(
        {"chinchilla-law": {"mock_law": ff.MockLaw(noise=0)}, "other-law": {"mock_law": wide}},
        model_cls=toy_model, model_size_param="d_model", compute_budgets=[1e17, 1e18, 1e19],
        mode="mock", output_dir=tmp_path, progress=False, n_bootstrap=20,
    )
    df = cmp.to_dataframe(1e21)
    assert list(df.index) == ["chinchilla-law", "other-law"]
    # the second law has a larger N-exponent (beta/(alpha+beta) = 0.571 vs 0.452)
    assert df.loc["other-law", "a (N_opt ∝ C^a)"] > df.loc["chinchilla-law", "a (N_opt ∝ C^a)"] + 0.03
    assert (tmp_path / "chinchilla-law" / "results.json").exists()
    cmp.plot()
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match=r"runs\['x'\]: 'mode' is also given as a common argument"):
        ff.compare({"x": {"mode": "mock"}}, model_cls=toy_model, model_size_param="d_model", mode="mock")


def test_compare_reports_the_compute_multiplier_and_crossover(tmp_path, toy_model):
    # law B = law A at N/s, D/s: B needs exactly s² = 2x the compute of A for any loss, and never crosses it
    base = ff.MockLaw(noise=0.003)
    s = 2 ** 0.5
    worse = ff.MockLaw(E=base.E, A=base.A * s**base.alpha, B=base.B * s**base.beta, alpha=base.alpha,
                       beta=base.beta, noise=0.003)
    steeper = ff.MockLaw(E=base.E - 0.3, A=base.A * 1.5, B=base.B * 1.5, alpha=base.alpha, beta=base.beta, noise=0.003)
    cmp = ff.compare(
        {"A": {"mock_law": base}, "B": {"mock_law": worse}, "C": {"mock_law": steeper}},
        model_cls=toy_model, model_size_param="d_model", compute_budgets=[1e17, 1e18, 1e19, 1e20],
        mode="mock", output_dir=tmp_path, progress=False, n_bootstrap=40,
    )
    df = cmp.to_dataframe()
    assert df.attrs["target_compute"] == 1e20  # inside the sweeps' own range, not 1e21
    m, (lo, hi) = df.loc["B", "compute_multiplier"], df.loc["B", "compute_multiplier_ci"]
    assert m == pytest.approx(2.0, rel=0.1) and lo <= 2.0 <= hi and hi / lo < 3
    assert pd.isna(df.loc["B", "crossover_compute"])
    assert df.loc["B", "loss"] > df.loc["A", "loss"] and df.loc["B", "expected_loss_ci"] is not None
    # C: a lower floor but larger coefficients: worse at small compute, better at large, so the curves cross
    x = df.loc["C", "crossover_compute"]
    assert not pd.isna(x) and 1e20 < x < 1e22
    text = cmp.summary()
    assert re.search(r"B needs (1\.9\d|2\.0\d|2\.1\d)× \[[\d.]+, [\d.]+\] the compute of A for the same loss", text)
    assert "crossover with A at C=" in text
    with pytest.raises(ValueError, match=r"target_compute: expected a positive finite number of FLOPs"):
        cmp.to_dataframe(-1)
