"""Scaling-law analysis: Approach 2 (IsoFLOP parabolas), Approach 3 (parametric L(N, D)),
bootstrap intervals, outlier flags, back-tests and the evidence that picks the headline
approach. Computation on tables; ``data_io`` also reads a user's CSV/JSON into one."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flops_fit.analysis.bootstrap import (
    TARGET_NAMES,
    BootstrapResult,
    bootstrap_indices,
    bootstrap_parametric,
    budget_strata,
    percentile_interval,
)
from flops_fit.analysis.data_io import load_chinchilla, load_fit_data, load_llama3
from flops_fit.analysis.evidence import (
    Evidence,
    Finding,
    evidence_findings,
    gather,
    prediction_findings,
    sort_findings,
)
from flops_fit.analysis.isoflop import (
    BudgetOptimum,
    IsoFLOPAnalysis,
    IsoFLOPBootstrap,
    LossLaw,
    PowerLaw,
    bootstrap_isoflop,
    fit_isoflop,
)
from flops_fit.analysis.outliers import DEFAULT_Z_THRESHOLD, flag_outliers
from flops_fit.flops import FLOPS_6ND, FLOPS_MEASURED, SIX_ND, CostModel, fit_cost_model
from flops_fit.analysis.stored import reuse_isoflop, reuse_parametric, samples_key, samples_to_dict
from flops_fit.analysis.parametric import (
    PARAM_NAMES,
    ExcludedPoint,
    ParametricFit,
    fit_parametric,
)

ANALYSIS_SCHEMA = 1
ANALYSIS_KIND = "flops-fit/scaling-laws"
CI_KEYS = ("optimal_params_ci", "optimal_tokens_ci", "expected_loss_ci", "tokens_per_param_ci", "exponent_a_ci")
MIN_POINTS_APPROACH_3 = 8  # 5 free parameters: fewer points cannot pin the surface down
COST_FIT_WARN = 0.05  # a measured cost c·N^b further than this from a run's own C/D is reported


#: bootstrap resamples and interval level of every analysis unless asked otherwise (written once: the library,
#: the CLI, Result and ff.analyze all take these)
N_BOOTSTRAP = 1000
CONFIDENCE = 0.90


@dataclass
class AnalysisOptions:
    """How a sweep was analysed (stored, so a reload reproduces the same numbers)."""

    exclude_outliers: bool = True
    n_bootstrap: int = N_BOOTSTRAP
    seed: int = 0
    confidence: float = CONFIDENCE
    outlier_threshold: float = DEFAULT_Z_THRESHOLD
    n_jobs: int = -1
    #: how the runs' compute was counted: "6ND", or "measured" (the cost c·N^b is then fitted to the runs)
    flops_accounting: str = FLOPS_6ND


@dataclass
class Analysis:
    """Everything the fits say about one sweep."""

    isoflop: IsoFLOPAnalysis | None  # None when no 2 budgets have 3+ sizes (e.g. a table of scattered runs)
    table: pd.DataFrame  # the runs, with outlier / outlier_reason columns
    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    parametric: ParametricFit | None = None  # Approach 3, when enough points
    parametric_note: str = ""
    bootstrap: BootstrapResult | None = None  # Approach 3 resamples
    isoflop_bootstrap: IsoFLOPBootstrap | None = None  # Approach 2 resamples
    warnings: list[str] = field(default_factory=list)
    evidence: Evidence | None = None  # in-sample agreement, back-tests, and the headline choice
    findings: list[Finding] = field(default_factory=list)  # structured doubts, most severe first
    samples_key: str = ""  # what the bootstrap samples were drawn from (see analysis.stored)
    cost: CostModel = SIX_ND  # how an N_opt's D_opt spends C (see flops.CostModel)

    def samples_dict(self) -> dict[str, Any]:
        """The bootstrap samples, for scaling_laws.json (a reload reuses them)."""
        return samples_to_dict(self.samples_key, self.bootstrap, self.isoflop_bootstrap)

    @property
    def excluded(self) -> pd.DataFrame:
        return self.table[self.table["outlier"]]

    @property
    def predict_with(self) -> str:
        """The approach the evidence supports (see flops_fit.analysis.evidence)."""
        if self.evidence is not None:
            return self.evidence.predict_with
        return "approach_3" if self.isoflop is None else "approach_2"

    @property
    def budgets(self) -> list[float]:
        """The measured compute range: IsoFLOP budgets, or the runs' own 6ND when there are none."""
        if self.isoflop is not None:
            return sorted(o.compute_budget for o in self.isoflop.optima)
        ok = self.table[~self.table["outlier"]]
        c = (ok["compute_budget"] if "compute_budget" in ok else 6.0 * ok["N"] * ok["D"]).to_numpy(float)
        return sorted({float(c.min()), float(c.max())})


