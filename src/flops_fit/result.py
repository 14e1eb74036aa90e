"""Result: the answer of a sweep, rebuilt from its files alone when needed."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from flops_fit import io
from flops_fit.analysis import (
    CONFIDENCE,
    N_BOOTSTRAP,
    ANALYSIS_KIND,
    ANALYSIS_SCHEMA,
    PARAM_NAMES,
    Analysis,
    analyze,
    approach_estimates,
)
from flops_fit.analysis.evidence import (
    MAX_EXTRAPOLATION,
    not_identified,
    prediction_findings,
    resample_counts,
    sort_findings,
)
from flops_fit.flops import FLOPS_6ND
from flops_fit.planning import SweepPlan
from flops_fit.training.store import (
    ResultsStore,
    RunRecord,
    check_against_plan,
    records_to_dataframe,
)

from flops_fit.layout import ANALYSIS_FILE, PLOTS_DIR, RESULTS_FILE, SWEEP_FILE  # noqa: F401  (re-exported)
from flops_fit.validation import check_flops
APPROACHES = ("approach_2", "approach_3")
APPROACH_LABELS = {
    "approach_2": "Approach 2 (IsoFLOP parabolas)",
    "approach_3": "Approach 3 (parametric L(N, D) fit)",
}


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
        n_bootstrap: int = N_BOOTSTRAP,
        seed: int = 0,
        confidence: float = CONFIDENCE,
        plan_fingerprint: str | None = None,
        stored_samples: dict[str, Any] | None = None,
    ) -> "Result":
        """Fit every approach (with `n_bootstrap` seeded resamples for the intervals) to finished runs;
        `stored_samples` of an earlier save of the same runs and options are reused, not redrawn."""
        check_analysable([r for r in records if not r.details.get("extra")])  # extra branches: on no budget
        # the plan says how its D were planned (measured FLOPs per unit, or 6·N); records alone: 6·N·D
        accounting = plan.flops_accounting if plan is not None else FLOPS_6ND
        analysis = analyze(records_to_dataframe(records), exclude_outliers=exclude_outliers,
                           n_bootstrap=n_bootstrap, seed=seed, confidence=confidence, stored_samples=stored_samples,
                           flops_accounting=accounting)
        return cls(analysis, records, plan, output_dir, plan_fingerprint)

    @classmethod
    def from_table(
        cls,
        table: pd.DataFrame,
        notes: Sequence[str] = (),
        output_dir: str | Path | None = None,
        **options: Any,
    ) -> "Result":
        """Fit every approach to a runs table (from `analysis.data_io.runs_frame`); `notes` lead the warnings."""
        analysis = analyze(table, **options)
        analysis.warnings[:0] = list(notes)
        return cls(analysis, [], None, output_dir)

    @classmethod
    def load(cls, output_dir: str | Path, *, reanalyze: bool = False, **options: Any) -> "Result":
        """Rebuild from sweep.json (optional) and results.json.

        The point fits are recomputed with the options stored in analysis/scaling_laws.json
        (seeded, so the numbers are the same), and its bootstrap samples are reused when they
        belong to exactly these runs and options (else they are drawn again); `reanalyze=True`
        ignores what is stored, and keyword `options` (exclude_outliers, n_bootstrap, seed,
        confidence) override it.
        """
        out = Path(output_dir)
        if not out.is_dir():
            raise FileNotFoundError(f"output_dir: {out} is not a directory")
        plan = SweepPlan.load(out / SWEEP_FILE) if (out / SWEEP_FILE).exists() else None
        fingerprint, records = read_results(out, plan)
        allowed = {"exclude_outliers", "n_bootstrap", "seed", "confidence"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise TypeError(f"Result.load: unexpected option(s) {unknown}; expected some of {sorted(allowed)}")
        stored: dict[str, Any] = {}
        samples = None
        path = out / ANALYSIS_FILE
        if path.exists() and not reanalyze:
            data = io.read_json(path)
            io.check_header(data, ANALYSIS_KIND, ANALYSIS_SCHEMA, str(path))
            if data.get("plan_fingerprint") == fingerprint:
                stored = {k: v for k, v in (data.get("analysis_options") or {}).items() if k in allowed}
                samples = data.get("bootstrap_samples")
        return cls.from_records(records, plan, out, plan_fingerprint=fingerprint, stored_samples=samples,
                                **{**stored, **options})

    def save(self) -> Path:
        """Write analysis/scaling_laws.json (atomically)."""
        if self.output_dir is None:
            raise ValueError("output_dir: this Result has no output directory to save into")
        path = self.output_dir / ANALYSIS_FILE
        io.atomic_write_json(path, self.to_dict())
        return path

    def to_dict(self) -> dict[str, Any]:
        a = self.analysis
        # a sweep's records say how they counted; a user's table gives C itself (or N and D, then C = 6ND)
        flops_methods = sorted({r.flops_method for r in self.records}) or ["as given by the table"]
        opts = dataclasses.asdict(a.options)
        opts.pop("n_jobs", None)
        return {
            "schema": ANALYSIS_SCHEMA,
            "kind": ANALYSIS_KIND,
            "plan_fingerprint": self.plan_fingerprint,
            "flops_accounting": flops_methods[0] if len(flops_methods) == 1 else flops_methods,
            "cost_model": a.cost.to_dict(),
            "param_count": self.param_count,
            "analysis_options": opts,
            "predict_with": self.predict_with,
            "predict_with_reason": a.evidence.reason if a.evidence is not None else "",
            "findings": [f.to_dict() for f in a.findings],
            "evidence": a.evidence.to_dict() if a.evidence is not None else None,
            "not_identified": not_identified(a),
            **(a.isoflop.to_dict() if a.isoflop is not None else {"approach_2": None}),
            "approach_2_bootstrap": a.isoflop_bootstrap.to_dict() if a.isoflop_bootstrap is not None else None,
            "approach_3": a.parametric.to_dict() if a.parametric is not None else None,
            "approach_3_note": a.parametric_note,
            "approach_3_bootstrap": a.bootstrap.to_dict() if a.bootstrap is not None else None,
            "table": self.chinchilla_dataframe().to_dict(orient="records"),
            "outliers": [{"experiment_id": run, "reason": why} for run, why in self._outliers()],
            "warnings": list(a.warnings),
            "n_runs": len(self.records) or len(a.table),
            "bootstrap_samples": a.samples_dict(),
        }

    def _outliers(self) -> list[tuple[str, str]]:
        """(run label, reason) of every excluded run; the row number when the table has no experiment ids."""
        ex = self.analysis.excluded
        ids = ex["experiment_id"] if "experiment_id" in ex else pd.Series([f"row {i}" for i in ex.index], ex.index)
        return [(str(i), str(r)) for i, r in zip(ids, ex["outlier_reason"])]

    @property
    def param_count(self) -> str:
        """What N counts: "all" parameters or "non_embedding" (from the plan; a table's N is as given)."""
        return self.plan.settings.param_count if self.plan is not None else "all"

    # ---- answers ----------------------------------------------------------
    @property
    def predict_with(self) -> str:
        """"approach_3" (parametric L(N, D)) when it converged, else "approach_2" (IsoFLOP parabolas)."""
        return self.analysis.predict_with

    def predict(self, compute_budget: float, approach: str | None = None) -> dict[str, Any]:
        """Compute-optimal N, D (spending C exactly: 6·N·D = C, or the measured cost of a sweep planned by
        measured FLOPs), loss and tokens per parameter at C.

        Each value has a bootstrap percentile interval under the same key plus
        "_ci" (None when the analysis ran without resamples). `approach`:
        "approach_2" or "approach_3"; default `predict_with`. "findings" lists what
        the runs cannot vouch for at this C (approaches disagreeing, an interval too
        wide to act on, a size far outside the sweep), most severe first; "resamples"
        is (successful refits, resamples drawn) behind the intervals.
        """
        c = check_flops(compute_budget, "compute_budget")
        approach = self.predict_with if approach is None else approach
        if approach not in APPROACHES:
            raise ValueError(f"approach: expected one of {APPROACHES}, found {approach!r}")
        out = approach_estimates(self.analysis, approach, c)
        out["approach"] = approach
        out["findings"] = sort_findings(prediction_findings(self.analysis, approach, c, out))
        return out

    def chinchilla_dataframe(
        self, compute_budgets: Sequence[float] | None = None, approach: str | None = None
    ) -> pd.DataFrame:
        """Budget, N_opt, D_opt, D/N and predicted loss (with intervals); defaults to the sweep's budgets
        and 3 decades beyond."""
        return self._chinchilla(compute_budgets, approach)[0]

    def _chinchilla(self, compute_budgets: Sequence[float] | None, approach: str | None
                    ) -> tuple[pd.DataFrame, list[list[Any]]]:
        """The table's rows and each row's findings, from one prediction per row."""
        measured = self.analysis.budgets
        if compute_budgets is None:
            compute_budgets = measured + [measured[-1] * 10**k for k in (1, 2, 3)]
        else:
            if isinstance(compute_budgets, (int, float)):
                compute_budgets = [compute_budgets]
            compute_budgets = [check_flops(c, f"compute_budgets[{i}]") for i, c in enumerate(compute_budgets)]
        rows, findings = [], []
        lo, hi = min(measured), max(measured)
        sizes = self.analysis.table.loc[~self.analysis.table["outlier"], "N"]
        for c in compute_budgets:
            p = self.predict(c, approach)
            findings.append(p["findings"])
            n = p["optimal_params"]
            flag = ("below the smallest swept model" if n < sizes.min() * (1 - 1e-6) else
                    f"> {MAX_EXTRAPOLATION:.0e}× the largest swept model" if n > MAX_EXTRAPOLATION * sizes.max()
                    else "not informative" if any(f.code == "not_informative" for f in p["findings"]) else "")
            ci = {k: p.get(k) or (math.nan, math.nan) for k in
                  ("optimal_params_ci", "optimal_tokens_ci", "tokens_per_param_ci", "expected_loss_ci")}
            rows.append(
                {
                    "compute_budget": c,
                    "N_opt": p["optimal_params"],
                    "N_opt_lo": ci["optimal_params_ci"][0],
                    "N_opt_hi": ci["optimal_params_ci"][1],
                    "D_opt": p["optimal_tokens"],
                    "D_opt_lo": ci["optimal_tokens_ci"][0],
                    "D_opt_hi": ci["optimal_tokens_ci"][1],
                    "tokens_per_param": p["tokens_per_param"],
                    "loss": p["expected_loss"],
                    "loss_lo": ci["expected_loss_ci"][0],
                    "loss_hi": ci["expected_loss_ci"][1],
                    "extrapolated": not (lo <= c <= hi),
                    "approach": p["approach"],
                    "flag": flag,
                    "severity": p["findings"][0].severity if p["findings"] else "",
                }
            )
        return pd.DataFrame(rows), findings

    def chinchilla_table(self, compute_budgets: Sequence[float] | None = None, approach: str | None = None) -> str:
        """The Chinchilla-style table as markdown, with bootstrap intervals in brackets."""
        df, row_findings = self._chinchilla(compute_budgets, approach)
        conf = round(100 * self.analysis.options.confidence)
        what = "non-embedding params" if self.param_count == "non_embedding" else "params"
        header = f"| compute (FLOPs) | N_opt ({what}) | D_opt (tokens) | D/N | predicted loss | |"
        lines = [header, "|---:|---:|---:|---:|---:|:--|"]
        for r in df.itertuples():
            lines.append(
                f"| {r.compute_budget:.2e} | {_human(r.N_opt)}{_range(r.N_opt_lo, r.N_opt_hi)} | "
                f"{_human(r.D_opt)}{_range(r.D_opt_lo, r.D_opt_hi)} | {r.tokens_per_param:.3g} | "
                f"{r.loss:.4f}{_range(r.loss_lo, r.loss_hi, loss=True)} | "
                f"{', '.join(x for x in ('extrapolated' if r.extrapolated else '', r.flag) if x)} |"
            )
        used = df["approach"].iloc[0] if len(df) else self.predict_with
        note = f"\nPredictions by {APPROACH_LABELS[used]}; {self.analysis.cost.describe()} in every row."
        if df["N_opt_lo"].notna().any():
            note += f" Brackets: {conf}% bootstrap intervals ({self.analysis.options.n_bootstrap} resamples)."
        out = self._outliers()
        if out:
            verb = "excluded from" if self.analysis.options.exclude_outliers else "flagged but kept in"
            lines.append(f"{len(out)} outlier run(s) {verb} the fits: "
                         + ", ".join(f"{run} ({why})" for run, why in out))
        lines.append(note)
        seen: set[str] = set()
        shown_codes: set[str] = set()
        for _, found in sorted(zip(df["compute_budget"], row_findings), key=lambda t: -t[0]):
            for f in found:  # per kind, the finding at the largest compute
                if f.severity != "note" and f.code not in shown_codes:
                    shown_codes.add(f.code)
                    seen.add(f.message)
                    lines.append(f"{f.severity.upper()}: {f.message}")
        for f in self.analysis.findings:
            if f.compute is None and f.severity != "note" and f.message not in seen:
                seen.add(f.message)
                lines.append(f"{f.severity.upper()}: {f.message}")
        return "\n".join(lines)

    def to_dataframe(self) -> pd.DataFrame:
        """Every run with its outlier flag and reason."""
        return self.analysis.table.copy()

    def approaches_dataframe(self, compute_budgets: Sequence[float] | None = None) -> pd.DataFrame:
        """Approach 2 and Approach 3 side by side: exponent a and N_opt, D_opt at each budget."""
        measured = self.analysis.budgets
        budgets = list(compute_budgets) if compute_budgets is not None else [measured[0], measured[-1],
                                                                              measured[-1] * 1000]
        approaches = ((["approach_2"] if self.analysis.isoflop is not None else [])
                      + (["approach_3"] if self.analysis.parametric is not None else []))
        rows = []
        for c in budgets:
            for ap in approaches:
                p = self.predict(c, ap)
                rows.append({"compute_budget": float(c), "approach": ap, "a": p["exponent_a"],
                             "a_ci": p.get("exponent_a_ci"), "N_opt": p["optimal_params"],
                             "N_opt_ci": p.get("optimal_params_ci"), "D_opt": p["optimal_tokens"],
                             "D_opt_ci": p.get("optimal_tokens_ci"), "loss": p["expected_loss"]})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """Findings first, then both approaches, which one predicts and why, back-test, outliers: the report."""
        an = self.analysis
        conf = round(100 * an.options.confidence)
        lines = [f"{f.severity.upper()}: {f.message}" for f in an.findings if f.severity != "note"]
        if lines:
            lines.append("")
        from flops_fit.adaptive import progress_lines

        lines += progress_lines(self.plan, self)
        if an.cost.accounting != FLOPS_6ND:
            lines.append(f"Compute is measured FLOPs: {an.cost.describe()}")
        if self.param_count == "non_embedding":
            lines.append("N counts non-embedding parameters (param_count='non_embedding'), in the fits and every "
                         "prediction")
        lines.append(f"predict() uses {APPROACH_LABELS[self.predict_with]}: "
                     + (an.evidence.reason if an.evidence is not None else ""))
        a = an.isoflop
        if a is not None:
            a2 = self.predict(1.0, "approach_2")
            lines.append(
                f"Approach 2 (IsoFLOP parabolas, {len(a.optima)} budgets): N_opt ∝ C^{a.n_opt_fit.exponent_a:.3f}"
                f"{_range(*(a2.get('exponent_a_ci') or (math.nan, math.nan)), digits=3)} "
                f"(R²={a.n_opt_fit.r_squared:.3f}), D_opt ∝ C^{a.d_opt_fit.exponent_a:.3f}, "
                f"tokens/param at the swept optima ≈ {a.optimal_ratio:.3g}")
        fit = an.parametric
        if fit is not None:
            lines.append(self._approach_3_line())
        elif an.parametric_note:
            lines.append(an.parametric_note)
        counts = ", ".join(f"{label} {ok}/{n}" for label, n, ok in resample_counts(an))
        if an.bootstrap is not None or an.isoflop_bootstrap is not None:
            lines.append(f"[brackets: {conf}% bootstrap intervals, {an.options.n_bootstrap} resamples, "
                         f"seed {an.options.seed}; successful refits: {counts}]")
        ev = an.evidence
        if ev is not None and ev.backtest:
            lines.append("Back-test (refit without the top budget(s), predict the held-out IsoFLOP minimum):")
            for c in ev.backtest:
                lines.append(f"  {APPROACH_LABELS[c.approach].split(' (')[0]}, holding out "
                             f"{', '.join(f'{h:.3g}' for h in c.held_out)}: N_opt at C={c.compute:.3g} predicted "
                             f"{_human(c.n_pred)} vs measured {_human(c.n_measured)} (×{c.n_factor:.2f}), loss "
                             f"{c.loss_pred:.4f} vs {c.loss_measured:.4f} ({100 * c.loss_error:+.1f}%)")
        df = self.approaches_dataframe()
        lines.append("N_opt / D_opt by approach:")
        for c, g in df.groupby("compute_budget", sort=True):
            cells = [f"{APPROACH_LABELS[r.approach].split(' (')[0]}: N={_human(r.N_opt)}, D={_human(r.D_opt)}"
                     for r in g.itertuples()]
            lines.append(f"  C={c:.2e}: " + "; ".join(cells))
        out = self._outliers()
        if out:
            lines.append(f"{len(out)} outlier run(s) excluded:" if an.options.exclude_outliers
                         else f"{len(out)} outlier run(s) flagged (kept):")
            lines += [f"  {run}: {why}" for run, why in out]
        lines += [f"note: {f.message}" for f in an.findings if f.severity == "note"]
        lines += [f"warning: {w}" for w in an.warnings]
        return "\n".join(lines)

    def _approach_3_line(self) -> str:
        an, fit = self.analysis, self.analysis.parametric
        b = an.bootstrap
        ci = {n: b.interval(n, an.options.confidence) for n in PARAM_NAMES} if b is not None and len(b.samples) else {}
        loose = set(not_identified(an))

        def v(name: str, fmt: str) -> str:
            x = getattr(fit, name)
            if name in loose:
                return f"{x:{fmt}} (not identified by these runs)"
            lo, hi = ci.get(name, (math.nan, math.nan))
            return f"{x:{fmt}}" + (f" [{lo:{fmt}}, {hi:{fmt}}]" if math.isfinite(lo) and lo != hi else "")

        return (f"Approach 3 (parametric L = E + A/N^α + B/D^β, {fit.n_points} runs"
                f"{', NOT converged' if not fit.converged else ''}): E={v('E', '.4g')}, A={v('A', '.4g')}, "
                f"B={v('B', '.4g')}, α={v('alpha', '.3f')}, β={v('beta', '.3f')}; N_opt ∝ C^{self._exponent_3(v)}")

    def _exponent_3(self, v: Any) -> str:
        """Approach 3's N_opt exponent: β/(α+β) under 6·N·D, β/(α+bβ) under a measured cost c·N^b."""
        an = self.analysis
        if an.cost.accounting == FLOPS_6ND or "a" in set(not_identified(an)):
            return v("a", ".3f")
        p = approach_estimates(an, "approach_3", 1.0)
        return f"{p['exponent_a']:.3f}" + _range(*(p.get("exponent_a_ci") or (math.nan, math.nan)), digits=3)

    def _repr_html_(self) -> str:
        """Notebooks: the findings, the headline choice and the Chinchilla table (escaped: ids come from files)."""
        import html

        an = self.analysis
        items = "".join(f"<li><b>{html.escape(f.severity.upper())}</b>: {html.escape(f.message)}</li>"
                        for f in an.findings if f.severity != "note")
        reason = an.evidence.reason if an.evidence is not None else ""
        table = self.chinchilla_dataframe().to_html(index=False, float_format=lambda v: f"{v:.4g}", escape=True)
        return (f"<div><b>flops-fit Result</b>: {len(self.records) or len(an.table)} runs, {len(an.budgets)} budgets; "
                f"predict() uses {html.escape(APPROACH_LABELS[self.predict_with])}"
                + (f" ({html.escape(reason)})" if reason else "")
                + (f"<ul>{items}</ul>" if items else "") + table + "</div>")

    def __repr__(self) -> str:
        p = self.predict(1.0)
        return (f"Result(runs={len(self.records) or len(self.analysis.table)}, budgets={len(self.analysis.budgets)}, "
                f"a={p['exponent_a']:.3f}, predict_with={self.predict_with!r})")

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
            for name, fig in figs.items():
                with io.atomic_open(self.output_dir / PLOTS_DIR / name, "wb") as fh:
                    fig.savefig(fh, dpi=120, format="png")
        if show:
            plt.show()
        return list(figs.values())


def read_results(out: Path, plan: SweepPlan | None) -> tuple[str, list[RunRecord]]:
    """results.json's plan fingerprint and records, refused if they belong to another plan than `plan`."""
    fingerprint, records = ResultsStore.read(out / RESULTS_FILE)
    if plan is not None and plan.fingerprint() != fingerprint:
        raise ValueError(
            f"{out / RESULTS_FILE}: field 'plan_fingerprint' is {fingerprint}, but {out / SWEEP_FILE} "
            f"describes plan {plan.fingerprint()}; the two files come from different sweeps"
        )
    if plan is not None:
        check_against_plan(records, plan.planned_runs(), str(out / RESULTS_FILE))
    return fingerprint, records


def check_analysable(records: Sequence[RunRecord]) -> None:
    """Refuse, with the runs' own errors, a sweep whose completed runs cover fewer than 2 budgets."""
    budgets = {r.compute_budget for r in records if r.ok}
    if len(budgets) >= 2:
        return
    n_ok = sum(r.ok for r in records)
    failed = [r for r in records if not r.ok]
    why = f"; first failure: {failed[0].experiment_id} ({failed[0].status}): {failed[0].error}" if failed else ""
    raise ValueError(
        f"records: a scaling-law fit needs completed runs at 2 or more compute budgets, found {len(budgets)} "
        f"({n_ok} of {len(records)} runs completed, {len(failed)} failed or diverged{why})"
    )


def _range(lo: float, hi: float, *, loss: bool = False, digits: int | None = None) -> str:
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    if digits is not None:
        return f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    if loss:
        return f" [{lo:.4f}, {hi:.4f}]"
    return f" [{_human(lo)}, {_human(hi)}]"


def _human(x: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"
