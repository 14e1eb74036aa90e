"""Bootstrap intervals: stratified resampling, warm-started refits, honest coverage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flops_fit.analysis.bootstrap import (
    TARGET_NAMES,
    bootstrap_indices,
    bootstrap_parametric,
)
from flops_fit.analysis.data_io import load_chinchilla, synthetic_isoflop
from flops_fit.analysis.parametric import PARAM_NAMES, fit_parametric

EPOCH_95 = {"alpha": (0.317, 0.373), "beta": (0.331, 0.415), "E": (1.769, 1.871)}
TRUE_a = 0.40 / 0.70


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Length of the intersection over the length of the shorter interval."""
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0])) / min(a[1] - a[0], b[1] - b[0])


# ---------------------------------------------------------------- resampling


def test_bootstrap_indices_stratified_and_seeded():
    groups = np.array(["x"] * 3 + ["y"] * 5 + ["z"] * 2)
    first = list(bootstrap_indices(groups, 50, seed=1))
    again = list(bootstrap_indices(groups, 50, seed=1))
    other = list(bootstrap_indices(groups, 50, seed=2))
    assert len(first) == 50 and all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    for idx in first:
        assert idx.shape == (10,)
        assert np.array_equal(groups[idx], groups)  # row i is drawn from row i's group
    # with replacement: repeats happen, and every row is drawn somewhere
    assert any(len(set(idx)) < 10 for idx in first)
    assert set(np.concatenate(first)) == set(range(10))
    plain = list(bootstrap_indices(7, 3, seed=0))
    assert all(i.shape == (7,) and i.min() >= 0 and i.max() < 7 for i in plain)


@pytest.mark.parametrize(
    "groups, n, message",
    [
        (0, 5, r"groups: expected a number of rows >= 1, found 0"),
        (np.zeros((2, 2)), 5, r"groups: expected an int or a non-empty 1-D array .* shape \(2, 2\)"),
        (5, 0, r"n_resamples: expected an int >= 1, found 0"),
    ],
)
def test_bootstrap_indices_bad_arguments(groups, n, message):
    with pytest.raises(ValueError, match=message):
        next(bootstrap_indices(groups, n, seed=0))


# ---------------------------------------------------------------- Chinchilla


@pytest.fixture(scope="module")
def chin_boot():
    return bootstrap_parametric(
        load_chinchilla(drop_highest_loss=5), n_resamples=200, seed=0, targets=[1e21, 5.76e23]
    )


def test_chinchilla_intervals_overlap_epoch(chin_boot):
    bs = chin_boot
    assert bs.n_failed == 0 and bs.samples.shape == (200, len(PARAM_NAMES))
    assert bs.stratify_col is None  # Epoch's data has no planned budgets
    for name, theirs in EPOCH_95.items():
        ours = bs.interval(name)
        assert ours[0] < getattr(bs.fit, name) < ours[1]
        # 200 resamples already give nearly Epoch's 4,000-resample intervals
        assert _overlap(ours, theirs) > 0.75, (name, ours, theirs)
        assert 0.5 < (ours[1] - ours[0]) / (theirs[1] - theirs[0]) < 1.6, (name, ours, theirs)
    lo90, hi90 = bs.interval("alpha", 0.90)
    lo95, hi95 = bs.interval("alpha")
    assert lo95 <= lo90 < hi90 <= hi95


def test_target_intervals_are_consistent(chin_boot):
    bs = chin_boot
    assert bs.target_samples.shape == (200, 2, len(TARGET_NAMES))
    N, D = bs.target_samples[:, 1, 0], bs.target_samples[:, 1, 1]
    assert np.allclose(6 * N * D, 5.76e23, rtol=1e-12)
    assert np.allclose(bs.target_samples[:, 1, 3], D / N)
    N_est, _ = bs.fit.optimal_allocation(5.76e23)
    lo, hi = bs.target_interval(5.76e23, "N_opt")
    assert lo < N_est < hi and hi / lo > 1.2  # a real interval, not a point
    table = bs.target_intervals()
    assert len(table) == 8 and set(table["quantity"]) == set(TARGET_NAMES)
    row = table[(table.C == 5.76e23) & (table.quantity == "N_opt")].iloc[0]
    assert row.estimate == pytest.approx(N_est) and (row.lower, row.upper) == (lo, hi)
    d = json.loads(json.dumps(bs.to_dict()))
    assert d["intervals"]["alpha"] == list(bs.interval("alpha"))
    assert "samples" not in d and len(bs.to_dict(include_samples=True)["samples"]) == 200
    assert list(bs.samples_frame().columns) == list(PARAM_NAMES)


