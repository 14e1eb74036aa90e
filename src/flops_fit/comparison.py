"""Several architectures' scaling laws side by side: loss at equal compute, the compute one needs
to match another, and where one overtakes the other."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flops_fit import io
from flops_fit.analysis import optimum_curves
from flops_fit.analysis.bootstrap import percentile_interval
from flops_fit.result import Result
from flops_fit.validation import check_flops

#: Compute range searched for matches and crossovers: the sweeps' own range widened by this factor each way.
SEARCH_WIDENING = 1000.0


@dataclass
class Comparison:
    """One Result per architecture, compared at common compute budgets.

    Every number is at compute inside (by default) the sweeps' own range, from each
    sweep's headline approach, with its bootstrap interval.
    """

    results: dict[str, Result]
    output_dir: Path | None = None

    @property
    def reference(self) -> str:
        return next(iter(self.results))

    def default_compute(self) -> float:
        """The largest compute every sweep measured: an answer inside all their data."""
        return min(res.analysis.budgets[-1] for res in self.results.values())

    def _range(self) -> tuple[float, float]:
        lo = max(res.analysis.budgets[0] for res in self.results.values())
        hi = min(res.analysis.budgets[-1] for res in self.results.values())
        return lo, hi

    def _curves(self, name: str, grid: np.ndarray):
        res = self.results[name]
        return optimum_curves(res.analysis, res.predict_with, grid)

    def effective_compute(self, name: str, compute: float, reference: str | None = None) -> dict:
        """How much compute `name` needs to reach the loss `reference` reaches at `compute`.

        Returns the multiplier (C_name / compute) with a bootstrap interval (resample i of
        one sweep paired with resample i of the other; they are independent), or None
        when no compute within the search range reaches that loss.
        """
        ref = self.reference if reference is None else reference
        lo, hi = self._range()
        grid = np.geomspace(lo / SEARCH_WIDENING, hi * SEARCH_WIDENING, 600)
        (p_ref, s_ref), (p_b, s_b) = self._curves(ref, np.array([compute])), self._curves(name, grid)
        point = _match(grid, p_b[1], float(p_ref[1, 0])) / compute
        ci = None
        if s_ref is not None and s_b is not None:
            k = min(len(s_ref), len(s_b))
            m = np.array([_match(grid, s_b[i, 1], float(s_ref[i, 1, 0])) for i in range(k)]) / compute
            ci = percentile_interval(m, self.results[ref].analysis.options.confidence)
            if not all(math.isfinite(v) for v in ci):
                ci = None
        return {"multiplier": point, "multiplier_ci": ci}

    def crossover(self, name: str, reference: str | None = None) -> float | None:
        """The compute where `name`'s optimal loss crosses the reference's, searched over the sweeps'
        range widened 1000× each way; None when the curves do not cross there."""
        ref = self.reference if reference is None else reference
        lo, hi = self._range()
        grid = np.geomspace(lo / SEARCH_WIDENING, hi * SEARCH_WIDENING, 600)
        d = self._curves(name, grid)[0][1] - self._curves(ref, grid)[0][1]
        flips = np.flatnonzero(np.sign(d[:-1]) * np.sign(d[1:]) < 0)
        if not flips.size:
            return None
        i = int(flips[0])
        t = d[i] / (d[i] - d[i + 1])  # linear in log C between the two grid points
        return float(np.exp(np.log(grid[i]) + t * (np.log(grid[i + 1]) - np.log(grid[i]))))

    def to_dataframe(self, target_compute: float | None = None) -> pd.DataFrame:
        """Exponent, allocation and loss of each architecture at one compute (default: inside every
        sweep's range), with the compute multiplier against the first architecture and the crossover."""
        c = self.default_compute() if target_compute is None else check_flops(target_compute, "target_compute")
        rows = []
        for name, res in self.results.items():
            p = res.predict(c)
            row = {
                "model": name,
                "approach": p["approach"],
                "a (N_opt ∝ C^a)": p["exponent_a"],
                "b (D_opt ∝ C^b)": 1.0 - p["exponent_a"],
                "N_opt": p["optimal_params"],
                "D_opt": p["optimal_tokens"],
                "tokens_per_param": p["tokens_per_param"],
                "loss": p["expected_loss"],
            }
            for key in ("exponent_a_ci", "optimal_params_ci", "expected_loss_ci"):
                row[key] = p.get(key)
            eff = self.effective_compute(name, c) if name != self.reference else {"multiplier": 1.0,
                                                                                   "multiplier_ci": None}
            row["compute_multiplier"], row["compute_multiplier_ci"] = eff["multiplier"], eff["multiplier_ci"]
            row["crossover_compute"] = self.crossover(name) if name != self.reference else None
            rows.append(row)
        df = pd.DataFrame(rows).set_index("model")
        df.attrs["target_compute"] = c
        df.attrs["reference"] = self.reference
        return df

    def summary(self, target_compute: float | None = None) -> str:
        """In words: each architecture's loss at equal compute, the compute it needs to match the first
        one, and where the two cross."""
        df = self.to_dataframe(target_compute)
        c, ref = df.attrs["target_compute"], df.attrs["reference"]
        lo, hi = self._range()
        lines = [f"At C={c:.3g} FLOPs (inside every sweep's range {lo:.3g}-{hi:.3g}):"]
        for name, r in df.iterrows():
            ci = r["expected_loss_ci"]
            lines.append(f"  {name}: loss {r['loss']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
                         + f" at N_opt={r['N_opt']:.3g} ({r['approach']})")
        for name, r in df.iterrows():
            if name == ref:
                continue
            m, ci = r["compute_multiplier"], r["compute_multiplier_ci"]
            if math.isfinite(m):
                lines.append(f"{name} needs {m:.2f}×" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
                             + f" the compute of {ref} for the same loss")
            else:
                lines.append(f"{name} does not reach {ref}'s loss at C={c:.3g} within "
                             f"{SEARCH_WIDENING:.0f}× the swept compute")
            x = r["crossover_compute"]
            if x is None or not math.isfinite(x):
                lines.append(f"  no crossover with {ref} within {SEARCH_WIDENING:.0f}× of the swept compute")
            else:
                where = "inside the data" if lo <= x <= hi else "outside the data (extrapolated)"
                lines.append(f"  crossover with {ref} at C={x:.3g} FLOPs, {where}")
        return "\n".join(lines)

    def plot(self, save: bool = True):
        """N_opt(C) and L_opt(C) of every architecture on shared axes."""
        import matplotlib.pyplot as plt

        fig, (ax_n, ax_l) = plt.subplots(1, 2, figsize=(12, 4.5))
        for i, (name, res) in enumerate(self.results.items()):
            b = res.analysis.budgets
            grid = np.geomspace(b[0] / 3, b[-1] * 30, 100)
            color = f"C{i}"
            (n, loss), _ = optimum_curves(res.analysis, res.predict_with, grid)
            iso = res.analysis.isoflop
            if iso is not None:
                c = np.array([o.compute_budget for o in iso.optima])
                ax_n.scatter(c, [o.n_opt for o in iso.optima], color=color)
                ax_l.scatter(c, [o.loss_opt for o in iso.optima], color=color)
            ax_n.plot(grid, n, color=color, label=name)
            ax_l.plot(grid, loss, color=color, label=name)
        for ax, label in ((ax_n, "N_opt (parameters)"), (ax_l, "loss at optimum")):
            ax.set_xscale("log")
            ax.set_xlabel("compute C (FLOPs)")
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
        ax_n.set_yscale("log")
        fig.suptitle("Scaling laws by architecture")
        fig.tight_layout()
        if save and self.output_dir is not None:
            with io.atomic_open(self.output_dir / "comparison.png", "wb") as fh:
                fig.savefig(fh, dpi=120, format="png")
        return fig


def _match(grid: np.ndarray, loss: np.ndarray, target: float) -> float:
    """The first compute on `grid` where the (decreasing) `loss` reaches `target`, interpolated in log C;
    inf when it never does, and the grid's start when it already does there."""
    below = np.flatnonzero(np.isfinite(loss) & (loss <= target))
    if not below.size or not math.isfinite(target):
        return math.inf
    j = int(below[0])
    if j == 0:
        return float(grid[0])
    l0, l1 = loss[j - 1], loss[j]
    t = (l0 - target) / (l0 - l1) if l0 != l1 else 0.0
    return float(np.exp(np.log(grid[j - 1]) + t * (np.log(grid[j]) - np.log(grid[j - 1]))))
