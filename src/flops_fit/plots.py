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
    budgets = sorted(df["compute_budget"].unique())
    colors = _budget_colors(budgets)
    used = df[~df["outlier"]] if "outlier" in df else df
    for b in budgets:
        g = used[used["compute_budget"] == b].sort_values("N")
        ax.scatter(g["N"], g["loss"], color=colors[b], s=22, zorder=3, label=f"C={b:.1e}")
    if "outlier" in df:
        out = df[df["outlier"] & np.isfinite(df["loss"])]
        if len(out):
            ax.scatter(out["N"], out["loss"], marker="x", color="red", s=40, zorder=4, label="outlier (excluded)")
    for o in iso.optima:
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
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def scaling_laws(analysis: "Analysis") -> Figure:
    """N_opt, D_opt and L_opt against compute, with the fitted laws extrapolated."""
    iso = analysis.isoflop
    c = np.array([o.compute_budget for o in iso.optima])
    grid = np.geomspace(c.min() / 3, c.max() * 30, 100)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    pts = {
        "N_opt (parameters)": (np.array([o.n_opt for o in iso.optima]), iso.n_opt_fit(grid),
                               f"N = {iso.n_opt_fit.coefficient_k:.3g}·C^{iso.n_opt_fit.exponent_a:.3f}"),
        "D_opt (data units)": (np.array([o.d_opt for o in iso.optima]), iso.d_opt_fit(grid),
                               f"D = {iso.d_opt_fit.coefficient_k:.3g}·C^{iso.d_opt_fit.exponent_a:.3f}"),
        "loss at optimum": (np.array([o.loss_opt for o in iso.optima]), iso.l_opt_fit(grid),
                            f"L = {iso.l_opt_fit.l_inf:.3g} + {iso.l_opt_fit.coefficient_k:.3g}·"
                            f"C^-{iso.l_opt_fit.exponent_a:.3f}"),
    }
    par = analysis.parametric
    for ax, (label, (y, fit, eq)) in zip(axes, pts.items()):
        ax.scatter(c, y, color="C0", zorder=3, label="IsoFLOP optima")
        ax.plot(grid, fit, color="C0", lw=1.5, label=f"Approach 2: {eq}")
        if par is not None:
            n3 = np.array([par.optimal_allocation(g)[0] for g in grid])
            y3 = {"N_opt (parameters)": n3, "D_opt (data units)": grid / (6 * n3),
                  "loss at optimum": par.predict_loss(n3, grid / (6 * n3))}[label]
            ax.plot(grid, y3, color="C3", lw=1.5, ls="--", label="Approach 3: parametric L(N, D)")
            band = _approach3_band(analysis, grid, label)
            if band is not None:
                conf = round(100 * analysis.options.confidence)
                ax.fill_between(grid, band[0], band[1], color="C3", alpha=0.15, lw=0,
                                label=f"Approach 3 {conf}% bootstrap band")
        ax.set_xscale("log")
        if label != "loss at optimum":
            ax.set_yscale("log")
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("Compute-optimal scaling laws")
    fig.tight_layout()
    return fig


def _approach3_band(analysis: "Analysis", grid: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Pointwise percentile band of N_opt, D_opt or L_opt over the Approach 3 bootstrap refits."""
    b = analysis.bootstrap
    if b is None or len(b.samples) < 2:
        return None
    k = {"N_opt (parameters)": 0, "D_opt (data units)": 1, "loss at optimum": 2}[label]  # TARGET_NAMES order
    y = b.samples_at(grid)[:, :, k]
    q = 50 * (1 - analysis.options.confidence)
    lo, hi = np.nanpercentile(y, [q, 100 - q], axis=0)
    return lo, hi


def tokens_per_param(analysis: "Analysis") -> Figure:
    """D_opt/N_opt against compute (Chinchilla's ~20 for reference)."""
    iso = analysis.isoflop
    c = np.array([o.compute_budget for o in iso.optima])
    ratio = np.array([o.tokens_per_param for o in iso.optima])
    grid = np.geomspace(c.min() / 3, c.max() * 30, 100)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(c, ratio, color="C0", zorder=3, label="IsoFLOP optima")
    n = iso.n_opt_fit(grid)
    ax.plot(grid, grid / (6 * n * n), color="C0", label="Approach 2 fit")
    if analysis.parametric is not None:
        n3 = np.array([analysis.parametric.optimal_allocation(g)[0] for g in grid])
        ax.plot(grid, grid / (6 * n3 * n3), color="C3", ls="--", label="Approach 3 fit")
    ax.axhline(20, color="grey", ls=":", label="Chinchilla ≈ 20")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute C (FLOPs)")
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
