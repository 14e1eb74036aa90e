"""Flag runs that must not enter a scaling-law fit, and say why.

A run is flagged when
- its status says it did not finish cleanly (``diverged``, ``failed``, ...),
- its loss is not finite (NaN / inf: a diverged run),
- its loss is not below its own initial loss (when an ``initial_loss`` column exists),
- its robust residual is extreme: ``|r - median(r)| / (1.4826 * MAD(r)) > threshold``,
  where ``r`` are residuals against a fitted surface (e.g. log L_pred - log L_obs of
  a :class:`~flops_fit.analysis.parametric.ParametricFit`) or against per-budget
  IsoFLOP parabolas, computed over all rows or within each group of ``group_col``.

Threshold choice (``DEFAULT_Z_THRESHOLD = 12``): the residual test is meant to catch
runs from a *different process* (silently diverged, wrong schedule, bad data), not
the tail of honest noise. The Huber loss already limits the pull of moderate
misfits, and dropping real points biases the fit, so the threshold is set far
out. On Epoch AI's 245 Chinchilla points the four grossly misread points sit at
robust z = 13 to 45 and are flagged, while the largest |z| among the 240 points
Epoch AI keeps is 10.3 (losses read off a colour bar have heavy tails), so none
of those is; a Gaussian tail beyond 12 sigma has probability ~1e-33. The scale
has a floor (``min_scale``, default 1e-3, i.e. 0.1% in log loss) so that a
near-perfect fit (noise-free data, MAD ~ 0) does not flag rounding error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

#: Robust z-score above which a residual is flagged (see the module docstring).
DEFAULT_Z_THRESHOLD = 12.0
#: Floor on the robust residual scale, in the residuals' units (log loss by default).
DEFAULT_MIN_SCALE = 1e-3
#: Status values that mean a run finished cleanly; anything else is flagged.
OK_STATUSES = frozenset(
    {"ok", "completed", "complete", "done", "success", "succeeded", "finished", ""}
)
#: Minimum number of residuals in a group for its median/MAD to mean anything.
MIN_GROUP_SIZE = 4


def robust_z(residuals: np.ndarray, *, min_scale: float = DEFAULT_MIN_SCALE) -> np.ndarray:
    """(r - median) / max(1.4826 * MAD, min_scale); NaN residuals stay NaN."""
    r = np.asarray(residuals, dtype=float)
    finite = np.isfinite(r)
    z = np.full(r.shape, np.nan)
    if finite.sum() < MIN_GROUP_SIZE:
        return z
    med = np.median(r[finite])
    mad = np.median(np.abs(r[finite] - med))
    scale = max(1.4826 * mad, min_scale)
    z[finite] = (r[finite] - med) / scale
    return z


def _add_reason(reasons: list[list[str]], mask: np.ndarray, text: Any) -> None:
    for i in np.flatnonzero(mask):
        reasons[i].append(text(i) if callable(text) else text)


def flag_outliers(
    df: pd.DataFrame,
    *,
    loss_col: str = "loss",
    status_col: str | None = "status",
    group_col: str | None = None,
    residuals: Any = None,
    fit: Any = None,
    n_col: str = "N",
    d_col: str = "D",
    initial_loss_col: str | None = "initial_loss",
    threshold: float = DEFAULT_Z_THRESHOLD,
    min_scale: float = DEFAULT_MIN_SCALE,
) -> pd.DataFrame:
    """Return a copy of ``df`` with ``outlier`` (bool) and ``outlier_reason`` (str) columns.

    Residuals for the robust test come from ``residuals`` (array-like aligned with
    the rows; NaN where unknown) or from ``fit`` (any object with
    ``predict_loss(N, D)``, e.g. a ParametricFit; residual = log L_pred - log L_obs).
    With ``group_col`` the median and MAD are taken within each group (e.g. per
    budget for IsoFLOP-parabola residuals). Rows already flagged for another reason
    are left out of the median/MAD. Several reasons are joined with ``"; "``.
    """
    _check_flag_args(df, loss_col, status_col, group_col, threshold, min_scale)
    if residuals is not None and fit is not None:
        raise ValueError("residuals and fit: pass one of them, not both")
    out = df.copy()
    n = len(out)
    reasons: list[list[str]] = [[] for _ in range(n)]
    loss = pd.to_numeric(out[loss_col], errors="coerce").to_numpy(dtype=float)
    if status_col is not None and status_col in out.columns:
        status = out[status_col].to_numpy()
        bad_status = np.array(
            [not (s is None or (isinstance(s, float) and np.isnan(s)) or str(s).strip().lower() in OK_STATUSES)
             for s in status],
            dtype=bool,
        )
        _add_reason(reasons, bad_status, lambda i: f"status={status[i]}")
    _add_reason(reasons, ~np.isfinite(loss), "non-finite loss")
    if initial_loss_col is not None and initial_loss_col in out.columns:
        init = pd.to_numeric(out[initial_loss_col], errors="coerce").to_numpy(dtype=float)
        above = np.isfinite(loss) & np.isfinite(init) & (loss >= init)
        _add_reason(reasons, above, lambda i: f"loss {loss[i]:.4g} not below initial loss {init[i]:.4g}")
    r = _residuals(out, residuals, fit, loss, n_col, d_col)
    if r is not None:
        r = np.where(np.array([bool(x) for x in reasons]), np.nan, r)  # already flagged: out of the median/MAD
        z = np.full(n, np.nan)
        if group_col is None:
            z = robust_z(r, min_scale=min_scale)
        else:
            groups = out[group_col].to_numpy()
            for g in pd.unique(groups):
                m = groups == g
                z[m] = robust_z(r[m], min_scale=min_scale)
        where = "" if group_col is None else f" within its {group_col}"
        _add_reason(reasons, np.isfinite(z) & (np.abs(z) > threshold),
                    lambda i: f"robust residual z={z[i]:+.1f}{where} (|z| > {threshold:g})")
        out["residual_z"] = z
    return _with_reasons(out, reasons)


def _check_flag_args(df: Any, loss_col: str, status_col: str | None, group_col: str | None, threshold: Any,
                     min_scale: Any) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df: expected a pandas DataFrame, found {type(df).__name__}")
    available = list(df.columns)[:20]
    if loss_col not in df.columns:
        raise ValueError(f"loss_col={loss_col!r}: column not found; available columns: {available}")
    if status_col is not None and status_col != "status" and status_col not in df.columns:
        raise ValueError(f"status_col={status_col!r}: column not found; available columns: {available}")
    if group_col is not None and group_col not in df.columns:
        raise ValueError(f"group_col={group_col!r}: column not found; available columns: {available}")
    if not (isinstance(threshold, (int, float)) and np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold: expected a positive finite number, found {threshold!r}")
    if not (isinstance(min_scale, (int, float)) and np.isfinite(min_scale) and min_scale >= 0):
        raise ValueError(f"min_scale: expected a finite number >= 0, found {min_scale!r}")


def _with_reasons(out: pd.DataFrame, reasons: list[list[str]]) -> pd.DataFrame:
    """The outlier and outlier_reason columns: this call's reasons after any flags set before."""
    n = len(out)
    prior = out["outlier"].fillna(False).astype(bool).to_numpy() if "outlier" in out.columns else np.zeros(n, bool)
    prior_reason = (
        out["outlier_reason"].fillna("").astype(str).to_numpy() if "outlier_reason" in out.columns else [""] * n
    )
    texts = []
    for i in range(n):
        parts: list[str] = []
        if prior[i]:
            parts.extend([p for p in prior_reason[i].split("; ") if p] or ["flagged before"])
        parts.extend(reasons[i])
        texts.append("; ".join(dict.fromkeys(parts)))  # keep order, drop repeats
    out["outlier"] = np.array([bool(x) for x in reasons]) | prior
    out["outlier_reason"] = texts
    return out


def _residuals(
    df: pd.DataFrame, residuals: Any, fit: Any, loss: np.ndarray, n_col: str, d_col: str
) -> np.ndarray | None:
    if residuals is not None:
        r = np.asarray(residuals, dtype=float).reshape(-1)
        if r.shape[0] != len(df):
            raise ValueError(f"residuals: expected {len(df)} values (one per row), found {r.shape[0]}")
        return r
    if fit is not None:
        if not callable(getattr(fit, "predict_loss", None)):
            raise TypeError(f"fit: expected an object with predict_loss(N, D), found {type(fit).__name__}")
        for name, col in (("n_col", n_col), ("d_col", d_col)):
            if col not in df.columns:
                raise ValueError(f"{name}={col!r}: column not found; available columns: {list(df.columns)[:20]}")
        N = df[n_col].to_numpy(dtype=float)
        D = df[d_col].to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log(fit.predict_loss(N, D)) - np.log(loss)
    return None
