"""design="branches", extra_branches=k: k more cooldown branches in each gap between two budgets of a size.

They cost only their cooldown, sit on no IsoFLOP budget, and so must stay out of Approach 2, be resampled
as a stratum of their own by Approach 3's bootstrap, and be kept out of the back-test of any budget they do
not lie below; a plan that grows (adaptive) or resumes keeps their ids and never trains one twice."""

from __future__ import annotations

import json
import re
import math

import numpy as np
import pandas as pd
import pytest

import flops_fit as ff
from flops_fit.analysis import analyze, budget_strata
from flops_fit.analysis.evidence import backtest

LAW = ff.MockLaw(E=1.7, A=400.0, B=2000.0, alpha=0.34, beta=0.40, noise=0.01)
MOCK = dict(mode="mock", mock_law=LAW, compute_budgets=[1e17, 3e17, 1e18, 3e18, 1e19],
            model_kwargs={"n_layers": 4}, num_model_sizes=5, span_decades=0.5, size_multiple=16, progress=False)


def test_extra_points_lie_between_a_sizes_budgets_and_cost_only_their_cooldown(tmp_path):
    plan = ff.find_optimal("gpt", output_dir=tmp_path / "p", design="branches", extra_branches=2, train=False,
                           **MOCK)
    base = ff.find_optimal("gpt", output_dir=tmp_path / "b", design="branches", train=False, **MOCK)
    extra = [e for e in plan.experiments if e.extra]
    on = [e for e in plan.experiments if not e.extra]
    assert [e.experiment_id for e in on] == [e.experiment_id for e in base.experiments]
    by_size: dict[int, list[float]] = {}
    for e in on:
        by_size.setdefault(e.size_value, []).append(e.num_tokens)
    gaps = sum(len(d) - 1 for d in by_size.values())
    assert gaps > 0 and len(extra) == 2 * gaps
    assert len({e.experiment_id for e in plan.experiments}) == len(plan.experiments)
    for e in extra:
        ds = sorted(by_size[e.size_value])
        lo = max(d for d in ds if d < e.num_tokens)
        hi = min(d for d in ds if d > e.num_tokens)
        t = math.log(e.num_tokens / lo) / math.log(hi / lo)
        assert min(abs(t - 1 / 3), abs(t - 2 / 3)) < 1e-9  # log-even thirds of the gap
        assert e.compute_budget == pytest.approx(6 * e.num_params * e.num_tokens, rel=1e-12)
        assert e.compute_budget not in plan.budgets
        b = plan.design["branches"][e.experiment_id]
        assert b["extra"] and b["flops"] == pytest.approx(0.2 * e.flops)  # the cooldown alone
    # the trunks are exactly those without extras: every extra forks below its size's longest point
    assert {k: t["units"] for k, t in plan.design["trunks"].items()} == \
        {k: t["units"] for k, t in base.design["trunks"].items()}
    fl, fb = plan.design["flops"], base.design["flops"]
    assert fl["total"] - fb["total"] == pytest.approx(sum(0.2 * e.flops for e in extra))
    s = plan.summary()
    assert f"{len(extra)} of them extra branches between budgets (Approach 3 only)" in s
    assert s.count("\n extra ") + s.count("\nextra ") == len(extra)
    assert json.loads((tmp_path / "p" / "sweep.json").read_text())["run_settings"]["extra_branches"] == 2


def test_bad_extra_branches_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"extra_branches: .*need design='branches', found design='separate'"):
        ff.find_optimal("gpt", output_dir=tmp_path, extra_branches=1, train=False, **MOCK)
    with pytest.raises((TypeError, ValueError), match=r"extra_branches: expected .*found -1"):
        ff.find_optimal("gpt", output_dir=tmp_path, design="branches", extra_branches=-1, train=False, **MOCK)
    with pytest.raises((TypeError, ValueError), match=r"extra_branches: expected .*found 1.5"):
        ff.find_optimal("gpt", output_dir=tmp_path, design="branches", extra_branches=1.5, train=False, **MOCK)