def test_interval_arguments_are_checked(chin_boot):
    with pytest.raises(ValueError, match=r"name: expected one of \('E', 'A'.* found 'gamma'"):
        chin_boot.interval("gamma")
    with pytest.raises(ValueError, match=r"confidence: expected a number in \(0, 1\), found 95"):
        chin_boot.interval("E", 95)
    with pytest.raises(ValueError, match=r"C: 1e\+22 is not one of the target budgets"):
        chin_boot.target_interval(1e22, "N_opt")


# ---------------------------------------------------------------- synthetic, determinism


def test_parallel_equals_serial_and_budgets_stratify():
    df = synthetic_isoflop(noise=0.01, seed=5)
    serial = bootstrap_parametric(df, n_resamples=24, seed=3, n_jobs=1, targets=[1e22])
    parallel = bootstrap_parametric(df, n_resamples=24, seed=3, n_jobs=2, targets=[1e22])
    assert serial.stratify_col == "budget"
    assert np.array_equal(serial.samples, parallel.samples)
    unstrat = bootstrap_parametric(df, n_resamples=24, seed=3, n_jobs=1, stratify_col=False)
    assert unstrat.stratify_col is None and not np.array_equal(unstrat.samples, serial.samples)


def test_reuses_a_given_fit_and_its_exclusions():
    df = synthetic_isoflop(noise=0.005, seed=2)
    df.loc[4, "loss"] = np.nan
    fit = fit_parametric(df)
    bs = bootstrap_parametric(df, n_resamples=10, seed=0, n_jobs=1, fit=fit)
    assert bs.fit is fit and bs.n_failed == 0
    with pytest.raises(ValueError, match=r"fit: was fitted with method='lbfgs' but method='vpnls'"):
        bootstrap_parametric(df, n_resamples=10, fit=fit, method="vpnls")


def test_vpnls_bootstrap_runs():
    df = synthetic_isoflop(noise=0.002, seed=1)
    bs = bootstrap_parametric(df, n_resamples=30, seed=0, n_jobs=1, method="vpnls", confidence=0.9)
    lo, hi = bs.interval("a")
    assert bs.method == "vpnls" and bs.n_failed == 0
    assert lo < TRUE_a < hi and hi - lo < 0.05


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_resamples": 0}, r"n_resamples: expected an int >= 1, found 0"),
        ({"confidence": 1.5}, r"confidence: expected a number in \(0, 1\), found 1.5"),
        ({"n_jobs": 0}, r"n_jobs: expected -1 \(all cores\) or an int >= 1, found 0"),
        ({"targets": [1e20, -1]}, r"targets: expected positive finite compute budgets"),
        ({"stratify_col": "bucket"}, r"stratify_col='bucket': column not found"),
        ({"method": "sgd"}, r"method: expected one of"),
    ],
)
def test_bad_bootstrap_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_parametric(synthetic_isoflop(), n_jobs=kwargs.pop("n_jobs", 1), **kwargs)


# ---------------------------------------------------------------- slow


@pytest.mark.slow
def test_chinchilla_4000_resamples_overlap_epoch():
    bs = bootstrap_parametric(load_chinchilla(drop_highest_loss=5), n_resamples=4000, seed=0)
    assert bs.n_failed == 0
    for name, theirs in EPOCH_95.items():
        ours = bs.interval(name)
        assert _overlap(ours, theirs) > 0.8, (name, ours, theirs)
        assert abs(ours[0] - theirs[0]) < 0.015 and abs(ours[1] - theirs[1]) < 0.015, (name, ours, theirs)


