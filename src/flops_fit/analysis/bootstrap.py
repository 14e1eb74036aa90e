"""Bootstrap intervals for the parametric fit: resample experiments, refit, take percentiles.

Experiments are resampled with replacement (within each compute budget when the
data has budgets, so every resample keeps the sweep's design). A resample is a
weight per point (how often it was drawn), so all resamples are refitted at once
by a batched damped Newton on the same summed Huber objective, warm-started from
the full-data fit (1,000 resamples of Chinchilla's 240 points: about 0.5 s, not
10 s of one L-BFGS-B run per resample). The few resamples it leaves unconverged
are refitted by L-BFGS-B from jittered starts around the full fit (in processes
when there are many), and ``n_restarted`` says how many. Resample indices are
drawn from one seeded generator, so results do not depend on ``n_jobs``.

``bootstrap_indices`` is the shared resampler: the IsoFLOP (Approach 2)
bootstrap uses it too, so both approaches see the same kind of resamples.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from flops_fit.flops import SIX_ND, CostModel
from flops_fit.analysis.data_io import load_fit_data, read_table
from flops_fit.analysis.outliers import DEFAULT_Z_THRESHOLD
from flops_fit.analysis.parametric import (
    METHODS,
    NEWTON_GTOL,
    NEWTON_MAX_ITER,
    PARAM_NAMES,
    ParametricFit,
    PreparedData,
    _fit_prepared,
    _solve,
    _validate_options,
    prepare_points,
    single_thread_blas,
    _weighted_terms,
    solve_weighted_batch,
)

#: Quantities reported per target budget, in the order of ``target_samples[..., k]``.
TARGET_NAMES = ("N_opt", "D_opt", "loss", "tokens_per_param")


def bootstrap_indices(groups: Any, n_resamples: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Yield ``n_resamples`` index arrays, each a resample with replacement of all rows.

    ``groups``: an int n (plain resampling of n rows) or one group label per row
    (stratified: each group is resampled within itself, so every resample has the
    same number of rows per group, e.g. per compute budget). Row i of a resample is
    drawn from the group of row i. Seeded: the same arguments give the same arrays.
    """
    if isinstance(groups, (int, np.integer)) and not isinstance(groups, bool):
        if groups < 1:
            raise ValueError(f"groups: expected a number of rows >= 1, found {groups}")
        labels = np.zeros(int(groups), dtype=int)
    else:
        labels = np.asarray(groups)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(
                f"groups: expected an int or a non-empty 1-D array of group labels, found shape {labels.shape}"
            )
    if not isinstance(n_resamples, (int, np.integer)) or isinstance(n_resamples, bool) or n_resamples < 1:
        raise ValueError(f"n_resamples: expected an int >= 1, found {n_resamples!r}")
    _, codes = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(codes == g) for g in range(codes.max() + 1)]
    rng = np.random.default_rng(seed)
    for _ in range(int(n_resamples)):
        out = np.empty(labels.size, dtype=np.int64)
        for pos in members:
            out[pos] = pos[rng.integers(0, pos.size, pos.size)]
        yield out


def budget_strata(budget: np.ndarray, n: np.ndarray) -> np.ndarray:
    """A stratum label per run: its budget when that budget is an IsoFLOP curve (MIN_SIZES_PER_BUDGET or more
    distinct N), else -1, one stratum pooling every run that sits on no such curve (extra branches, scattered
    runs). A stratum of one run would be redrawn as itself in every resample, and its noise would never
    reach the interval."""
    from flops_fit.planning import MIN_SIZES_PER_BUDGET

    budget = np.asarray(budget, dtype=float)
    labels = budget.copy()
    for b in np.unique(budget):
        at = budget == b
        if np.unique(np.asarray(n)[at]).size < MIN_SIZES_PER_BUDGET:
            labels[at] = -1.0
    return labels


