"""Approach 3: the parametric L(N, D) fit, on Chinchilla's data and on known laws."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import approx_fprime, minimize_scalar

from flops_fit.analysis.data_io import load_chinchilla, load_fit_data, synthetic_isoflop
from flops_fit.analysis.parametric import (
    ParametricFit,
    chinchilla_grid,
    fit_parametric,
    grid_objectives,
    huber_log_objective,
    solve,
)

TRUE = {"E": 2.0, "A": 300.0, "B": 800.0, "alpha": 0.30, "beta": 0.40}
TRUE_a = 0.40 / 0.70


@pytest.fixture(scope="module")
def chin240() -> pd.DataFrame:
    return load_chinchilla(drop_highest_loss=5)


@pytest.fixture(scope="module")
def fit240(chin240: pd.DataFrame) -> ParametricFit:
    return fit_parametric(chin240)


# ---------------------------------------------------------------- Chinchilla (Epoch AI re-fit)


def test_chinchilla_matches_epoch_refit(chin240, fit240):
    assert len(chin240) == 240
    f = fit240
    assert f.converged, f.message
    assert f.n_points == 240 and f.excluded == ()
    assert abs(f.alpha - 0.348) <= 0.005
    assert abs(f.beta - 0.366) <= 0.005
    assert abs(f.E - 1.817) <= 0.01
    assert abs(f.A / 482.0 - 1) <= 0.05
    assert abs(f.B / 2085.4 - 1) <= 0.10
    # the known grid-L-BFGS optimum (A~478, B~2144) to tighter tolerance
    assert f.A == pytest.approx(478, rel=0.01) and f.B == pytest.approx(2144, rel=0.01)
    assert f.a == pytest.approx(f.beta / (f.alpha + f.beta)) and f.a + f.b == pytest.approx(1.0)


def test_chinchilla_all_245_flags_the_misread_points():
    full = load_chinchilla()
    top5 = set(full["loss"].nlargest(5).index)
    fit = fit_parametric(full)
    excluded = {p.index for p in fit.excluded}
    assert len(excluded) == 4 and excluded <= top5
    assert all("robust residual" in p.reason for p in fit.excluded)
    assert fit.n_points == 241
    kept_all = fit_parametric(full, exclude_outliers=False)
    assert kept_all.n_points == 245 and kept_all.excluded == ()
    # those few points drag beta up and B by ~6x (the README's warning)
    assert kept_all.beta > 0.42 and kept_all.B > 8000
    assert abs(fit.beta - 0.366) < 0.01


def test_grid_is_the_chinchilla_epoch_grid():
    g = chinchilla_grid()
    assert g.shape == (4500, 5)
    assert np.unique(g, axis=0).shape[0] == 4500
    assert sorted(set(g[:, 0])) == [0, 5, 10, 15, 20, 25]
    assert sorted(set(g[:, 2])) == [-1, -0.5, 0, 0.5, 1]
    assert sorted(set(g[:, 3])) == [0, 0.5, 1, 1.5, 2]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["chinchilla", "synthetic-1pct"])
def test_best_k_starts_match_all_4500_starts(which):
    df = load_chinchilla(drop_highest_loss=5) if which == "chinchilla" else synthetic_isoflop(noise=0.01, seed=3)
    fit = fit_parametric(df, outlier_threshold=None)
    lN, lD, lL = (np.log(df[c].to_numpy(float)) for c in ("N", "D", "loss"))
    every = solve(lN, lD, lL, method="lbfgs", n_best=4500)
    assert fit.objective <= every.objective * (1 + 1e-9)


def test_best_k_starts_match_many_more_starts(chin240, fit240):
    d = load_fit_data(chin240).frame
    lN, lD, lL = np.log(d["N"].to_numpy()), np.log(d["D"].to_numpy()), np.log(d["loss"].to_numpy())
    wide = solve(lN, lD, lL, method="lbfgs", n_best=150)
    assert fit240.objective <= wide.objective * (1 + 1e-9)
    assert fit240.alpha == pytest.approx(wide.theta[3], abs=1e-5)


# ---------------------------------------------------------------- objective and gradient


def test_analytic_gradient_matches_finite_differences(chin240):
    d = load_fit_data(chin240).frame
    lN, lD, lL = np.log(d["N"].to_numpy()), np.log(d["D"].to_numpy()), np.log(d["loss"].to_numpy())
    rng = np.random.default_rng(0)
    thetas = [np.array([6.17, 7.67, 0.597, 0.347, 0.367])] + [
        np.array([rng.uniform(0, 10), rng.uniform(0, 10), rng.uniform(-1, 1), rng.uniform(0.1, 1), rng.uniform(0.1, 1)])
        for _ in range(4)
    ]
    for th in thetas:
        _, g = huber_log_objective(th, lN, lD, lL, 1e-3)
        num = approx_fprime(th, lambda t: huber_log_objective(t, lN, lD, lL, 1e-3)[0], 1e-7)
        assert np.allclose(g, num, rtol=1e-4, atol=1e-7 * max(1.0, np.abs(g).max())), (th, g, num)
    # the vectorised grid scorer agrees with the scalar objective
    grid = chinchilla_grid()[::97]
    vec = grid_objectives(grid, lN, lD, lL, 1e-3)
    scalar = np.array([huber_log_objective(t, lN, lD, lL, 1e-3)[0] for t in grid])
    assert np.allclose(vec, scalar, rtol=1e-12)


def test_huber_is_summed_not_averaged(chin240, fit240):
    doubled = pd.concat([chin240, chin240], ignore_index=True)
    f2 = fit_parametric(doubled)
    assert f2.objective == pytest.approx(2 * fit240.objective, rel=1e-6)
    assert f2.alpha == pytest.approx(fit240.alpha, abs=1e-5)


# ---------------------------------------------------------------- known laws


@pytest.mark.parametrize("method", ["lbfgs", "vpnls"])
def test_noise_free_known_law_recovered_off_centre(method):
    df = synthetic_isoflop()  # alpha != beta, sweeps centred 10-20x below the optimum
    f = fit_parametric(df, method=method)
    assert f.converged, f.message
    assert abs(f.alpha - 0.30) < 1e-3
    assert abs(f.beta - 0.40) < 1e-3
    assert abs(f.E - 2.0) < 1e-3
    assert f.A == pytest.approx(300, rel=1e-2) and f.B == pytest.approx(800, rel=1e-2)
    assert f.excluded == ()


@pytest.mark.parametrize("method", ["lbfgs", "vpnls"])
def test_small_noise_gives_a_within_001(method):
    errors = [abs(fit_parametric(synthetic_isoflop(noise=0.002, seed=s), method=method).a - TRUE_a) for s in range(4)]
    assert max(errors) < 0.01, errors


def test_optimal_allocation_closed_form_is_the_isoflop_minimum(fit240):
    f = fit240
    for C in (1e19, 5.76e23):
        N, D = f.optimal_allocation(C)
        assert 6 * N * D == pytest.approx(C, rel=1e-12)
        res = minimize_scalar(lambda x, C=C: f.predict_loss(np.exp(x), C / (6 * np.exp(x))), bounds=(10, 35),
                              method="bounded", options={"xatol": 1e-9})
        assert N == pytest.approx(np.exp(res.x), rel=1e-4)
        assert f.optimal_loss(C) == pytest.approx(res.fun, rel=1e-9)
    Ns, Ds = f.optimal_allocation(np.array([1e20, 1e22]))
    assert np.allclose(6 * Ns * Ds, [1e20, 1e22], rtol=1e-12)
    assert Ns[1] / Ns[0] == pytest.approx(100 ** f.a, rel=1e-12)
    with pytest.raises(ValueError, match="C: compute budgets must be positive"):
        f.optimal_allocation(-1.0)


def test_json_round_trip(chin240):
    f = fit_parametric(chin240, exclude=[chin240.index[0]])
    d = json.loads(json.dumps(f.to_dict()))
    assert d["a"] == pytest.approx(f.a) and d["G"] == pytest.approx(f.G)
    back = ParametricFit.from_dict(d)
    assert back == f
    assert back.excluded[0].reason == "excluded by caller"
    with pytest.raises(ValueError, match=r"required field\(s\) \['beta'\] missing"):
        ParametricFit.from_dict({k: v for k, v in d.items() if k != "beta"})


def test_warm_start_from_init(chin240, fit240):
    again = fit_parametric(chin240, init=fit240)
    assert again.n_starts == 1
    assert again.objective == pytest.approx(fit240.objective, rel=1e-9)
    near = fit_parametric(chin240, init={"E": 1.8, "A": 450, "B": 2000, "alpha": 0.33, "beta": 0.35})
    # the summed Huber surface is very flat along the (B, beta) ridge: same objective, alpha to ~1e-3
    assert near.objective == pytest.approx(fit240.objective, rel=1e-5)
    assert near.alpha == pytest.approx(fit240.alpha, abs=1e-3)
    # a single start elsewhere can stop in another local minimum: why the grid exists
    other = fit_parametric(chin240, init=[{"E": 2.0, "A": 400, "B": 1500, "alpha": 0.3, "beta": 0.3}])
    assert other.objective > fit240.objective * 1.001


# ---------------------------------------------------------------- inputs


def test_flops_only_input_derives_tokens(chin240, fit240, tmp_path):
    only_c = chin240[["N", "C", "loss"]].rename(columns={"N": "params", "C": "flops", "loss": "val"})
    f = fit_parametric(only_c, n_col="params", loss_col="val", c_col="flops")
    assert f.alpha == pytest.approx(fit240.alpha, abs=1e-6)
    path = tmp_path / "chin.csv"
    only_c.to_csv(path, index=False)
    assert fit_parametric(path, n_col="params", loss_col="val", c_col="flops").B == pytest.approx(fit240.B, rel=1e-5)


def test_results_json_records_are_understood(tmp_path):
    """The layout of a sweep's results.json: {"kind", "schema", "records": [...]}, nested details."""
    df = synthetic_isoflop()
    records = [
        {"experiment_id": f"e{i}", "compute_budget": r.budget, "num_params": r.N, "num_tokens": r.D,
         "final_loss": r.loss, "status": "completed", "flops": 6 * r.N * r.D, "details": {"initial_loss": 11.0}}
        for i, r in enumerate(df.itertuples())
    ]
    records.append({"experiment_id": "bad", "compute_budget": 1e17, "num_params": 1e7, "num_tokens": 1e9,
                    "final_loss": None, "status": "diverged", "flops": 6e16, "details": {}})
    records.append({"experiment_id": "flat", "compute_budget": 1e17, "num_params": 2e7, "num_tokens": 5e8,
                    "final_loss": 11.2, "status": "completed", "flops": 6e16, "details": {"initial_loss": 11.0}})
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"kind": "flops-fit/results", "schema": 1, "records": records}))
    fd = load_fit_data(path)
    assert fd.columns == {"N": "num_params", "D": "num_tokens", "C": "flops", "loss": "final_loss",
                          "budget": "compute_budget", "status": "status", "initial_loss": "details.initial_loss"}
    f = fit_parametric(path)
    assert abs(f.alpha - 0.30) < 1e-3
    assert [(p.index, p.reason) for p in f.excluded] == [
        ("bad", "status=diverged; non-finite loss"),
        ("flat", "loss 11.2 not below initial loss 11"),
    ]


