"""A sweep planned by measured FLOPs: D = C / (c N^b) with b != 1 (a cost that is not 6·N). The analysis must
find the real compute-optimal allocation under that cost — checked against the vertex the IsoFLOP parabolas
measure from the losses alone, and against the closed form derived independently here by brute force."""

import math

import numpy as np
import pandas as pd
import pytest

from flops_fit.analysis import analyze
from flops_fit.flops import SIX_ND, CostModel, fit_cost_model

E, A, B, ALPHA, BETA = 1.7, 400.0, 410.0, 0.34, 0.28
C_COST, B_COST = 90.0, 1.15  # FLOPs per data unit = 90 · N^1.15 (e.g. convolutions over many positions)


def law(n, d):
    return E + A * n ** -ALPHA + B * d ** -BETA


def brute_force_optimum(c: float) -> float:
    """argmin_N L(N, C / (90 N^1.15)) on a fine log grid (no closed form involved)."""
    n = np.exp(np.linspace(math.log(1e2), math.log(1e12), 400_001))
    return float(n[np.argmin(law(n, c / (C_COST * n ** B_COST)))])


def measured_sweep(budgets=(1e16, 1e17, 1e18, 1e19), sizes=9) -> pd.DataFrame:
    rows = []
    for c in budgets:
        centre = brute_force_optimum(c)
        for n in np.geomspace(centre / 8, centre * 8, sizes):
            d = c / (C_COST * n ** B_COST)
            rows.append({"compute_budget": c, "N": n, "D": d, "loss": law(n, d)})
    return pd.DataFrame(rows)


def test_the_cost_model_is_fitted_from_the_planned_runs():
    df = measured_sweep()
    cost = fit_cost_model(df["N"], df["D"], df["compute_budget"])
    assert cost.c == pytest.approx(C_COST, rel=1e-9) and cost.b == pytest.approx(B_COST, rel=1e-9)
    assert cost.max_rel_error < 1e-9 and cost.accounting == "measured"
    six = fit_cost_model(df["N"], df["compute_budget"] / (6 * df["N"]), df["compute_budget"])
    assert six.c == pytest.approx(6.0) and six.b == pytest.approx(1.0)
    with pytest.raises(ValueError, match="flops_accounting: a measured cost model needs runs at 2 or more sizes"):
        fit_cost_model([10.0, 10.0], [1.0, 2.0], [60.0, 120.0])


def test_measured_accounting_puts_the_optimum_where_the_real_cost_does():
    df = measured_sweep()
    an = analyze(df, n_bootstrap=0, flops_accounting="measured")
    assert an.cost.b == pytest.approx(B_COST, rel=1e-9)
    a_theory = BETA / (ALPHA + B_COST * BETA)
    for c in (1e17, 1e18):
        truth = brute_force_optimum(c)
        n3, d3 = an.parametric.optimal_allocation(c, an.cost)
        assert n3 == pytest.approx(truth, rel=2e-3)
        assert C_COST * n3 ** B_COST * d3 == pytest.approx(c, rel=1e-9)  # spends exactly C under the real cost
        vertex = next(o for o in an.isoflop.optima if o.compute_budget == c)
        assert vertex.n_opt == pytest.approx(truth, rel=0.05)  # the parabolas see the same optimum in the losses
        assert C_COST * vertex.n_opt ** B_COST * vertex.d_opt == pytest.approx(c, rel=1e-9)
    from flops_fit.analysis import approach_estimates

    p3 = approach_estimates(an, "approach_3", 1e20)
    assert p3["exponent_a"] == pytest.approx(a_theory, rel=1e-3)
    assert an.isoflop.n_opt_fit.exponent_a == pytest.approx(a_theory, abs=0.01)
    p2 = approach_estimates(an, "approach_2", 1e20)
    assert C_COST * p2["optimal_params"] ** B_COST * p2["optimal_tokens"] == pytest.approx(1e20, rel=1e-9)
    assert an.isoflop.d_opt_fit.exponent_a == pytest.approx(1 - an.isoflop.n_opt_fit.exponent_a * B_COST)

    # the same runs read as 6·N·D give an answer that spends the wrong compute: the accounting matters
    wrong = analyze(df, n_bootstrap=0)
    n6, d6 = wrong.parametric.optimal_allocation(1e18)
    assert abs(math.log(C_COST * n6 ** B_COST * d6 / 1e18)) > math.log(2)


def test_the_six_nd_closed_form_is_the_cost_models_special_case():
    n_a, d_a = CostModel(6.0, 1.0, "measured").parametric_optimum(1e21, E, A, B, ALPHA, BETA)
    g = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
    assert n_a == pytest.approx(g * (1e21 / 6) ** (BETA / (ALPHA + BETA)), rel=1e-12)
    assert 6 * n_a * d_a == pytest.approx(1e21, rel=1e-12)
    assert SIX_ND.describe() == "C = 6·N·D"


def test_measured_accounting_needs_budgets_and_a_known_name():
    df = measured_sweep()
    with pytest.raises(ValueError, match="flops_accounting: expected '6ND' or 'measured', found 'exact'"):
        analyze(df, n_bootstrap=0, flops_accounting="exact")
    with pytest.raises(ValueError, match="flops_accounting: 'measured' needs each run's compute budget"):
        analyze(df.drop(columns="compute_budget"), n_bootstrap=0, flops_accounting="measured")
