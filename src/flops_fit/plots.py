"""Figures: IsoFLOP curves, scaling laws, tokens per parameter.

Each function takes the measured table and the fitted analysis and returns a
matplotlib Figure; saving is the caller's job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from flops_fit.analysis import Analysis


def _budget_colors(budgets: list[float]) -> dict[float, tuple]:
    cmap = plt.get_cmap("viridis")
    n = max(1, len(budgets) - 1)
    return {b: cmap(i / n) for i, b in enumerate(sorted(budgets))}


def isoflop_curves(df: pd.DataFrame, analysis: "Analysis") -> Figure:
    """Loss vs N per budget with each fitted parabola and its vertex."""
    fig, ax = plt.subplots(figsize=(7, 5))
    iso = analysis.isoflop
    if "compute_budget" not in df:
        df = df.assign(compute_budget=6.0 * df["N"] * df["D"])
    from flops_fit.analysis import off_budget

    extra = off_budget(df)  # extra branches lie on no IsoFLOP curve: drawn apart, not as budgets of their own
    budgets = sorted(df.loc[~extra, "compute_budget"].unique())
    colors = _budget_colors(budgets)
    used = df[~df["outlier"]] if "outlier" in df else df
    for b in budgets:
        g = used[(used["compute_budget"] == b) & ~off_budget(used)].sort_values("N")
        ax.scatter(g["N"], g["loss"], color=colors[b], s=22, zorder=3, label=f"C={b:.1e}")
    if extra.any():
        g = used[off_budget(used)]
        ax.scatter(g["N"], g["loss"], color="grey", marker=".", s=18, zorder=2,
                   label=f"{len(g)} extra branches (Approach 3 only)")
    if "outlier" in df:
        out = df[df["outlier"] & np.isfinite(df["loss"])]
        if len(out):
            ax.scatter(out["N"], out["loss"], marker="x", color="red", s=40, zorder=4, label="outlier (excluded)")
    for o in (iso.optima if iso is not None else []):
        g = used[used["compute_budget"] == o.compute_budget]
        if o.parabola is not None and len(g):
            x = np.linspace(np.log(g["N"].min()), np.log(g["N"].max()), 100)
            ax.plot(np.exp(x), np.polyval(o.parabola, x), color=colors.get(o.compute_budget, "k"), lw=1.2)
        marker = "*" if o.method == "parabola" else "D"
        ax.scatter([o.n_opt], [o.loss_opt], marker=marker, s=140, color=colors.get(o.compute_budget, "k"),
                   edgecolor="black", zorder=5)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("final loss")
    ax.set_title("IsoFLOP curves  (★ parabola vertex, ◆ best sampled: not bracketed)", fontsize=10)
    if len(budgets) <= 12:
        ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def compute_label(analysis: "Analysis") -> str:
    """The compute axis says how the FLOPs were counted."""
    return "compute C (FLOPs, measured)" if analysis.cost.accounting == "measured" else "compute C (FLOPs)"


def scaling_laws(analysis: "Analysis") -> Figure:
    """N_opt, D_opt and L_opt against compute, with the fitted laws extrapolated; the budgets the
    back-test held out are circled, with the held-out predictions drawn as crosses."""
    iso = analysis.isoflop
    b = analysis.budgets
    grid = np.geomspace(b[0] / 3, b[-1] * 30, 100)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    labels = ("N_opt (parameters)", "D_opt (data units)", "loss at optimum")
    par, cost = analysis.parametric, analysis.cost
    held = {}
    if analysis.evidence is not None:
        for case in analysis.evidence.backtest:
            if case.held_out == (case.compute,):  # the one-budget-ahead refit
                held.setdefault(case.compute, {})[case.approach] = case
    for ax, label in zip(axes, labels):
        if iso is not None:
            c = np.array([o.compute_budget for o in iso.optima])
            y = {labels[0]: [o.n_opt for o in iso.optima], labels[1]: [o.d_opt for o in iso.optima],
                 labels[2]: [o.loss_opt for o in iso.optima]}[label]
            fit = {labels[0]: (iso.n_opt_fit(grid), f"N = {iso.n_opt_fit.coefficient_k:.3g}·C^"
                                                   f"{iso.n_opt_fit.exponent_a:.3f}"),
                   labels[1]: (iso.d_opt_fit(grid), f"D = {iso.d_opt_fit.coefficient_k:.3g}·C^"
                                                   f"{iso.d_opt_fit.exponent_a:.3f}"),
                   labels[2]: (iso.l_opt_fit(grid), f"L = {iso.l_opt_fit.l_inf:.3g} + "
                               f"{iso.l_opt_fit.coefficient_k:.3g}·C^-{iso.l_opt_fit.exponent_a:.3f}")}[label]
            ax.scatter(c, y, color="C0", zorder=3, label="IsoFLOP optima")
            ax.plot(grid, fit[0], color="C0", lw=1.5, label=f"Approach 2: {fit[1]}")
            for hc, cases in held.items():
                o = next(o for o in iso.optima if o.compute_budget == hc)
                yo = {labels[0]: o.n_opt, labels[1]: o.d_opt, labels[2]: o.loss_opt}[label]
                ax.scatter([hc], [yo], s=180, facecolor="none", edgecolor="black", zorder=4,
                           label="held out by the back-test")
                for ap, case in cases.items():
                    yp = {labels[0]: case.n_pred, labels[1]: float(cost.units(hc, case.n_pred)),
                          labels[2]: case.loss_pred}[label]
                    ax.scatter([hc], [yp], marker="x", s=60, color="C0" if ap == "approach_2" else "C3", zorder=5,
                               label=f"{'Approach 2' if ap == 'approach_2' else 'Approach 3'} back-test "
                                     f"(×{case.n_factor:.2f})")
        if par is not None:
            n3, d3 = (np.asarray(v) for v in par.optimal_allocation(grid, cost))
            y3 = {labels[0]: n3, labels[1]: d3, labels[2]: par.predict_loss(n3, d3)}[label]
            ax.plot(grid, y3, color="C3", lw=1.5, ls="--", label="Approach 3: parametric L(N, D)")
            band = _approach3_band(analysis, grid, label)
            if band is not None:
                conf = round(100 * analysis.options.confidence)
                ax.fill_between(grid, band[0], band[1], color="C3", alpha=0.15, lw=0,
                                label=f"Approach 3 {conf}% bootstrap band")
        ax.set_xscale("log")
        if label != labels[2]:
            ax.set_yscale("log")
        ax.set_xlabel(compute_label(analysis))
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    title = "Compute-optimal scaling laws"
    if analysis.evidence is not None:
        title += f"  (predictions: {'Approach 2' if analysis.predict_with == 'approach_2' else 'Approach 3'})"
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _approach3_band(analysis: "Analysis", grid: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Pointwise percentile band of N_opt, D_opt or L_opt over the Approach 3 bootstrap refits."""
    b = analysis.bootstrap
    if b is None or len(b.samples) < 2:
        return None
    k = {"N_opt (parameters)": 0, "D_opt (data units)": 1, "loss at optimum": 2}[label]  # TARGET_NAMES order
    y = b.samples_at(grid, analysis.cost)[:, :, k]
    q = 50 * (1 - analysis.options.confidence)
    lo, hi = np.nanpercentile(y, [q, 100 - q], axis=0)
    return lo, hi