def _df(**cols):
    base = synthetic_isoflop()
    return base.assign(**cols)


@pytest.mark.parametrize(
    "data, kwargs, exc, message",
    [
        ([1, 2, 3], {}, TypeError, r"data: expected a pandas DataFrame or a path .* found list"),
        (pd.DataFrame({"N": [1.0], "loss": [1.0]}), {}, ValueError, r"d_col='D': column not found .* no FLOPs column"),
        (None, {"n_col": "params"}, ValueError, r"n_col='params': column not found .* available columns: \['N'"),
        (None, {"loss_col": "val_loss"}, ValueError, r"loss_col='val_loss': column not found"),
        ("N0", {}, ValueError, r"n_col='N': parameter counts N must be positive and finite; found 0.0 at row 3"),
        ("Dinf", {}, ValueError, r"d_col='D': token counts D must be positive and finite; found inf at row 0"),
        ("loss0", {}, ValueError, r"loss_col='loss': losses must be positive .* found -1.0 at row 2"),
        ("lossnan", {"exclude_outliers": False}, ValueError, r"non-finite loss nan at row 5 .* exclude_outliers=True"),
        (None, {"method": "adam"}, ValueError, r"method: expected one of \('lbfgs', 'vpnls'\), found 'adam'"),
        (None, {"huber_delta": 0.0}, ValueError, r"huber_delta: expected a positive finite number, found 0.0"),
        (None, {"exclude": [999]}, ValueError, r"exclude: row label\(s\) \[999\] not found"),
        ("few", {}, ValueError, r"needs at least 5 points; found 4"),
        ("sameN", {}, ValueError, r"column N \(parameter counts\) needs at least 2 distinct values"),
        (None, {"init": "warm"}, TypeError, r"init: expected a ParametricFit, a mapping .* found str"),
        (None, {"init": {"E": 1.0}}, ValueError, r"init: mapping is missing key\(s\) \['A', 'B', 'alpha', 'beta'\]"),
    ],
)
def test_bad_inputs_have_clear_messages(data, kwargs, exc, message):
    base = synthetic_isoflop()
    if data is None:
        data = base
    elif isinstance(data, str):
        d = base.copy()
        if data == "N0":
            d.loc[3, "N"] = 0.0
        elif data == "Dinf":
            d.loc[0, "D"] = np.inf
        elif data == "loss0":
            d.loc[2, "loss"] = -1.0
        elif data == "lossnan":
            d.loc[5, "loss"] = np.nan
        elif data == "few":
            d = d.iloc[:4]
        elif data == "sameN":
            d = d.assign(N=1e8)
        data = d
    with pytest.raises(exc, match=message):
        fit_parametric(data, **kwargs)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="data: file not found: .*nope.csv"):
        fit_parametric(tmp_path / "nope.csv")


def test_the_batched_positive_definite_test_agrees_with_the_eigenvalues():
    from flops_fit.analysis.parametric import _positive_definite

    rng = np.random.default_rng(0)
    M = rng.normal(size=(3000, 5, 5))
    M = M + M.transpose(0, 2, 1)  # symmetric, mostly indefinite
    M[:1500] = np.einsum("bij,bkj->bik", M[:1500], M[:1500]) + 1e-9 * np.eye(5)  # positive definite
    M[1500:1600] = np.einsum("bij,bkj->bik", M[1500:1600, :, :4], M[1500:1600, :, :4])  # rank 4: semi-definite
    low = np.linalg.eigvalsh(M)[:, 0]
    pd_ = _positive_definite(M)
    clear = np.abs(low) > 1e-8  # the sign of an eigenvalue at rounding level is not for either to decide
    assert np.array_equal(pd_[clear], low[clear] > 0)
    assert pd_[:1500].all() and not pd_[1600:][low[1600:] < -1e-8].any()
    M[7, 2, 2] = np.nan
    assert not _positive_definite(M)[7]