def percentile_interval(x: np.ndarray, c: float) -> tuple[float, float]:
    """Central ``c`` percentile interval of the finite values of ``x``; (nan, nan) when there are none."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.quantile(x, [(1 - c) / 2, 1 - (1 - c) / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class BootstrapResult:
    """Full-data fit plus the refits of every resample and their percentile intervals.

    ``samples``: (n_ok, 8) array of PARAM_NAMES per successful resample;
    ``target_samples``: (n_ok, len(targets), 4) array of TARGET_NAMES per budget.
    """

    fit: ParametricFit
    samples: np.ndarray
    targets: np.ndarray
    target_samples: np.ndarray
    n_resamples: int
    n_failed: int
    n_not_converged: int
    confidence: float
    seed: int
    method: str
    stratify_col: str | None
    n_restarted: int = 0  # resamples the batched Newton left unconverged, refitted by L-BFGS-B from jittered starts

    def _conf(self, confidence: float | None) -> float:
        c = self.confidence if confidence is None else confidence
        if not (isinstance(c, (int, float)) and 0 < c < 1):
            raise ValueError(f"confidence: expected a number in (0, 1), found {c!r}")
        return float(c)

    def interval(self, name: str, confidence: float | None = None) -> tuple[float, float]:
        """Percentile interval of a parameter (one of PARAM_NAMES)."""
        if name not in PARAM_NAMES:
            raise ValueError(f"name: expected one of {PARAM_NAMES}, found {name!r}")
        return percentile_interval(self.samples[:, PARAM_NAMES.index(name)], self._conf(confidence))

    def _target_index(self, C: float) -> int:
        if self.targets.size == 0:
            raise ValueError("C: this bootstrap was run without targets; pass targets=[...] to bootstrap_parametric")
        hit = np.flatnonzero(np.isclose(self.targets, float(C), rtol=1e-9, atol=0))
        if hit.size == 0:
            raise ValueError(f"C: {C!r} is not one of the target budgets {self.targets.tolist()}")
        return int(hit[0])

    def target_interval(self, C: float, name: str, confidence: float | None = None) -> tuple[float, float]:
        """Percentile interval of N_opt, D_opt, loss or tokens_per_param at target budget C."""
        if name not in TARGET_NAMES:
            raise ValueError(f"name: expected one of {TARGET_NAMES}, found {name!r}")
        j = self._target_index(C)
        return percentile_interval(self.target_samples[:, j, TARGET_NAMES.index(name)], self._conf(confidence))

    def samples_at(self, C: Any, cost: CostModel | None = None) -> np.ndarray:
        """TARGET_NAMES of every resample at any budget(s) C, not only ``targets``: (n_ok, len(C), 4);
        the allocation spends C under `cost` (6·N·D when None)."""
        return _target_values(self.samples, np.atleast_1d(np.asarray(C, dtype=float)), cost)

    def intervals(self, confidence: float | None = None) -> pd.DataFrame:
        """Table: one row per parameter with the full-data estimate and the interval."""
        c = self._conf(confidence)
        rows = []
        for name in PARAM_NAMES:
            lo, hi = self.interval(name, c)
            rows.append({"parameter": name, "estimate": float(getattr(self.fit, name)), "lower": lo, "upper": hi})
        return pd.DataFrame(rows).set_index("parameter")

    def target_intervals(self, confidence: float | None = None) -> pd.DataFrame:
        """Table: one row per (budget, quantity) with the full-data estimate and the interval."""
        c = self._conf(confidence)
        rows = []
        for C in self.targets:
            est = _target_values(self.fit.params(), np.array([C]))[0]
            for k, name in enumerate(TARGET_NAMES):
                lo, hi = self.target_interval(C, name, c)
                rows.append({"C": float(C), "quantity": name, "estimate": float(est[k]), "lower": lo, "upper": hi})
        return pd.DataFrame(rows, columns=["C", "quantity", "estimate", "lower", "upper"])

    def samples_frame(self) -> pd.DataFrame:
        """The raw resample parameters, one row per successful resample."""
        return pd.DataFrame(self.samples, columns=list(PARAM_NAMES))

    def to_dict(self, include_samples: bool = False) -> dict[str, Any]:
        """JSON-ready summary (intervals at ``confidence``); raw samples only on request."""
        d: dict[str, Any] = {
            "method": self.method,
            "n_resamples": self.n_resamples,
            "n_failed": self.n_failed,
            "n_not_converged": self.n_not_converged,
            "n_restarted": self.n_restarted,
            "confidence": self.confidence,
            "seed": self.seed,
            "stratify_col": self.stratify_col,
            "fit": self.fit.to_dict(),
            "intervals": {n: list(self.interval(n)) for n in PARAM_NAMES},
            "targets": [
                {"C": float(C), **{n: list(self.target_interval(C, n)) for n in TARGET_NAMES}} for C in self.targets
            ],
        }
        if include_samples:
            d["param_names"] = list(PARAM_NAMES)
            d["samples"] = self.samples.tolist()
        return d


def _params_from_theta(theta: np.ndarray) -> np.ndarray:
    """Rows of (log A, log B, log E, alpha, beta) -> rows of PARAM_NAMES."""
    la, lb, le, al, be = theta.T
    with np.errstate(all="ignore"):
        A, B, E = np.exp(la), np.exp(lb), np.exp(le)
        s = al + be
        G = (al * A / (be * B)) ** (1.0 / s)
        return np.column_stack([E, A, B, al, be, be / s, al / s, G])


def _target_values(params: Any, targets: np.ndarray, cost: CostModel | None = None) -> np.ndarray:
    """TARGET_NAMES at each budget of ``targets``: (len(targets), 4) for one parameter set
    (dict or PARAM_NAMES row), (k, len(targets), 4) for a (k, 8) array of PARAM_NAMES rows."""
    if isinstance(params, dict):
        p = params
    else:
        rows = np.asarray(params, dtype=float)
        p = {name: rows[..., i, None] for i, name in enumerate(PARAM_NAMES)}
    with np.errstate(all="ignore"):
        if cost is None or cost == SIX_ND:
            N = p["G"] * (targets / 6.0) ** p["a"]
            D = targets / (6.0 * N)
        else:
            N, D = cost.parametric_optimum(targets, p["E"], p["A"], p["B"], p["alpha"], p["beta"])
        L = p["E"] + p["A"] * N ** (-p["alpha"]) + p["B"] * D ** (-p["beta"])
        return np.stack([N, D, L, D / N], axis=-1)


def _warm_starts(fit: ParametricFit, lN: np.ndarray, lD: np.ndarray, n_starts: int) -> np.ndarray:
    """The full-data optimum plus exponent jitters.

    Each jitter moves log A (log B) with alpha (beta) so that A/N^alpha (B/D^beta)
    keeps its value at the data's mean log N (log D): the start stays near the data.
    """
    theta = fit.log_params
    starts = [theta]
    jitters = [(1.2, 0.8), (0.8, 1.2), (1.3, 1.3), (0.75, 0.75)]
    mean_lN, mean_lD = float(np.mean(lN)), float(np.mean(lD))
    for fa, fb in jitters[: n_starts - 1]:
        t = theta.copy()
        t[3], t[4] = theta[3] * fa, theta[4] * fb
        t[0] = theta[0] + (t[3] - theta[3]) * mean_lN
        t[1] = theta[1] + (t[4] - theta[4]) * mean_lD
        starts.append(t)
    return np.vstack(starts)


def _refit_chunk(
    args: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, str, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Worker: refit each resample in ``idx``; returns thetas (k, 5) and converged flags (k,)."""
    lN, lD, lL, idx, starts, method, delta = args
    thetas = np.full((idx.shape[0], 5), np.nan)
    conv = np.zeros(idx.shape[0], dtype=bool)
    with single_thread_blas():
        for i, rows in enumerate(idx):
            try:
                sol = _solve(lN[rows], lD[rows], lL[rows], method=method, delta=delta, starts=starts,
                            n_best=starts.shape[0])
            except (ValueError, FloatingPointError, np.linalg.LinAlgError):
                continue
            thetas[i] = sol.theta
            conv[i] = sol.converged
    return thetas, conv