def tokens_per_param(analysis: "Analysis") -> Figure:
    """D_opt/N_opt against compute (Chinchilla's ~20 for reference)."""
    iso = analysis.isoflop
    b = analysis.budgets
    grid = np.geomspace(b[0] / 3, b[-1] * 30, 100)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if iso is not None:
        c = np.array([o.compute_budget for o in iso.optima])
        ax.scatter(c, [o.tokens_per_param for o in iso.optima], color="C0", zorder=3, label="IsoFLOP optima")
        n = iso.n_opt_fit(grid)
        ax.plot(grid, analysis.cost.units(grid, n) / n, color="C0", label="Approach 2 fit")
    if analysis.parametric is not None:
        n3, d3 = (np.asarray(v) for v in analysis.parametric.optimal_allocation(grid, analysis.cost))
        ax.plot(grid, d3 / n3, color="C3", ls="--", label="Approach 3 fit")
    ax.axhline(20, color="grey", ls=":", label="Chinchilla ≈ 20")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(compute_label(analysis))
    ax.set_ylabel("tokens per parameter D/N")
    ax.set_title("Compute-optimal tokens per parameter")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


PLOT_FILES = {
    "isoflops_curves.png": "isoflop",
    "scaling_laws.png": "laws",
    "tokens_per_param.png": "ratio",
}
