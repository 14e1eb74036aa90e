"""Outlier flags: every flagged run carries its reason, and fits leave flagged runs out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flops_fit.analysis.data_io import synthetic_isoflop
from flops_fit.analysis.outliers import DEFAULT_Z_THRESHOLD, flag_outliers, robust_z
from flops_fit.analysis.parametric import fit_parametric


@pytest.fixture()
def runs() -> pd.DataFrame:
    df = synthetic_isoflop(noise=0.002, seed=7)
    df["status"] = "completed"
    df["initial_loss"] = 11.0
    return df


def test_status_nonfinite_and_initial_loss_reasons(runs):
    runs.loc[0, "status"] = "diverged"
    runs.loc[1, "status"] = "failed"
    runs.loc[2, "loss"] = np.nan
    runs.loc[3, "loss"] = np.inf
    runs.loc[4, "loss"] = 11.5  # finished, but worse than at initialisation
    runs.loc[5, "status"] = None  # unknown status is not evidence of failure
    out = flag_outliers(runs)
    assert out.loc[0, "outlier_reason"] == "status=diverged"
    assert out.loc[1, "outlier_reason"] == "status=failed"
    assert out.loc[2, "outlier_reason"] == "non-finite loss"
    assert out.loc[3, "outlier_reason"] == "non-finite loss"
    assert out.loc[4, "outlier_reason"] == "loss 11.5 not below initial loss 11"
    assert out["outlier"].tolist()[:6] == [True, True, True, True, True, False]
    assert not out["outlier"].iloc[6:].any()
    assert (out.loc[~out["outlier"], "outlier_reason"] == "").all()
    assert "outlier" not in runs.columns  # the input is not modified


def test_robust_residuals_flag_only_the_gross_point(runs):
    fit = fit_parametric(runs)
    runs.loc[10, "loss"] *= 1.2  # 20% off the surface: a broken run, not noise
    runs.loc[11, "loss"] *= 1.004  # 2 noise sigmas: must stay
    out = flag_outliers(runs, fit=fit)
    assert out["outlier"].tolist() == [i == 10 for i in range(len(runs))]
    assert out.loc[10, "outlier_reason"].startswith("robust residual z=-")
    assert f"(|z| > {DEFAULT_Z_THRESHOLD:g})" in out.loc[10, "outlier_reason"]
    assert abs(out.loc[10, "residual_z"]) > 50
    # the same through explicit residuals, grouped per budget
    r = np.log(fit.predict_loss(runs["N"], runs["D"])) - np.log(runs["loss"])
    grouped = flag_outliers(runs, residuals=r, group_col="budget")
    assert grouped["outlier"].tolist() == out["outlier"].tolist()
    assert "within its budget" in grouped.loc[10, "outlier_reason"]


def test_scale_floor_keeps_a_perfect_fit_from_flagging_rounding_error():
    r = np.array([0.0, 1e-12, -1e-12, 2e-12, 0.0, 5e-11])
    assert np.all(np.abs(robust_z(r)) < 1e-6)
    z = robust_z(np.array([0.0, 0.001, -0.001, 0.002, 0.0, 0.05]), min_scale=1e-3)
    assert z[-1] == pytest.approx((0.05 - 0.0005) / (1.4826 * 0.001))  # median 0.0005, MAD 0.001
    assert np.isnan(robust_z(np.array([1.0, 2.0, np.nan]))).all()  # too few to judge


def test_fit_excludes_flagged_runs_and_says_why(runs):
    truth = fit_parametric(runs)
    bad = runs.copy()
    bad.loc[0, "loss"] = np.nan
    bad.loc[1, ["status", "loss"]] = ["diverged", 6.0]
    bad.loc[2, "loss"] *= 1.3
    fit = fit_parametric(bad)
    reasons = {p.index: p.reason for p in fit.excluded}
    assert set(reasons) == {0, 1, 2}
    assert reasons[0] == "non-finite loss"
    assert reasons[1] == "status=diverged"
    assert reasons[2].startswith("robust residual z=")
    assert fit.n_points == len(runs) - 3
    assert fit.alpha == pytest.approx(truth.alpha, abs=0.01) and fit.beta == pytest.approx(truth.beta, abs=0.02)

    # exclude_outliers=False keeps everything (a NaN loss is then an error, so drop it by hand)
    kept = fit_parametric(bad, exclude_outliers=False, exclude=[0])
    assert kept.n_points == len(runs) - 1
    assert [(p.index, p.reason) for p in kept.excluded] == [(0, "excluded by caller")]
    assert kept.huber_objective > 10 * fit.huber_objective
    with pytest.raises(ValueError, match="non-finite loss nan at row 0"):
        fit_parametric(bad, exclude_outliers=False)


def test_residual_test_can_be_switched_off(runs):
    runs.loc[2, "loss"] *= 1.3
    assert len(fit_parametric(runs).excluded) == 1
    assert fit_parametric(runs, outlier_threshold=None).excluded == ()


def test_earlier_flags_are_honoured_and_reasons_not_repeated(runs):
    runs["outlier"] = False
    runs["outlier_reason"] = ""
    runs.loc[6, ["outlier", "outlier_reason"]] = [True, "bad node"]
    runs.loc[7, "status"] = "diverged"
    once = flag_outliers(runs)
    twice = flag_outliers(once)
    assert twice.loc[6, "outlier_reason"] == "bad node"
    assert twice.loc[7, "outlier_reason"] == "status=diverged"
    fit = fit_parametric(runs)
    assert {p.index: p.reason for p in fit.excluded} == {6: "bad node", 7: "status=diverged"}


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        ({"loss_col": "val"}, ValueError, r"loss_col='val': column not found; available columns"),
        ({"group_col": "bucket"}, ValueError, r"group_col='bucket': column not found"),
        ({"status_col": "state"}, ValueError, r"status_col='state': column not found"),
        ({"threshold": -1}, ValueError, r"threshold: expected a positive finite number, found -1"),
        ({"residuals": [0.0, 1.0]}, ValueError, r"residuals: expected 35 values \(one per row\), found 2"),
        ({"fit": "surface"}, TypeError, r"fit: expected an object with predict_loss\(N, D\), found str"),
        ({"fit": 1, "residuals": [0.0]}, ValueError, r"residuals and fit: pass one of them, not both"),
    ],
)
def test_bad_arguments(runs, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        flag_outliers(runs, **kwargs)
    with pytest.raises(TypeError, match="df: expected a pandas DataFrame, found dict"):
        flag_outliers({"loss": [1.0]})
