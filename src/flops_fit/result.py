"""Result: the answer of a sweep, rebuilt from its files alone when needed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from flops_fit import io
from flops_fit.analysis import ANALYSIS_KIND, ANALYSIS_SCHEMA, Analysis, IsoFLOPAnalysis, analyze
from flops_fit.planning import SweepPlan
from flops_fit.training.store import ResultsStore, RunRecord, records_to_dataframe

SWEEP_FILE = "sweep.json"
RESULTS_FILE = "results.json"
ANALYSIS_FILE = "analysis/scaling_laws.json"
PLOTS_DIR = "plots"


def _check_compute(value: Any, name: str = "compute_budget") -> float:
    try:
        c = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number of FLOPs, found {value!r}") from None
    if not math.isfinite(c) or c <= 0:
        raise ValueError(f"{name}: expected a positive finite number of FLOPs, found {value!r}")
    return c


class Result:
    """Compute-optimal allocation fitted to a sweep: tables, predictions and plots.

    Attributes: `analysis` (fits), `records` (runs), `plan` (or None), `output_dir`.
    """

    def __init__(
        self,
        analysis: Analysis,
        records: list[RunRecord],
        plan: SweepPlan | None = None,
        output_dir: str | Path | None = None,
        plan_fingerprint: str | None = None,
    ) -> None:
        self.analysis = analysis
        self.records = records
        self.plan = plan
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.plan_fingerprint = plan_fingerprint or (plan.fingerprint() if plan else None)

    # ---- construction -------------------------------------------------------
    @classmethod
    def from_records(
        cls,
        records: list[RunRecord],
        plan: SweepPlan | None = None,
        output_dir: str | Path | None = None,
        *,
        exclude_outliers: bool = True,
        plan_fingerprint: str | None = None,
    ) -> "Result":
        analysis = analyze(records_to_dataframe(records), exclude_outliers=exclude_outliers)
        return cls(analysis, records, plan, output_dir, plan_fingerprint)

    @classmethod
    def load(cls, output_dir: str | Path, *, reanalyze: bool = False) -> "Result":
        """Rebuild from sweep.json (optional), results.json and analysis/scaling_laws.json."""
        out = Path(output_dir)
        if not out.is_dir():
            raise FileNotFoundError(f"output_dir: {out} is not a directory")
        plan = SweepPlan.load(out / SWEEP_FILE) if (out / SWEEP_FILE).exists() else None
        fingerprint, records = ResultsStore.read(out / RESULTS_FILE)
        if plan is not None and plan.fingerprint() != fingerprint:
            raise ValueError(
                f"{out / RESULTS_FILE}: field 'plan_fingerprint' is {fingerprint}, but {out / SWEEP_FILE} "
                f"describes plan {plan.fingerprint()}; the two files come from different sweeps"
            )
        result = cls.from_records(records, plan, out, plan_fingerprint=fingerprint)
        path = out / ANALYSIS_FILE
        if path.exists() and not reanalyze:
            data = io.read_json(path)
            io.check_header(data, ANALYSIS_KIND, ANALYSIS_SCHEMA, str(path))
            if data.get("plan_fingerprint") == fingerprint:
                result.analysis.isoflop = IsoFLOPAnalysis.from_dict(data, str(path))
        return result

    def save(self) -> Path:
        """Write analysis/scaling_laws.json (atomically)."""
        if self.output_dir is None:
            raise ValueError("output_dir: this Result has no output directory to save into")
        path = self.output_dir / ANALYSIS_FILE
        io.atomic_write_json(path, self.to_dict())
        return path

    def to_dict(self) -> dict[str, Any]:
        a = self.analysis
        flops_methods = sorted({r.flops_method for r in self.records})
        return {
            "schema": ANALYSIS_SCHEMA,
            "kind": ANALYSIS_KIND,
            "plan_fingerprint": self.plan_fingerprint,
            "flops_accounting": flops_methods[0] if len(flops_methods) == 1 else flops_methods,
            **a.isoflop.to_dict(),
            "approach_3": a.parametric.to_dict() if a.parametric is not None else None,
            "predict_with": self.predict_with,
            "outliers": [
                {"experiment_id": r.experiment_id, "reason": r.outlier_reason}
                for r in a.excluded.itertuples()
            ],
            "warnings": list(a.warnings),
            "n_runs": len(self.records),
        }

    # ---- answers ----------------------------------------------------------
    @property
    def predict_with(self) -> str:
        return "approach_2"

    def predict(self, compute_budget: float) -> dict[str, float]:
        """Compute-optimal N, D (with 6·N·D = C exactly), loss and tokens per parameter at C."""
        c = _check_compute(compute_budget)
        return self.analysis.isoflop.predict(c)

    def chinchilla_dataframe(self, compute_budgets: Sequence[float] | None = None) -> pd.DataFrame:
        """Budget, N_opt, D_opt, D/N and predicted loss; defaults to the sweep's budgets and 3 decades beyond."""
        if compute_budgets is None:
            swept = sorted({o.compute_budget for o in self.analysis.isoflop.optima})
            compute_budgets = swept + [swept[-1] * 10**k for k in (1, 2, 3)]
            measured = set(swept)
        else:
            if isinstance(compute_budgets, (int, float)):
                compute_budgets = [compute_budgets]
            compute_budgets = [_check_compute(c, f"compute_budgets[{i}]") for i, c in enumerate(compute_budgets)]
            measured = {o.compute_budget for o in self.analysis.isoflop.optima}
        rows = []
        lo, hi = min(measured), max(measured)
        for c in compute_budgets:
            p = self.predict(c)
            rows.append(
                {
                    "compute_budget": c,
                    "N_opt": p["optimal_params"],
                    "D_opt": p["optimal_tokens"],
                    "tokens_per_param": p["tokens_per_param"],
                    "loss": p["expected_loss"],
                    "extrapolated": not (lo <= c <= hi),
                }
            )
        return pd.DataFrame(rows)

    def chinchilla_table(self, compute_budgets: Sequence[float] | None = None) -> str:
        """The Chinchilla-style table as markdown."""
        df = self.chinchilla_dataframe(compute_budgets)
        header = "| compute (FLOPs) | N_opt (params) | D_opt (tokens) | D/N | predicted loss | |"
        lines = [header, "|---:|---:|---:|---:|---:|:--|"]
        for r in df.itertuples():
            lines.append(
                f"| {r.compute_budget:.2e} | {_human(r.N_opt)} | {_human(r.D_opt)} | "
                f"{r.tokens_per_param:.1f} | {r.loss:.4f} | {'extrapolated' if r.extrapolated else ''} |"
            )
        lines.append(f"\nPredictions by {self.predict_with.replace('_', ' ')}; 6·N·D = C in every row.")
        return "\n".join(lines)

    def to_dataframe(self) -> pd.DataFrame:
        """Every run with its outlier flag and reason."""
        return self.analysis.table.copy()

    def summary(self) -> str:
        a = self.analysis.isoflop
        lines = [
            f"Approach 2 (IsoFLOP parabolas, {len(a.optima)} budgets): N_opt ∝ C^{a.n_opt_fit.exponent_a:.3f} "
            f"(R²={a.n_opt_fit.r_squared:.3f}), D_opt ∝ C^{a.d_opt_fit.exponent_a:.3f}, "
            f"tokens/param ≈ {a.optimal_ratio:.1f}",
        ]
        lines += [f"warning: {w}" for w in self.analysis.warnings]
        return "\n".join(lines)

    def __repr__(self) -> str:
        a = self.analysis.isoflop
        return f"Result(runs={len(self.records)}, budgets={len(a.optima)}, a={a.n_opt_fit.exponent_a:.3f})"

    # ---- figures ----------------------------------------------------------
    def plot(self, show: bool = False, save: bool = True) -> list:
        """IsoFLOP curves, scaling laws and tokens-per-parameter; saved under output_dir/plots/."""
        import matplotlib.pyplot as plt

        from flops_fit import plots

        figs = {
            "isoflops_curves.png": plots.isoflop_curves(self.analysis.table, self.analysis),
            "scaling_laws.png": plots.scaling_laws(self.analysis),
            "tokens_per_param.png": plots.tokens_per_param(self.analysis),
        }
        if save and self.output_dir is not None:
            d = self.output_dir / PLOTS_DIR
            d.mkdir(parents=True, exist_ok=True)
            for name, fig in figs.items():
                tmp = d / f".{name}.tmp.png"
                fig.savefig(tmp, dpi=120)
                tmp.replace(d / name)
        if show:
            plt.show()
        return list(figs.values())


def _human(x: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"
