"""Scaling-law analysis: Approach 2 (IsoFLOP parabolas), Approach 3 (parametric L(N, D)),
bootstrap intervals and outlier flags. Pure computation: no files, no config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flops_fit.analysis.isoflop import BudgetOptimum, IsoFLOPAnalysis, LossLaw, PowerLaw, fit_isoflop

ANALYSIS_SCHEMA = 1
ANALYSIS_KIND = "flops-fit/scaling-laws"


@dataclass
class Analysis:
    """Everything the fits say about one sweep."""

    isoflop: IsoFLOPAnalysis
    table: pd.DataFrame  # the runs, with outlier / outlier_reason columns
    parametric: Any = None  # ParametricFit (Approach 3) when available
    warnings: list[str] = field(default_factory=list)

    @property
    def excluded(self) -> pd.DataFrame:
        return self.table[self.table["outlier"]]


def flag_basic_outliers(df: pd.DataFrame) -> pd.DataFrame:
    """Runs that cannot enter a fit: failed, diverged, non-finite, or worse than their initial loss."""
    out = df.copy()
    reasons: list[str] = []
    for _, r in out.iterrows():
        if r.get("status", "completed") != "completed":
            reasons.append(f"status {r['status']}" + (f": {r['error']}" if r.get("error") else ""))
        elif not np.isfinite(r["loss"]):
            reasons.append("non-finite loss")
        elif np.isfinite(r.get("initial_loss", np.nan)) and r["loss"] >= r["initial_loss"]:
            reasons.append(f"final loss {r['loss']:.4g} not below initial loss {r['initial_loss']:.4g}")
        else:
            reasons.append("")
    out["outlier_reason"] = reasons
    out["outlier"] = out["outlier_reason"] != ""
    return out


def analyze(df: pd.DataFrame, *, exclude_outliers: bool = True) -> Analysis:
    """Fit every approach to a runs table (columns compute_budget, N, D, loss[, status, initial_loss])."""
    table = flag_basic_outliers(df)
    usable = table[~table["outlier"]] if exclude_outliers else table[np.isfinite(table["loss"])]
    iso = fit_isoflop(usable)
    notes = list(iso.warnings)
    n_out = int(table["outlier"].sum())
    if n_out:
        notes.append(f"{n_out} run(s) flagged as outliers and {'excluded' if exclude_outliers else 'kept'}")
    return Analysis(isoflop=iso, table=table, warnings=notes)


__all__ = [
    "ANALYSIS_KIND", "ANALYSIS_SCHEMA", "Analysis", "BudgetOptimum", "IsoFLOPAnalysis", "LossLaw",
    "PowerLaw", "analyze", "fit_isoflop", "flag_basic_outliers",
]