@pytest.mark.slow
def test_interval_for_a_covers_the_truth_at_1pct_noise():
    """90% intervals for a cover the true 4/7 in >= 80% of 50 seeds (1% noise, off-centre sweeps)."""
    hits = []
    for s in range(50):
        bs = bootstrap_parametric(synthetic_isoflop(noise=0.01, seed=s), n_resamples=200, seed=s, confidence=0.9)
        lo, hi = bs.interval("a")
        hits.append(lo <= TRUE_a <= hi)
    assert np.mean(hits) >= 0.80, np.mean(hits)


# ---------------------------------------------------------------- resamples that do not pin E


def _demo_sweep():
    import pandas as pd
    from pathlib import Path

    data = json.loads((Path(__file__).parent / "fixtures" / "demo_sweep_14.json").read_text())
    return pd.DataFrame(data["runs"])


def _objectives(params: np.ndarray, W: np.ndarray, df, delta: float) -> np.ndarray:
    """The Huber objective of each resample (weight row) at its fitted (E, A, B, alpha, beta)."""
    N, D, L = (df[c].to_numpy(float) for c in ("N", "D", "loss"))
    E, A, B, al, be = (params[:, j : j + 1] for j in range(5))
    r = np.log(E + A / N**al + B / D**be) - np.log(L)
    rho = np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    return (W * rho).sum(1)


@pytest.mark.parametrize("source", ["demo_sweep_14", "law_without_E"])
def test_resamples_that_do_not_pin_E_are_solved_at_E_zero_no_worse_than_lbfgs(source):
    """Real runs (the demo's 14) and a law with no irreducible term: many resamples have their optimum at
    E -> 0. The bootstrap solves those in one batch at that limit; each must be at least as good a fit
    as L-BFGS-B from the same starts (the previous method), and few resamples may be left to L-BFGS-B."""
    from flops_fit.analysis.bootstrap import _params_from_theta, _refit_chunk, _warm_starts

    if source == "demo_sweep_14":
        df = _demo_sweep()
    else:  # L = 300/N^0.3 + 900/D^0.35, no E, 1% noise, 3 budgets x 5 sizes
        rng = np.random.default_rng(4)
        rows = []
        for c in (1e15, 1e16, 1e17):
            for n in np.geomspace(1e6, 1e8, 5):
                d = c / (6 * n)
                rows.append({"N": n, "D": d, "budget": c,
                             "loss": (300 / n**0.3 + 900 / d**0.35) * np.exp(rng.normal(0, 0.01))})
        import pandas as pd

        df = pd.DataFrame(rows)
    fit = fit_parametric(df)
    n = 200
    bs = bootstrap_parametric(df, n_resamples=n, seed=0, fit=fit, n_jobs=1, confidence=0.9)
    assert bs.n_failed == 0 and bs.n_not_converged == 0
    idx = np.stack(list(bootstrap_indices(df["budget"].to_numpy(), n, 0)))
    W = np.zeros((n, len(df)))
    np.add.at(W, (np.arange(n)[:, None], idx), 1.0)
    lN, lD, lL = (np.log(df[c].to_numpy(float)) for c in ("N", "D", "loss"))
    th, _ = _refit_chunk((lN, lD, lL, idx, _warm_starts(fit, lN, lD, 3), "lbfgs", fit.huber_delta))
    ref = _params_from_theta(th)
    at_zero = bs.samples[:, 0] < 1e-12
    assert at_zero.mean() > 0.1, "the case under test: resamples whose best E is 0"
    new_f = _objectives(bs.samples, W, df, fit.huber_delta)
    ref_f = _objectives(ref, W, df, fit.huber_delta)
    worse = new_f > ref_f + 1e-12 * np.maximum(1.0, ref_f)
    assert not (worse & at_zero).any()  # every resample solved at E -> 0 fits at least as well
    assert worse.mean() <= 0.02  # elsewhere Newton's best start can stop in another local minimum, rarely
    assert bs.n_restarted <= 0.15 * n  # before: every E -> 0 resample went to L-BFGS-B one by one
    # where L-BFGS-B also reached E ~ 0, both found the same A, B, alpha, beta (median over resamples)
    both = at_zero & (ref[:, 0] < 1e-3)
    assert both.sum() > 0.05 * n
    assert np.median(np.abs(bs.samples[both, 1:5] / ref[both, 1:5] - 1)) < 1e-4