#: cells (resamples x points) per batch: small enough to stay in cache, large enough to amortise numpy's overhead
_BATCH_CELLS = 60_000


def _best_of_starts(W: np.ndarray, lN: np.ndarray, lD: np.ndarray, lL: np.ndarray, starts: np.ndarray,
                    delta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched Newton from every start for the resamples (weight rows) of W; the lowest converged objective wins.
    Also returns, per row, the lowest point reached converged or not (where an unconverged row goes on from)."""
    thetas = np.full((W.shape[0], 5), np.nan)
    conv = np.zeros(W.shape[0], dtype=bool)
    best = np.full(W.shape[0], np.inf)
    reached = np.full((W.shape[0], 5), np.nan)
    lowest = np.full(W.shape[0], np.inf)
    for start in starts:
        th, cv = solve_weighted_batch(start, W, lN, lD, lL, delta=delta, max_iter=FIRST_PASS_ITER)
        f_any = _weighted_terms(th, W, lN, lD, lL, delta, hessian=False)
        f_any = np.where(np.isfinite(f_any), f_any, np.inf)
        low = f_any < lowest
        lowest[low], reached[low] = f_any[low], th[low]
        f = np.where(cv, f_any, np.inf)
        take = f < best
        best[take], thetas[take], conv[take] = f[take], th[take], True
    return thetas, conv, reached


#: Newton iterations from each start; a resample not converged by then goes on from the lowest point any
#: start reached (CONTINUE_ITER more), after the E -> 0 limit is tried
FIRST_PASS_ITER = NEWTON_MAX_ITER
CONTINUE_ITER = 1500
#: log E that puts the irreducible term out of reach of every loss (e^-60 next to losses of order 1)
_LOG_E_ZERO = -60.0


def _irreducible_at_zero(W: np.ndarray, lN: np.ndarray, lD: np.ndarray, lL: np.ndarray, start: np.ndarray,
                         delta: float) -> tuple[np.ndarray, np.ndarray]:
    """For resamples whose Newton did not converge: the fit with E -> 0 (L = A/N^alpha + B/D^beta), and
    whether that is their optimum (converged, and adding any E raises the objective: dF/dE >= 0 at E = 0).

    A resample that does not pin E has its infimum there, at log E -> -inf, which Newton approaches only
    in hundreds of steps along a flat valley and L-BFGS-B reaches one resample at a time (70 ms each):
    this finds the same point for all of them in one batch. Rows where it is not the optimum (or does
    not converge) go on to L-BFGS-B."""
    s0 = np.array(start, dtype=float)
    s0[2] = _LOG_E_ZERO
    th, cv = solve_weighted_batch(s0, W, lN, lD, lL, delta=delta)
    pred = np.logaddexp(th[:, 0:1] - th[:, 3:4] * lN, th[:, 1:2] - th[:, 4:5] * lD)  # log L without E
    r = pred - lL
    slope_e = (W * np.clip(r, -delta, delta) * np.exp(-pred)).sum(1)  # dF/dE at E = 0
    ok = cv & np.all(np.isfinite(th), axis=1) & (slope_e >= -NEWTON_GTOL) & (th[:, 2] <= _LOG_E_ZERO + 1.0)
    return th, ok


def _refit_all(lN: np.ndarray, lD: np.ndarray, lL: np.ndarray, idx: np.ndarray,
               starts: np.ndarray, method: str, delta: float, workers: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Refit every resample: in batches by damped Newton from each of ``starts`` (the full-data optimum
    and jitters around it; the lowest objective wins), batches spread over ``workers`` threads (numpy
    releases the GIL). A resample left unconverged is tried at the E -> 0 limit (taken where that is its
    optimum), then Newton goes on from the lowest point it reached; only the few still unconverged are
    refitted one by one by L-BFGS-B from the same starts (in processes when there are many). All minimise
    the same objective, so the method only changes the time. Returns thetas, converged flags and how many
    resamples needed the L-BFGS-B restart."""
    n = lN.size
    W = np.zeros((idx.shape[0], n))
    np.add.at(W, (np.arange(idx.shape[0])[:, None], idx), 1.0)
    step = max(1, _BATCH_CELLS // max(n, 1))
    parts = [W[i : i + step] for i in range(0, W.shape[0], step)]
    with single_thread_blas():  # 5x5 solves: BLAS threads only get in the way of ours
        if workers == 1 or len(parts) == 1:
            outs = [_best_of_starts(w, lN, lD, lL, starts, delta) for w in parts]
        else:
            with ThreadPoolExecutor(max_workers=min(workers, len(parts))) as ex:
                outs = list(ex.map(lambda w: _best_of_starts(w, lN, lD, lL, starts, delta), parts))
    thetas = np.vstack([o[0] for o in outs])
    conv = np.concatenate([o[1] for o in outs])
    reached = np.vstack([o[2] for o in outs])
    bad = np.flatnonzero(~conv)
    if bad.size:  # resamples drifting to E -> 0: solved at that limit when it is their optimum
        th0, ok0 = _irreducible_at_zero(W[bad], lN, lD, lL, starts[0], delta)
        thetas[bad[ok0]], conv[bad[ok0]] = th0[ok0], True
        bad = bad[~ok0]
    go_on = bad[np.all(np.isfinite(reached[bad]), axis=1)]
    if go_on.size:  # slow along a curved valley, not stuck: Newton goes on from the lowest point it reached
        with single_thread_blas():
            th1, cv1 = solve_weighted_batch(reached[go_on], W[go_on], lN, lD, lL, delta=delta,
                                            max_iter=CONTINUE_ITER)
        thetas[go_on[cv1]], conv[go_on[cv1]] = th1[cv1], True
        bad = np.flatnonzero(~conv)
    if bad.size:
        n_chunks = 1 if workers == 1 or bad.size < 32 else min(bad.size, workers * 4)
        jobs = [(lN, lD, lL, idx[c], starts, method, delta) for c in np.array_split(bad, n_chunks)]
        if n_chunks == 1:
            outs = [_refit_chunk(j) for j in jobs]
        else:
            with ProcessPoolExecutor(max_workers=min(workers, n_chunks)) as ex:
                outs = list(ex.map(_refit_chunk, jobs))
        redo_th = np.vstack([o[0] for o in outs])
        redo_conv = np.concatenate([o[1] for o in outs])
        take = np.all(np.isfinite(redo_th), axis=1)
        thetas[bad[take]] = redo_th[take]
        conv[bad[take]] = redo_conv[take]
    return thetas, conv, int(bad.size)


def _n_workers(n_jobs: int) -> int:
    if not isinstance(n_jobs, (int, np.integer)) or isinstance(n_jobs, bool) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs: expected -1 (all cores) or an int >= 1, found {n_jobs!r}")
    try:
        avail = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        avail = os.cpu_count() or 1
    return avail if n_jobs == -1 else min(int(n_jobs), max(avail, 1) * 4)


def bootstrap_parametric(
    data: pd.DataFrame | str | Any,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    stratify_col: str | None | bool = None,
    confidence: float = 0.95,
    n_jobs: int = -1,
    method: str = "lbfgs",
    targets: Sequence[float] | None = None,
    n_col: str = "N",
    d_col: str = "D",
    loss_col: str = "loss",
    c_col: str | None = None,
    huber_delta: float = 1e-3,
    exclude: Any = None,
    exclude_outliers: bool = True,
    outlier_threshold: float | None = DEFAULT_Z_THRESHOLD,
    fit: ParametricFit | None = None,
    n_starts: int = 3,
) -> BootstrapResult:
    """Bootstrap the parametric fit over experiments; percentile intervals for parameters and targets.

    ``n_starts``: starts (the full fit plus jitters) for the resamples the batched Newton
    leaves unconverged; ``n_jobs``: processes for those restarts.
    ``stratify_col``: None = resample within the ``budget`` column when the data has
    one (a ``compute_budget`` field of results.json counts), runs off every IsoFLOP
    budget pooled in one stratum (:func:`budget_strata`), else plainly; a column
    name = stratify by it; False = never stratify. Exclusions are decided once, on
    the full data (or taken from ``fit`` when given, which also skips the full fit),
    and resamples are drawn from the kept points. ``targets``: compute budgets C at
    which N_opt, D_opt, the loss at the optimum and tokens per parameter get intervals.
    """
    _validate_options(method, huber_delta, 1, outlier_threshold)
    if not isinstance(n_resamples, (int, np.integer)) or isinstance(n_resamples, bool) or n_resamples < 1:
        raise ValueError(f"n_resamples: expected an int >= 1, found {n_resamples!r}")
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ValueError(f"confidence: expected a number in (0, 1), found {confidence!r}")
    if not isinstance(n_starts, (int, np.integer)) or isinstance(n_starts, bool) or not 1 <= n_starts <= 5:
        raise ValueError(f"n_starts: expected an int from 1 to 5, found {n_starts!r}")
    workers = _n_workers(n_jobs)
    tgt = np.zeros(0) if targets is None else np.atleast_1d(np.asarray(targets, dtype=float))
    if tgt.ndim != 1 or not np.all(np.isfinite(tgt) & (tgt > 0)):
        raise ValueError(f"targets: expected positive finite compute budgets, found {targets!r}")
    if fit is not None:
        if not isinstance(fit, ParametricFit):
            raise TypeError(f"fit: expected a ParametricFit, found {type(fit).__name__}")
        if fit.method != method:
            raise ValueError(f"fit: was fitted with method={fit.method!r} but method={method!r} was asked for")

    fd = load_fit_data(data, n_col=n_col, d_col=d_col, loss_col=loss_col, c_col=c_col)
    if fit is None:
        prepared = prepare_points(fd, exclude=exclude, exclude_outliers=exclude_outliers)
        fit, prepared = _fit_prepared(
            prepared, method=method, delta=huber_delta, init=None, n_best=16,
            outlier_threshold=outlier_threshold if exclude_outliers else None,
        )
    else:
        drop = [p.index for p in fit.excluded if p.index in fd.frame.index]
        prepared = PreparedData(frame=fd.frame.drop(index=drop), excluded=fit.excluded, source=fd.source)
        huber_delta = fit.huber_delta
    frame, strat = _strata(prepared.frame, stratify_col, data)
    lN, lD, lL = PreparedData(frame=frame, excluded=(), source="").logs
    starts = _warm_starts(fit, lN, lD, n_starts)
    groups = (budget_strata(frame[strat].to_numpy(), frame["N"].to_numpy())
              if strat == "budget" and stratify_col is None else frame[strat].to_numpy() if strat else len(frame))
    idx = np.stack(list(bootstrap_indices(groups, n_resamples, seed)))
    thetas, conv, n_restarted = _refit_all(lN, lD, lL, idx, starts, method, float(huber_delta), workers)
    params = _params_from_theta(thetas)
    ok = np.all(np.isfinite(params), axis=1)
    params = params[ok]
    return BootstrapResult(
        fit=fit, samples=params, targets=tgt, target_samples=_target_values(params, tgt),
        n_resamples=int(n_resamples), n_failed=int((~ok).sum()), n_not_converged=int((ok & ~conv).sum()),
        confidence=float(confidence), n_restarted=n_restarted, seed=int(seed), method=method, stratify_col=strat,
    )


def _strata(frame: pd.DataFrame, stratify_col: str | None | bool, data: Any) -> tuple[pd.DataFrame, str | None]:
    """The column resampled within (None: the budget column when there is one; False: none)."""
    if stratify_col is None:
        return frame, "budget" if "budget" in frame.columns else None
    if stratify_col is False:
        return frame, None
    if not isinstance(stratify_col, str):
        raise TypeError(f"stratify_col: expected a column name, None or False, found {type(stratify_col).__name__}")
    if stratify_col in frame.columns:
        return frame, stratify_col
    raw, _ = read_table(data)
    if stratify_col not in raw.columns:
        raise ValueError(
            f"stratify_col={stratify_col!r}: column not found; available columns: {list(raw.columns)[:20]}"
        )
    return frame.assign(**{stratify_col: raw.loc[frame.index, stratify_col].to_numpy()}), stratify_col


__all__ = ["METHODS", "TARGET_NAMES", "BootstrapResult", "bootstrap_indices", "bootstrap_parametric", "budget_strata"]
