"""precision_forecast: the interval of N_opt after more budgets, forecast from the current one and checked
against sweeps that then trained them."""

from __future__ import annotations

import math

import pytest

import flops_fit as ff

#: an off-centre mock law (its optimum far from 20 tokens/param), as in benchmarks/bench_adaptive.py
LAW = dict(E=1.7, A=400.0, B=2000.0, alpha=0.34, beta=0.40, noise=0.01)
BUDGETS = [1e17, 3e17, 1e18, 3e18, 1e19, 3e19]
FAR = 1000 * BUDGETS[-1]


def _sweep(out, budgets, seed, n_bootstrap=200):
    return ff.find_optimal("gpt", mode="mock", mock_law=ff.MockLaw(**LAW), model_kwargs={"n_layers": 4},
                           compute_budgets=budgets, num_model_sizes=5, span_decades=0.5, size_multiple=16,
                           n_bootstrap=n_bootstrap, progress=False, seed=seed, output_dir=out)


def _forecast_against_training(tmp_path, seed):
    """log(realised ratio) / log(forecast ratio) for 3 budgets forecast to 6, then trained to 6."""
    three = _sweep(tmp_path / f"three{seed}", BUDGETS[:3], seed)
    f = ff.precision_forecast(three, FAR)
    six = _sweep(tmp_path / f"six{seed}", BUDGETS, seed)
    lo, hi = six.predict(FAR)["optimal_params_ci"]
    return f, math.log(hi / lo) / math.log(f.rows[2]["ratio"])


def test_the_forecast_of_three_more_budgets_matches_the_interval_they_then_give(tmp_path):
    f, ratio = _forecast_against_training(tmp_path, seed=1)
    assert f.current_ratio > 5  # 3 budgets leave N_opt at 1000x loose: the case a forecast is for
    assert [r["extra_budgets"] for r in f.rows] == [1, 2, 3, 4, 5, 6]
    assert all(a["ratio"] > b["ratio"] for a, b in zip(f.rows, f.rows[1:]))  # more budgets, narrower
    assert [round(b / 1e18, 2) for b in f.rows[2]["budgets"]] == [3.16, 10.0, 31.62]  # the sweep's x3.16 spacing
    assert f.rows[2]["extra_runs"] == 15 and f.rows[2]["extra_compute"] == pytest.approx(5 * sum(f.rows[2]["budgets"]))
    assert 0.5 < ratio < 2.0  # realised log-width within 2x of the forecast's


@pytest.mark.slow  # 8 seeds x 2 sweeps
def test_the_forecast_is_calibrated_over_seeds(tmp_path):
    ratios = sorted(_forecast_against_training(tmp_path, s)[1] for s in range(8))
    assert 0.67 < ratios[len(ratios) // 2] < 1.5 and ratios[0] > 0.5 and ratios[-1] < 2.5


def test_a_target_says_how_many_more_budgets_reach_it(tmp_path):
    r = _sweep(tmp_path / "s", BUDGETS[:3], seed=1, n_bootstrap=100)
    f = ff.precision_forecast(r, FAR, max_ratio=4.0)
    n = f.needed
    assert n is not None and n["ratio"] <= 4.0
    assert all(row["ratio"] > 4.0 for row in f.rows[: n["extra_budgets"] - 1])  # the first that reaches it
    text = f.summary()
    assert text.startswith(f"N_opt at C={FAR:.3g}: its interval spans ×") and "target ×4: about" in text
    assert "or twice the runs at every budget trained: about ×" in text
    assert f.more_runs["ratio"] == pytest.approx(f.current_ratio ** (1 / math.sqrt(2)))
    assert ff.precision_forecast(r, FAR, max_ratio=1.0001, extra_budgets=2).needed is None
    assert "reached already" in ff.precision_forecast(r, FAR, max_ratio=1e9).summary()
    wide = ff.precision_forecast(r, FAR, spacing=10.0)  # budgets 10x apart instead of the sweep's 3.16x
    assert [round(b / 1e19, 6) for b in wide.rows[1]["budgets"]] == [1.0, 10.0]
    assert wide.rows[1]["ratio"] < f.rows[1]["ratio"]  # a longer lever arm for the same number of budgets
    assert "more budgets ×10 apart" in wide.summary().splitlines()[0]


def test_bad_requests_are_named(tmp_path):
    r = _sweep(tmp_path / "s", BUDGETS[:3], seed=0, n_bootstrap=20)
    with pytest.raises(ValueError, match=r"compute: expected a positive finite number of FLOPs, found -1"):
        ff.precision_forecast(r, -1)
    with pytest.raises(ValueError, match=r"max_ratio: expected a finite number in \(1, inf\) \(an interval ratio above 1.*found 0.5"):
        ff.precision_forecast(r, FAR, max_ratio=0.5)
    with pytest.raises(ValueError, match=r"extra_budgets"):
        ff.precision_forecast(r, FAR, extra_budgets=0)
    with pytest.raises(ValueError, match=r"spacing: expected a finite number in \(1, inf\) \(the ratio between"):
        ff.precision_forecast(r, FAR, spacing=1.0)
    with pytest.raises(TypeError, match=r"result: expected a flops_fit Result, found dict"):
        ff.precision_forecast({}, FAR)
    none = _sweep(tmp_path / "n", BUDGETS[:3], seed=0, n_bootstrap=0)
    with pytest.raises(ValueError, match=r"result: no interval of N_opt at C=3e\+22 to scale"):
        ff.precision_forecast(none, FAR)


def test_on_published_isoflop_points_it_continues_their_budgets():
    """Llama 3's IsoFLOP points (Dubey et al. 2024; src/flops_fit/reference/PROVENANCE.md): 10 budgets 6e18..1e22,
    the last ones 2x apart. The forecast continues from the largest, and every further budget narrows N_opt at
    Llama 3 405B's 3.8e25 FLOPs."""
    from flops_fit.analysis import load_llama3

    r = ff.analyze(load_llama3(), n_bootstrap=100)
    f = ff.precision_forecast(r, 3.8e25, max_ratio=1.05)
    assert len(f.budgets) == 10 and f.budgets[-1] == pytest.approx(1e22) and f.spacing == pytest.approx(2.0)
    assert f.rows[0]["budgets"] == [pytest.approx(2e22)]
    ratios = [f.current_ratio] + [row["ratio"] for row in f.rows]
    assert all(a > b > 1 for a, b in zip(ratios, ratios[1:]))
    assert f.needed is None and "not within 6 more budgets" in f.summary()
