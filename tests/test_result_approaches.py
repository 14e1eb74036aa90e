"""One report, several approaches: Approach 2 and 3 side by side, intervals, outliers, which one predicts."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import flops_fit as ff

BUDGETS = [1e17, 1e18, 1e19, 1e20, 1e21]
# the law of the issue: alpha != beta, so parabola vertices are biased even without noise
SKEWED = ff.MockLaw(alpha=0.30, beta=0.40, A=300, B=800, E=2.0, noise=0)


def sweep(toy_model, out, **kw):
    kw.setdefault("compute_budgets", BUDGETS)
    kw.setdefault("n_bootstrap", 50)
    return ff.find_optimal(toy_model, "d_model", mode="mock", output_dir=out, progress=False, **kw)


def analytic_n_opt(law: ff.MockLaw, c: float) -> float:
    a = law.beta / (law.alpha + law.beta)
    G = (law.alpha * law.A / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
    return G * (c / 6) ** a


def test_approach_3_recovers_a_skewed_law_that_approach_2_cannot(tmp_path, toy_model):
    res = sweep(toy_model, tmp_path, mock_law=SKEWED)
    fit = res.analysis.parametric
    assert fit is not None and fit.converged
    assert abs(fit.alpha - 0.30) < 1e-3 and abs(fit.beta - 0.40) < 1e-3 and abs(fit.E - 2.0) < 1e-3
    a_true = 0.40 / 0.70
    a2 = res.predict(1e24, "approach_2")["exponent_a"]
    assert abs(a2 - a_true) > 0.02, "Approach 2 should be visibly biased on this law"

    assert res.predict_with == "approach_3"
    p = res.predict(1e24)
    assert p["approach"] == "approach_3"
    assert p["optimal_params"] == pytest.approx(analytic_n_opt(SKEWED, 1e24), rel=1e-3)
    assert 6 * p["optimal_params"] * p["optimal_tokens"] == pytest.approx(1e24, rel=1e-12)
    # Approach 2's answer at 1e24 is off by far more than Approach 3's
    p2 = res.predict(1e24, "approach_2")
    assert abs(math.log(p2["optimal_params"] / analytic_n_opt(SKEWED, 1e24))) > 0.3

    # the report says both, says they disagree, and says which one predicts
    text = res.summary()
    assert "Approach 2 (IsoFLOP parabolas" in text and "Approach 3 (parametric" in text
    assert "predict() uses Approach 3" in text
    # the disagreement is a structured record with a severity, printed first, and the choice says why
    dis = [f for f in res.analysis.findings if f.code == "approaches_disagree" and f.compute == 1e24]
    assert dis and dis[0].severity == "disagree" and dis[0].values["ratio"] < 1 / 1.5
    assert text.startswith("DISAGREE: ")
    assert "bracketed" in res.analysis.evidence.reason
    assert "Predictions by Approach 3" in res.chinchilla_table()
    side = res.approaches_dataframe([1e20])
    assert list(side["approach"]) == ["approach_2", "approach_3"]
    assert side["a"].iloc[1] == pytest.approx(a_true, abs=1e-3)

    saved = json.loads((tmp_path / "analysis" / "scaling_laws.json").read_text())
    assert saved["predict_with"] == "approach_3"
    assert saved["approach_3"]["alpha"] == pytest.approx(0.30, abs=1e-3)
    assert saved["analysis_options"] == {"exclude_outliers": True, "n_bootstrap": 50, "seed": 0,
                                         "confidence": 0.9, "outlier_threshold": saved["analysis_options"][
                                             "outlier_threshold"], "flops_accounting": "6ND"}
    assert saved["cost_model"] == {"c": 6.0, "b": 1.0, "accounting": "6ND", "max_rel_error": 0.0}
    assert saved["table"][0]["approach"] == "approach_3"


def test_intervals_are_seeded_cover_the_estimate_and_reload_identically(tmp_path, toy_model):
    law = ff.MockLaw(noise=0.01)
    res = sweep(toy_model, tmp_path / "a", mock_law=law, n_bootstrap=100, seed=1)
    p = res.predict(1e23)
    for key in ("optimal_params", "optimal_tokens", "expected_loss", "tokens_per_param", "exponent_a"):
        lo, hi = p[f"{key}_ci"]
        assert lo < hi, key
        assert lo <= p[key] <= hi, key
    # 1% noise: the interval has real width, and N_opt at 1e23 is known to within a factor of a few
    lo, hi = p["optimal_params_ci"]
    assert 1.01 < hi / lo < 20
    assert lo < analytic_n_opt(law, 1e23) < hi

    table = res.chinchilla_table([1e23])
    assert "90% bootstrap intervals (100 resamples)" in table
    row = next(ln for ln in table.splitlines() if ln.startswith("| 1.00e+23"))
    assert row.count("[") == 3  # N, D and loss each have a bracket

    again = ff.Result.load(tmp_path / "a")
    assert again.predict(1e23) == p
    other_seed = ff.Result.load(tmp_path / "a", seed=2)
    assert other_seed.predict(1e23)["optimal_params_ci"] != p["optimal_params_ci"]
    assert other_seed.predict(1e23)["optimal_params"] == p["optimal_params"]  # the point estimate is not random

    none = ff.Result.load(tmp_path / "a", n_bootstrap=0)
    q = none.predict(1e23)
    assert q["optimal_params_ci"] is None and q["optimal_params"] == p["optimal_params"]
    assert "bootstrap" not in none.chinchilla_table([1e23])


def test_outliers_are_flagged_listed_and_excluded(tmp_path, toy_model):
    res = sweep(toy_model, tmp_path, mock_law=ff.MockLaw(noise=0.002), n_bootstrap=0)
    records = [dataclasses.replace(r) for r in res.records]
    # one run diverged, one finished with a loss 40% too high (a broken node, a bad seed)
    records[3] = dataclasses.replace(records[3], status="diverged", final_loss=None, error="loss 3x initial")
    records[10] = dataclasses.replace(records[10], final_loss=records[10].final_loss * 1.4)
    bad = {records[3].experiment_id, records[10].experiment_id}

    cleaned = ff.Result.from_records(records, res.plan, n_bootstrap=0)
    flagged = cleaned.analysis.excluded
    assert set(flagged["experiment_id"]) == bad
    reasons = dict(zip(flagged["experiment_id"], flagged["outlier_reason"]))
    assert "diverged" in reasons[records[3].experiment_id]
    assert "residual" in reasons[records[10].experiment_id]
    assert set(p["experiment_id"] for p in cleaned.to_dict()["outliers"]) == bad
    assert "2 outlier run(s) excluded" in cleaned.summary()
    assert f"2 outlier run(s) excluded from the fits: {records[3].experiment_id} (" in cleaned.chinchilla_table()
    a_clean = cleaned.analysis.parametric.a

    kept = ff.Result.from_records(records, res.plan, n_bootstrap=0, exclude_outliers=False)
    assert "flagged (kept)" in kept.summary()
    assert abs(a_clean - ff.MockLaw().a) < 0.01
    # the kept point enters both fits (the failed run cannot: it has no loss); the parabolas feel it
    assert cleaned.analysis.parametric.n_points == 33 and kept.analysis.parametric.n_points == 34
    iso_clean = cleaned.analysis.isoflop.optima[1]
    iso_kept = kept.analysis.isoflop.optima[1]
    assert iso_clean.n_points == 6 and iso_kept.n_points == 7
    assert abs(math.log(iso_kept.n_opt / iso_clean.n_opt)) > 0.05


def test_too_few_runs_for_approach_3_falls_back_to_approach_2_and_says_why(tmp_path, toy_model):
    res = sweep(toy_model, tmp_path, compute_budgets=[1e18, 1e19], num_model_sizes=3, n_bootstrap=20)
    assert res.analysis.parametric is None
    assert res.predict_with == "approach_2"
    assert res.predict(1e20)["approach"] == "approach_2"
    assert "6 usable runs, at least 8 needed" in res.summary()
    with pytest.raises(ValueError, match="approach: Approach 3 was not fitted"):
        res.predict(1e20, "approach_3")


def test_fit_parametric_on_a_sweeps_results_json_matches_the_result(tmp_path, toy_model):
    res = sweep(toy_model, tmp_path, mock_law=SKEWED, n_bootstrap=0)
    direct = ff.fit_parametric(tmp_path / "results.json")
    assert direct.a == pytest.approx(res.analysis.parametric.a, abs=1e-6)
    assert direct.E == pytest.approx(2.0, abs=1e-3)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"n_bootstrap": -1}, r"n_bootstrap: expected a non-negative integer \(0 = no intervals\), found -1"),
        ({"n_bootstrap": 2.5}, r"n_bootstrap: expected a non-negative integer .* found 2.5"),
        ({"confidence": 1.5}, r"confidence: expected a number between 0 and 1 \(e.g. 0.9\), found 1.5"),
    ],
)
def test_bad_analysis_options_fail_before_any_run(tmp_path, toy_model, kw, message):
    with pytest.raises(ValueError, match=message):
        sweep(toy_model, tmp_path, **kw)
    assert not (tmp_path / "results.json").exists()


def test_predict_rejects_an_unknown_approach(tmp_path, toy_model):
    res = sweep(toy_model, tmp_path, n_bootstrap=0)
    with pytest.raises(ValueError, match=r"approach: expected one of \('approach_2', 'approach_3'\), found 'approach_9'"):
        res.predict(1e20, "approach_9")
    with pytest.raises(TypeError, match=r"Result.load: unexpected option\(s\) \['bootstrap'\]"):
        ff.Result.load(tmp_path, bootstrap=10)
    assert np.isfinite(res.predict(1e20)["optimal_params"])


def test_analysis_of_any_table_needs_no_status_or_initial_loss_columns(tmp_path, toy_model):
    from flops_fit.analysis import analyze

    res = sweep(toy_model, tmp_path, mock_law=SKEWED, n_bootstrap=0)
    bare = res.to_dataframe()[["compute_budget", "N", "D", "loss"]]  # e.g. a table from another project
    an = analyze(bare, n_bootstrap=0)
    assert an.parametric is not None and an.parametric.alpha == pytest.approx(0.30, abs=1e-3)


def test_one_budget_is_refused_before_any_run(tmp_path, toy_model):
    with pytest.raises(ValueError, match=r"compute_budgets: a scaling-law fit needs runnable runs at 2 or more budgets .* found 1 "
                                         r"\(\[1e\+18\]\); add budgets, or pass train=False"):
        sweep(toy_model, tmp_path, compute_budgets=[1e18])
    assert not (tmp_path / "results.json").exists()
    plan = sweep(toy_model, tmp_path, compute_budgets=[1e18], train=False)
    assert isinstance(plan, ff.SweepPlan) and plan.budgets == [1e18]


def test_a_sweep_whose_runs_failed_says_why_not_just_that_the_fit_failed(tmp_path, toy_model):
    res = sweep(toy_model, tmp_path, compute_budgets=[1e17, 1e18], n_bootstrap=0)
    broken = [dataclasses.replace(r, status="failed", final_loss=None, error="CUDA out of memory")
              if r.compute_budget == 1e18 else r for r in res.records]
    with pytest.raises(ValueError, match=r"records: a scaling-law fit needs completed runs at 2 or more compute "
                                         r"budgets, found 1 \(7 of 14 runs completed, 7 failed or diverged; first "
                                         r"failure: C1e\+18-d_model\d+ \(failed\): CUDA out of memory\)"):
        ff.Result.from_records(broken, res.plan)