def test_a_sweep_with_extras_fits_them_by_approach_3_only_and_resumes_without_retraining(tmp_path):
    out = tmp_path / "x"
    r = ff.find_optimal("gpt", output_dir=out, design="branches", extra_branches=2, n_bootstrap=100, **MOCK)
    plain = ff.find_optimal("gpt", output_dir=tmp_path / "p", design="branches", n_bootstrap=100, **MOCK)
    extra = {e.experiment_id for e in r.plan.experiments if e.extra}
    assert extra and {x.experiment_id for x in r.records} >= extra
    a = r.analysis
    # Approach 2: the same budgets, vertices and law as without extras (the points are the same draws)
    assert [o.compute_budget for o in a.isoflop.optima] == [o.compute_budget for o in plain.analysis.isoflop.optima]
    assert a.isoflop.n_opt_fit.exponent_a == plain.analysis.isoflop.n_opt_fit.exponent_a
    assert set(a.table.loc[a.table["extra"], "experiment_id"]) == extra  # the analysis knows which they are
    assert a.parametric.n_points == len(plain.records) + len(extra) - len(a.parametric.excluded)
    assert "Approach 3 (parametric L = E + A/N^α + B/D^β, " + f"{a.parametric.n_points} runs)" in r.summary()
    assert all(x.details.get("extra") for x in r.records if x.experiment_id in extra)
    assert not any(x.details.get("extra") for x in r.records if x.experiment_id not in extra)
    assert f"note: {len(extra)} run(s) on no IsoFLOP budget (extra branches) are fitted by Approach 3 only" in r.summary()
    assert ff.precision_forecast(r, 3e22).runs_per_budget == ff.precision_forecast(plain, 3e22).runs_per_budget == 5
    # resumed: nothing trains again, the answer is the same
    stamps = {x.experiment_id: x.timestamp for x in r.records}
    again = ff.find_optimal("gpt", output_dir=out, design="branches", extra_branches=2, n_bootstrap=100, **MOCK)
    assert {x.experiment_id: x.timestamp for x in again.records} == stamps
    assert again.predict(3e22) == r.predict(3e22)
    # a record that claims to be (or not to be) an extra point against the plan is refused
    data = json.loads((out / "results.json").read_text())
    rec = next(x for x in data["records"] if x["experiment_id"] not in extra)
    rec["details"]["extra"] = True
    (out / "results.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="record '" + re.escape(rec['experiment_id']) + "': details.extra is True, but the plan"):
        ff.Result.load(out)


def test_an_adaptive_sweep_keeps_its_extras_ids_and_decides_by_budget_points_only(tmp_path):
    kw = dict(MOCK, n_bootstrap=50)
    r = ff.find_optimal("gpt", output_dir=tmp_path / "a", design="branches", extra_branches=1, adaptive=True, **kw)
    extra = [e for e in r.plan.experiments if e.extra]
    assert extra and set(r.plan.design["branches"]) == {e.experiment_id for e in r.plan.experiments}
    for rnd in r.plan.adaptive["rounds"]:
        assert "extra" not in rnd["reason"] and not set(rnd.get("experiments", [])) & {e.experiment_id for e in extra}
        if "bracketed vertices" in rnd["reason"]:  # never more vertices than budgets trained before it
            k = int(rnd["reason"].split(" through ")[1].split()[0])
            assert k <= sorted(r.plan.budgets).index(rnd["compute_budget"])
    # the same extras as a fixed plan over the same budget points would get
    from flops_fit.design import extra_points
    assert sorted(e.experiment_id for e in extra_points(r.plan, 1)) == sorted(e.experiment_id for e in extra)
    stamps = {x.experiment_id: x.timestamp for x in r.records}
    again = ff.find_optimal("gpt", output_dir=tmp_path / "a", design="branches", extra_branches=1, adaptive=True,
                            **kw)
    assert {x.experiment_id: x.timestamp for x in again.records} == stamps


def _table(budgets=(1e17, 3e17, 1e18, 3e18, 1e19), sizes=5, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        centre = LAW.optimal_params(c)
        for n in centre * np.logspace(-0.5, 0.5, sizes):
            d = c / (6 * n)
            rows.append(dict(compute_budget=c, N=n, D=d, loss=LAW.loss(n, d) * math.exp(0.01 * rng.standard_normal())))
    return pd.DataFrame(rows)


def _extras(table, k=2, seed=1):
    """Extra points of every size at geometric steps between two of its budgets, as the design places them."""
    rng = np.random.default_rng(seed)
    rows = []
    for _, r in table.iterrows():
        for j in range(1, k + 1):
            d = r.D * 3 ** (j / (k + 1))
            rows.append(dict(compute_budget=6 * r.N * d, N=r.N, D=d, extra=True,
                             loss=LAW.loss(r.N, d) * math.exp(0.01 * rng.standard_normal())))
    return pd.DataFrame(rows)


def test_strata_pool_every_run_off_an_isoflop_curve():
    budget = np.array([1, 1, 1, 2, 2, 3, 4, 4, 4], float)
    n = np.array([1, 2, 3, 1, 2, 7, 1, 1, 2], float)  # budget 4 has 3 runs but only 2 sizes
    assert budget_strata(budget, n).tolist() == [1, 1, 1, -1, -1, -1, -1, -1, -1]


def test_extras_are_one_stratum_of_their_own_in_approach_3s_bootstrap():
    base = _table()
    both = pd.concat([base, _extras(base)], ignore_index=True)
    both["extra"] = both["extra"].fillna(False).astype(bool)
    a = analyze(both, n_bootstrap=100, seed=0)
    b = analyze(base, n_bootstrap=100, seed=0)
    assert [o.compute_budget for o in a.isoflop.optima] == [o.compute_budget for o in b.isoflop.optima]
    assert a.parametric.n_points == len(both) - len(a.parametric.excluded)
    # unmarked, the extras group by compute (every size's extra in one gap shares it: C_lo^(2/3) C_hi^(1/3)),
    # so they would form IsoFLOP curves of their own: marked, Approach 2 has only the 5 budgets
    unmarked = analyze(both.drop(columns="extra"), n_bootstrap=0)
    assert len(unmarked.isoflop.optima) > 5 and len(a.isoflop.optima) == 5
    # the strata: each budget within itself, every extra in one pool, so a resample redraws which extras it holds
    kept = a.table[~a.table["outlier"]]
    labels = budget_strata(np.where(kept["extra"], -1.0, kept["compute_budget"]), kept["N"].to_numpy())
    assert set(labels[kept["extra"].to_numpy()]) == {-1.0} and -1.0 not in set(labels[~kept["extra"].to_numpy()])
    idx = next(ff.analysis.bootstrap_indices(labels, 1, seed=0))
    pool = np.flatnonzero(labels == -1)
    assert set(idx[pool]) <= set(pool) and len(set(idx[pool])) < len(pool)  # drawn with replacement in the pool


def test_back_tests_never_see_compute_at_or_above_the_held_out_budget():
    base = _table()
    above = _extras(base[base.compute_budget == 3e18], k=1)  # between 3e18 and 1e19 (3 of 5 sizes reach 1e19)
    above["loss"] *= 1.05  # off the law: whichever back-test trains on them predicts differently
    both = pd.concat([base, above], ignore_index=True)
    both["extra"] = both["extra"].fillna(False).astype(bool)
    a, b = analyze(both, n_bootstrap=0), analyze(base, n_bootstrap=0)

    def cases(an, held):
        return {(c.approach, c.compute): c.n_pred for c in an.evidence.backtest if c.held_out == held}

    two, one = (3e18, 1e19), (1e19,)
    assert cases(a, two) and cases(a, two) == pytest.approx(cases(b, two), rel=1e-6)  # not seen: compute >= 3e18
    assert cases(a, one)[("approach_2", 1e19)] == cases(b, one)[("approach_2", 1e19)]  # never Approach 2's data
    assert cases(a, one)[("approach_3", 1e19)] != pytest.approx(cases(b, one)[("approach_3", 1e19)], rel=1e-3)


def test_a_users_table_marks_its_extra_runs_and_bad_marks_are_named(tmp_path):
    base = _table()
    both = pd.concat([base, _extras(base, k=1)], ignore_index=True)
    both["extra"] = both["extra"].map({True: "true"}).fillna("false")
    res = ff.analyze(both, n_bootstrap=0)
    assert len(res.analysis.isoflop.optima) == 5 and res.analysis.parametric.n_points > len(base) - 3
    both.loc[3, "extra"] = "maybe"
    with pytest.raises(ValueError, match=r"extra: expected true or false .*found 'maybe' at row 3"):
        ff.analyze(both, n_bootstrap=0)