def flag_basic_outliers(df: pd.DataFrame) -> pd.DataFrame:
    """Runs that cannot enter any fit: failed, diverged, non-finite, or not below their initial loss.
    A failed run's reason is its own error (the real cause), not just its status."""
    out = flag_outliers(df, loss_col="loss", status_col="status", initial_loss_col="initial_loss")
    if "error" in out.columns:
        for i in np.flatnonzero(out["outlier"].to_numpy() & out["error"].notna().to_numpy()):
            err = str(out["error"].iloc[i]).strip().splitlines()
            if err:
                out.iloc[i, out.columns.get_loc("outlier_reason")] = f"{out['status'].iloc[i]}: {err[-1][:200]}"
    return out


def failure_findings(table: pd.DataFrame) -> list[Finding]:
    """How many runs of each budget did not finish, why, and that the answer rests on fewer runs."""
    if "status" not in table.columns:
        return []
    bad = table[table["status"].astype(str).isin(["failed", "diverged"])]
    if not len(bad):
        return []
    per = bad.groupby("compute_budget").size() if "compute_budget" in bad else pd.Series({None: len(bad)})
    tot = table.groupby("compute_budget").size() if "compute_budget" in table else pd.Series({None: len(table)})
    parts = [f"{int(k)} of {int(tot[b])} at C={b:.3g}" for b, k in per.items() if b is not None]
    transient = int(bad["transient"].fillna(False).astype(bool).sum()) if "transient" in bad else 0
    first = bad.iloc[0]
    how = ("transient failures are retried on the next call; " if transient else "") + \
        "after fixing the cause, run again with retry_failed=True (CLI: retry_failed=true)"
    return [Finding(
        "warning", "failed_runs",
        f"{len(bad)} run(s) did not finish ({', '.join(parts)}; {transient} transient); the answer rests on "
        f"{len(table) - len(bad)} of {len(table)} runs; first: {first.get('experiment_id', 'row')}: "
        f"{first['outlier_reason']}; {how}", None,
        {"n_failed": len(bad), "n_transient": transient, "n_runs": len(table)})]


def _percentile_ci(samples: np.ndarray, confidence: float) -> tuple[float, float] | None:
    """None (no interval) unless at least 2 resamples gave a finite value."""
    s = np.asarray(samples, float)
    return percentile_interval(s, confidence) if np.isfinite(s).sum() >= 2 else None


