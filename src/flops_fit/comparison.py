"""Several architectures' scaling laws side by side."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flops_fit import io
from flops_fit.result import Result


@dataclass
class Comparison:
    """One Result per architecture, compared at common compute budgets."""

    results: dict[str, Result]
    output_dir: Path | None = None

    def to_dataframe(self, target_compute: float = 1e21) -> pd.DataFrame:
        """Exponents and the compute-optimal allocation of each architecture at `target_compute`."""
        rows = []
        for name, res in self.results.items():
            p = res.predict(target_compute)
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
                if p.get(key) is not None:
                    row[key] = p[key]
            rows.append(row)
        df = pd.DataFrame(rows).set_index("model")
        df.attrs["target_compute"] = target_compute
        return df

    def plot(self, save: bool = True):
        """N_opt(C) and L_opt(C) of every architecture on shared axes."""
        import matplotlib.pyplot as plt

        fig, (ax_n, ax_l) = plt.subplots(1, 2, figsize=(12, 4.5))
        for i, (name, res) in enumerate(self.results.items()):
            iso = res.analysis.isoflop
            c = np.array([o.compute_budget for o in iso.optima])
            grid = np.geomspace(c.min() / 3, c.max() * 30, 100)
            color = f"C{i}"
            preds = [res.predict(g) for g in grid]  # one prediction (with its intervals) per point, for both axes
            ax_n.scatter(c, [o.n_opt for o in iso.optima], color=color)
            ax_n.plot(grid, [p["optimal_params"] for p in preds], color=color, label=name)
            ax_l.scatter(c, [o.loss_opt for o in iso.optima], color=color)
            ax_l.plot(grid, [p["expected_loss"] for p in preds], color=color, label=name)
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
