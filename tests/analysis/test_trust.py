"""The analysis never crashes on near-degenerate data, never over-excludes, and says what it cannot tell."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import flops_fit as ff
from flops_fit.analysis import analyze, approach_estimates
from flops_fit.analysis.data_io import group_budgets, synthetic_isoflop
from flops_fit.analysis.isoflop import fit_budget
from flops_fit.analysis.parametric import cap_exclusions


def test_overflow_repro_from_the_issue():
    n = np.array([1e8, 1e8, 1e9, 1e9, 1e10, 1e10, 1e10])
    x = np.log(n)
    o = fit_budget(1e19, n, 3 - 0.05 * x + 1e-9 * x**2)  # raised OverflowError before
    assert o.method == "best_sampled" and "does not bracket" in o.warning
    df = pd.DataFrame({"compute_budget": np.repeat([1e19, 1e20], 7), "N": np.tile(n, 2),
                       "D": np.repeat([1e19, 1e20], 7) / (6 * np.tile(n, 2)),
                       "loss": np.tile(3 - 0.05 * x + 1e-9 * x**2, 2)})
    analyze(df, n_bootstrap=30)  # must not raise


def fuzz_tables(n_tables: int, seed: int):
    """Random near-degenerate IsoFLOP tables: flat, straight, nearly straight, duplicated or two sizes,
    very noisy, or curving the wrong way."""
    rng = np.random.default_rng(seed)
    kinds = ["flat", "straight", "tiny_curvature", "duplicates", "huge_noise", "two_sizes", "inverted"]
    for t in range(n_tables):
        kind = kinds[t % len(kinds)]
        k = int(rng.integers(2, 6))
        budgets = np.sort(10.0 ** rng.uniform(15, 22, k))
        rows = []
        for c in budgets:
            m = int(rng.integers(2, 9))
            n = np.sqrt(c / 120) * 10.0 ** rng.uniform(-1.5, 1.5, m)
            if kind == "duplicates":
                n = np.repeat(n[:2], m)[:m]
            if kind == "two_sizes":
                n = np.where(np.arange(m) % 2, n[0], n[-1])
            x = np.log(n)
            loss = {"flat": np.full(m, 2.5), "straight": 3 - 0.05 * x,
                    "tiny_curvature": 3 - 0.05 * x + 1e-12 * x**2,
                    "inverted": 3 - 0.01 * (x - x.mean()) ** 2}.get(kind, 2 + 100 / n**0.3 + 1e3 * (c / 6 / n) ** -0.3)
            if kind == "huge_noise":
                loss = loss * np.exp(rng.normal(0, 0.5, m))
            rows += [(c, ni, c / (6 * ni), li) for ni, li in zip(n, np.maximum(loss, 1e-3))]
        yield kind, pd.DataFrame(rows, columns=["compute_budget", "N", "D", "loss"])


def check_never_raises(n_tables: int, seed: int) -> None:
    for kind, df in fuzz_tables(n_tables, seed):
        try:
            an = analyze(df, n_bootstrap=4, n_jobs=1)
        except ValueError as exc:  # a refusal that says why is allowed; a crash is not
            assert "data:" in str(exc) or "Approach" in str(exc), (kind, exc)
            continue
        e = approach_estimates(an, an.predict_with, 1e24)
        assert isinstance(e["optimal_params"], float)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_fuzz_70_near_degenerate_isoflop_tables_never_raise():
    check_never_raises(70, seed=7)  # ~0.5 s a table: degenerate surfaces make L-BFGS work hard


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_fuzz_200_near_degenerate_isoflop_tables_never_raise():
    check_never_raises(200, seed=11)


def test_exclusion_caps_per_budget_and_overall():
    z = np.array([50.0, 40, 30, 1, 60, 55, 2, 3])
    extreme = np.abs(z) > 12
    groups = np.array([1, 1, 1, 1, 2, 2, 2, 2])  # two budgets of 4 runs
    keep = cap_exclusions(extreme, z, groups)
    assert keep.sum() <= 1 or (keep[:4].sum() <= 1 and keep[4:].sum() <= 1)
    assert keep[:4].sum() <= 1 and keep[4:].sum() <= 1  # at most one of a budget with <= 5 runs
    z3 = np.array([50.0, 40, 30])
    assert not cap_exclusions(np.ones(3, bool), z3, np.array([1, 1, 1])).any()  # never below 3 runs
    many = np.full(100, 20.0)
    assert cap_exclusions(np.ones(100, bool), many, None).sum() == 10  # at most 10% overall


def test_outlier_exclusion_on_a_small_budget_removes_one_run_at_most():
    df = synthetic_isoflop(budgets=(1e17, 1e18, 1e19), points_per_budget=4, noise=0.002, seed=3,
                           tokens_per_param=200)
    df = df.rename(columns={"budget": "compute_budget"})
    bad = df.index[df["compute_budget"] == 1e18][:2]
    df.loc[bad, "loss"] *= 1.5  # two gross outliers in one 4-run budget
    an = analyze(df, n_bootstrap=0)
    per_budget = an.table[an.table["outlier"]].groupby("compute_budget").size()
    assert per_budget.max() <= 1
    assert (an.table[~an.table["outlier"]].groupby("compute_budget").size() >= 3).all()


def test_shuffled_records_give_identical_numbers():
    df = synthetic_isoflop(noise=0.01, seed=2).rename(columns={"budget": "compute_budget"})
    a = analyze(df, n_bootstrap=60, seed=1, n_jobs=1)
    b = analyze(df.sample(frac=1.0, random_state=5), n_bootstrap=60, seed=1, n_jobs=1)
    for ap in ("approach_2", "approach_3"):
        ea, eb = approach_estimates(a, ap, 1e23), approach_estimates(b, ap, 1e23)
        assert ea["optimal_params"] == eb["optimal_params"]
        assert ea["optimal_params_ci"] == eb["optimal_params_ci"]


def test_zero_irreducible_loss_is_reported_not_identified():
    # a pure power law (E = 0): the fit drives E to its bound, and the report must say so
    df = synthetic_isoflop(E=1e-9, A=50, B=200, noise=0.003, seed=0).rename(columns={"budget": "compute_budget"})
    res = ff.Result.from_table(df[["compute_budget", "N", "D", "loss"]], n_bootstrap=40)
    codes = {(f.code, f.values.get("parameter")) for f in res.analysis.findings}
    assert ("not_identified", "E") in codes
    assert "E=" in res.summary() and "(not identified by these runs)" in res.summary()


def test_wide_interval_is_flagged_not_informative():
    df = synthetic_isoflop(budgets=(1e17, 1e18), points_per_budget=5, noise=0.05, seed=4,
                           tokens_per_param=200).rename(columns={"budget": "compute_budget"})
    res = ff.Result.from_table(df, n_bootstrap=60)
    p = res.predict(1e24)
    lo, hi = p["optimal_params_ci"]
    assert hi / lo > 4
    assert any(f.code == "not_informative" for f in p["findings"])
    assert "not informative" in res.chinchilla_table([1e24])


def test_failed_resamples_are_counted_and_shown():
    df = synthetic_isoflop(noise=0.01, seed=1).rename(columns={"budget": "compute_budget"})
    res = ff.Result.from_table(df, n_bootstrap=40)
    assert "successful refits: Approach 2 40/40, Approach 3" in res.summary()


# ---------------------------------------------------------------- ff.analyze on runs a user already has


def test_analyze_llama3_style_table_from_c_d_and_loss(tmp_path):
    raw = pd.read_csv(__import__("importlib.resources").resources.files("flops_fit").joinpath(
        "reference", "llama3_isoflops_points.csv"))
    path = tmp_path / "runs.csv"
    raw.to_csv(path, index=False)
    res = ff.analyze(path, c_col="compute_budget", d_col="training_tokens", loss_col="validation_loss",
                     budget_col="compute_budget", n_bootstrap=20)
    assert "N derived as C/(6D)" in " ".join(res.analysis.warnings)
    assert len(res.analysis.isoflop.optima) == 10
    assert res.predict(3.8e25)["optimal_params"] == pytest.approx(402e9, rel=0.25)
    res2 = ff.analyze(path, c_col="compute_budget", d_col="training_tokens", loss_col="validation_loss",
                      n_bootstrap=20)  # no budget column: grouped by compute
    assert len(res2.analysis.isoflop.optima) == 10


def test_analyze_groups_by_compute_warns_on_mislabelled_budgets_and_keeps_best_of():
    df = synthetic_isoflop(noise=0.0, seed=0)
    lr = pd.concat([df.assign(lr=1e-3), df.assign(lr=3e-3, loss=df["loss"] * 1.02)], ignore_index=True)
    lr.loc[0, "budget"] = lr.loc[0, "budget"] * 2  # a label 2x off its run's 6ND
    res = ff.analyze(lr, best_of="lr", n_bootstrap=0)
    notes = " ".join(res.analysis.warnings)
    assert "best_of='lr': kept the lowest loss of each (N, D), 35 of 70 runs (35 dropped)" in notes
    assert "run row 0: budget label" in notes and "off its 6·N·D" in notes
    assert (res.analysis.table["loss"].to_numpy() <= df["loss"].max()).all()
    # without a budget column, runs are grouped by 6ND into the 5 planned budgets
    grouped = ff.analyze(df.drop(columns=["budget", "C"]), n_bootstrap=0)
    assert len(grouped.analysis.isoflop.optima) == 5
    labels = group_budgets(np.array([1.0, 1.05, 1.09, 2.0, 2.1]), 0.1)
    assert len(set(labels)) == 2


def test_analyze_without_ids_or_status_reports_outliers_by_row(tmp_path):
    df = synthetic_isoflop(noise=0.002, seed=0).rename(columns={"budget": "compute_budget"})
    df.loc[3, "loss"] *= 3.0
    res = ff.analyze(df[["compute_budget", "N", "D", "loss"]], n_bootstrap=0, output_dir=tmp_path)
    assert "row 3" in res.summary() and "row 3" in res.chinchilla_table()
    saved = json.loads(res.save().read_text())
    assert saved["outliers"][0]["experiment_id"] == "row 3"


def test_analyze_bad_inputs_name_the_argument():
    df = synthetic_isoflop()
    with pytest.raises(ValueError, match=r"n_col='N': column not found.*any two of N, D, C"):
        ff.analyze(df[["D", "loss"]])
    with pytest.raises(ValueError, match=r"best_of='lr': column not found"):
        ff.analyze(df, best_of="lr")
    with pytest.raises(ValueError, match=r"budget_tolerance: expected a relative tolerance in \(0, 1\)"):
        ff.analyze(df, budget_tolerance=2)
    with pytest.raises(ValueError, match=r"n_bootstrap: expected a non-negative int"):
        ff.analyze(df, n_bootstrap=-1)


def test_lbfgs_and_vpnls_minimise_one_objective_and_agree_on_chinchilla():
    d = ff.load_chinchilla(drop_highest_loss=5)
    a, b = ff.fit_parametric(d), ff.fit_parametric(d, method="vpnls")
    for k in ("E", "alpha", "beta", "A", "B"):
        assert float(f"{getattr(a, k):.3g}") == float(f"{getattr(b, k):.3g}"), k
    assert b.objective == pytest.approx(b.huber_objective, rel=1e-12)
    assert b.huber_objective == pytest.approx(a.huber_objective, rel=1e-6)
    assert math.isfinite(b.objective)