def analyze(
    df: pd.DataFrame,
    *,
    exclude_outliers: bool = True,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    outlier_threshold: float = DEFAULT_Z_THRESHOLD,
    n_jobs: int = -1,
    stored_samples: Mapping[str, Any] | None = None,
    flops_accounting: str = FLOPS_6ND,
) -> Analysis:
    """Fit every approach to a runs table (columns compute_budget, N, D, loss[, status, initial_loss]).

    Rows are put in a canonical order first (budget, N, D, then experiment id), so the
    answer, intervals included, does not depend on the order records were written in.
    `stored_samples` (the ``bootstrap_samples`` of a saved analysis) are reused instead of
    resampling again when they belong to exactly this table and these options.
    `flops_accounting="measured"`: the runs' D were planned by measured FLOPs per data
    unit; the cost c·N^b is fitted to the runs' own (N, D, C) and every D_opt and
    compute-optimal allocation spends C under it instead of 6·N·D.
    """
    if not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap: expected a non-negative integer, found {n_bootstrap!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a number in (0, 1), found {confidence!r}")
    if flops_accounting not in (FLOPS_6ND, FLOPS_MEASURED):
        raise ValueError(f"flops_accounting: expected {FLOPS_6ND!r} or {FLOPS_MEASURED!r}, found {flops_accounting!r}")
    opts = AnalysisOptions(exclude_outliers, n_bootstrap, seed, confidence, outlier_threshold, n_jobs,
                           flops_accounting)
    table = flag_basic_outliers(canonical_order(df))
    cost = SIX_ND
    if flops_accounting == FLOPS_MEASURED:
        if "compute_budget" not in table.columns:
            raise ValueError("flops_accounting: 'measured' needs each run's compute budget (column compute_budget)")
        cost = fit_cost_model(table["N"], table["D"], table["compute_budget"])
    key = samples_key(table, dataclasses.asdict(opts))
    notes: list[str] = []
    fit, boot, note = _approach_3(table, opts, stored_samples, key)
    if cost.max_rel_error > COST_FIT_WARN:
        notes.append(f"the measured cost per data unit is not a power law of N over these runs: {cost.describe()}; "
                     "D_opt and the Approach 3 allocation are off by up to that much")
    if note:
        notes.append(note)

    # ---- Approach 2: IsoFLOP parabolas --------------------------------------
    used = table[~table["outlier"]] if exclude_outliers else table[np.isfinite(table["loss"])]
    iso, iso_boot = None, None
    try:
        iso = fit_isoflop(used[~off_budget(used)], cost)
    except ValueError as exc:
        if fit is None:
            raise
        notes.append(f"Approach 2 not fitted: {exc}")
    if iso is not None:
        notes += iso.warnings
        fitted = used[~off_budget(used) & used["compute_budget"].isin([o.compute_budget for o in iso.optima])]
        if n_bootstrap:
            iso_boot = reuse_isoflop(stored_samples, key, n_resamples=n_bootstrap, seed=seed,
                                     budgets=np.unique(fitted["compute_budget"].to_numpy(float)))
            iso_boot = iso_boot or bootstrap_isoflop(fitted, n_bootstrap, seed)
    n_out = int(table["outlier"].sum())
    if n_out:
        notes.append(f"{n_out} run(s) flagged as outliers and {'excluded from' if exclude_outliers else 'kept in'} "
                     "the fits (see the outliers list)")
    analysis = Analysis(iso, table, opts, fit, note, boot, iso_boot, notes, samples_key=key, cost=cost)
    analysis.evidence = gather(analysis, used)
    found = evidence_findings(analysis) + failure_findings(table) + extra_findings(table)
    top = analysis.budgets[-1]
    for c in (top, 1000 * top):
        found += prediction_findings(analysis, analysis.predict_with, c,
                                     approach_estimates(analysis, analysis.predict_with, c))
    analysis.findings = sort_findings(found)
    return analysis


def extra_findings(table: pd.DataFrame) -> list[Finding]:
    """A note of how many runs sit on no IsoFLOP budget and what they are used for."""
    k = int(off_budget(table).sum())
    if not k:
        return []
    return [Finding("note", "extra_points", f"{k} run(s) on no IsoFLOP budget (extra branches) are fitted by Approach 3 "
                    "only; its bootstrap resamples them as one stratum, and no back-test trains on compute at or "
                    "above the budget it holds out", None, {"n_extra": k})]


def off_budget(table: pd.DataFrame) -> np.ndarray:
    """Rows marked as on no IsoFLOP budget (column ``extra``: a design's extra branches); Approach 2 leaves
    them out, Approach 3 fits them, the bootstrap pools them in one stratum."""
    if "extra" not in table.columns:
        return np.zeros(len(table), bool)
    return table["extra"].fillna(False).astype(bool).to_numpy()


def canonical_order(df: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by (compute_budget, N, D, experiment_id) where present; index reset."""
    keys = [c for c in ("compute_budget", "N", "D", "experiment_id") if c in df.columns]
    return df.sort_values(keys, kind="stable").reset_index(drop=True) if keys else df.reset_index(drop=True)


def _approach_3(table: pd.DataFrame, opts: AnalysisOptions, stored: Mapping[str, Any] | None = None,
                key: str = "") -> tuple[ParametricFit | None, BootstrapResult | None, str]:
    """The parametric fit and its bootstrap; residual outliers it finds are flagged in `table` too."""
    usable = table[~table["outlier"]]
    if len(usable) < MIN_POINTS_APPROACH_3:
        return None, None, (f"Approach 3 not fitted: {len(usable)} usable runs, at least {MIN_POINTS_APPROACH_3} "
                            "needed for 5 parameters")
    cols = [c for c in ("N", "D", "loss", "status", "initial_loss", "compute_budget") if c in table.columns]
    frame = table[cols].rename(columns={"compute_budget": "budget"})
    if "budget" in frame.columns:  # the strata its bootstrap resamples within, extra points pooled in one
        frame["budget"] = budget_strata(np.where(off_budget(table), -1.0, frame["budget"].to_numpy(float)),
                                        frame["N"].to_numpy(float))
    try:
        # failed runs have no loss to keep: exclude_outliers=False keeps every finished run
        fit = fit_parametric(frame, exclude_outliers=opts.exclude_outliers, outlier_threshold=opts.outlier_threshold,
                             exclude=None if opts.exclude_outliers else ~np.isfinite(frame["loss"].to_numpy(float)))
    except (ValueError, RuntimeError) as exc:
        return None, None, f"Approach 3 not fitted: {exc}"
    note = "" if fit.converged else f"Approach 3 did not converge ({fit.message}); predictions use Approach 2"
    if opts.exclude_outliers:
        for p in fit.excluded:  # residual outliers leave Approach 2 too
            if not table.at[p.index, "outlier"]:
                table.at[p.index, "outlier"] = True
                table.at[p.index, "outlier_reason"] = p.reason
    boot = None
    if opts.n_bootstrap:
        boot = reuse_parametric(stored, key, fit, n_resamples=opts.n_bootstrap, confidence=opts.confidence,
                                seed=opts.seed)
    if opts.n_bootstrap and boot is None:
        kept = frame.loc[~table["outlier"]] if opts.exclude_outliers else frame[np.isfinite(frame["loss"])]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            boot = bootstrap_parametric(kept, n_resamples=opts.n_bootstrap, seed=opts.seed,
                                        confidence=opts.confidence, n_jobs=opts.n_jobs, fit=fit,
                                        exclude_outliers=False,
                                        stratify_col="budget" if "budget" in kept.columns else None)
    return fit, boot, note


def approach_estimates(analysis: Analysis, approach: str, compute: float) -> dict[str, Any]:
    """N_opt, D_opt, loss, tokens/param at `compute` by one approach, with bootstrap intervals."""
    conf = analysis.options.confidence
    if approach == "approach_3":
        fit = analysis.parametric
        if fit is None:
            raise ValueError("approach: Approach 3 was not fitted for this sweep (" + analysis.parametric_note + ")")
        cost = analysis.cost
        n, d = fit.optimal_allocation(compute, cost)
        n, d = float(n), float(d)
        out: dict[str, Any] = {"optimal_params": n, "optimal_tokens": d,
                               "expected_loss": float(fit.predict_loss(n, d)),
                               "exponent_a": float(cost.parametric_exponent(fit.alpha, fit.beta))}
        b = analysis.bootstrap
        if b is not None and len(b.samples):
            n_s, d_s, l_s, _ = b.samples_at(compute, cost)[:, 0].T
            a_s = cost.parametric_exponent(b.samples[:, PARAM_NAMES.index("alpha")],
                                           b.samples[:, PARAM_NAMES.index("beta")])
            out.update(_cis(n_s, d_s, l_s, a_s, conf))
        if b is not None:
            out["resamples"] = (int(len(b.samples)) - b.n_not_converged, b.n_resamples)
    else:
        iso = analysis.isoflop
        if iso is None:
            raise ValueError("approach: Approach 2 was not fitted for these runs (no 2 budgets with 3 or more "
                             "model sizes each)")
        p = iso.predict(compute)
        out = {"optimal_params": p["optimal_params"], "optimal_tokens": p["optimal_tokens"],
               "expected_loss": p["expected_loss"], "exponent_a": iso.n_opt_fit.exponent_a}
        b2 = analysis.isoflop_bootstrap
        if b2 is not None:
            n_s = b2.n_opt_samples(compute)
            out.update(_cis(n_s, analysis.cost.units(compute, n_s), b2.loss_samples(compute), b2.n_exponent, conf))
            out["resamples"] = (b2.n_ok, b2.n_resamples)
    with np.errstate(all="ignore"):  # a degenerate fit's N of 0 gives inf, flagged by the findings, not a crash
        out["tokens_per_param"] = float(np.float64(out["optimal_tokens"]) / out["optimal_params"])
    for key in CI_KEYS:  # None: the analysis ran without resamples
        out.setdefault(key, None)
    out.setdefault("resamples", None)  # (successful refits, resamples drawn) behind the intervals
    return out


def optimum_curves(analysis: Analysis, approach: str, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """N_opt and loss at the optimum along `grid`: point estimates (2, G) and resamples (S, 2, G) or None."""
    grid = np.asarray(grid, dtype=float)
    if approach == "approach_3":
        fit, b = analysis.parametric, analysis.bootstrap
        n, _ = fit.optimal_allocation(grid, analysis.cost)
        point = np.vstack([n, fit.optimal_loss(grid, analysis.cost)])
        samples = None if b is None or not len(b.samples) else \
            np.moveaxis(b.samples_at(grid, analysis.cost)[:, :, [0, 2]], 2, 1)
        return point, samples
    iso, b2 = analysis.isoflop, analysis.isoflop_bootstrap
    if iso is None:
        raise ValueError("approach: Approach 2 was not fitted for these runs")
    point = np.vstack([iso.n_opt_fit(grid), iso.l_opt_fit(grid)])
    if b2 is None:
        return point, None
    with np.errstate(all="ignore"):
        n_s = np.exp(b2.n_log_k[:, None] + b2.n_exponent[:, None] * np.log(grid)[None, :])
        lp = b2.loss_params
        l_s = lp[:, 0, None] + lp[:, 1, None] * grid[None, :] ** (-lp[:, 2, None])
    return point, np.stack([n_s, l_s], axis=1)


def _cis(n_s: np.ndarray, d_s: np.ndarray, l_s: np.ndarray, a_s: np.ndarray, conf: float) -> dict[str, Any]:
    return {
        "optimal_params_ci": _percentile_ci(n_s, conf),
        "optimal_tokens_ci": _percentile_ci(d_s, conf),
        "expected_loss_ci": _percentile_ci(l_s, conf),
        "tokens_per_param_ci": _percentile_ci(d_s / n_s, conf),
        "exponent_a_ci": _percentile_ci(a_s, conf),
    }


__all__ = [
    "ANALYSIS_KIND", "ANALYSIS_SCHEMA", "Analysis", "AnalysisOptions", "BootstrapResult", "BudgetOptimum",
    "Evidence", "ExcludedPoint", "Finding", "IsoFLOPAnalysis", "IsoFLOPBootstrap", "LossLaw", "PARAM_NAMES", "ParametricFit",
    "PowerLaw", "TARGET_NAMES", "analyze", "approach_estimates", "bootstrap_indices", "bootstrap_parametric",
    "canonical_order", "fit_isoflop", "optimum_curves", "fit_parametric", "flag_basic_outliers", "flag_outliers", "load_chinchilla", "load_fit_data", "load_llama3",
]
