"""Evidence for the headline answer: which approach to believe, and how loudly to doubt it.

Approach 3 assumes L = E + A/N^α + B/D^β. When the runs follow another form it can
converge nicely and still be far off (Llama 3's published IsoFLOP points: 894B
parameters at 3.8e25 FLOPs against the paper's 402B). So the headline approach is
chosen here from three pieces of evidence computed on the runs themselves:

- *in-sample agreement*: at every budget whose IsoFLOP minimum is well bracketed
  (a parabola vertex inside the sampled sizes, not at their edge), the parametric
  surface's optimum N*(C) against the measured vertex and its bootstrap interval;
- *back-test*: each approach refitted with the largest budget held out (and the two
  largest, when there are 5 or more budgets) predicts the held-out budgets' optimal
  N and the loss there, scored as factors against the measured vertices;
- *identifiability*: parameters at a bound, intervals from few resamples, intervals
  too wide to act on, predictions far outside the swept sizes.

Every doubt becomes a :class:`Finding` with a severity (``note`` < ``warning`` <
``disagree``), stored in scaling_laws.json and printed first in the summary.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from flops_fit.analysis.bootstrap import percentile_interval
from flops_fit.analysis.isoflop import (
    NUMERIC_ERRORS,
    BudgetOptimum,
    fit_isoflop,
)
from flops_fit.analysis.parametric import (
    ParametricFit,
    PreparedData,
    _fit_prepared,
    _fit_prepared_inner,
    chinchilla_grid,
    single_thread_blas,
)

if TYPE_CHECKING:
    from flops_fit.analysis import Analysis

SEVERITIES = ("note", "warning", "disagree")
#: The parametric optimum may miss a measured vertex by this factor (outside its interval) and still agree.
IN_SAMPLE_TOLERANCE = 1.5
#: Approach 3 keeps the headline unless its back-test error exceeds Approach 2's by more than this factor.
BACKTEST_TIE = 1.1
#: L-BFGS-B starts of a back-test refit: the 5 best-scored of (full-data optimum + the 4,500-point grid)
BACKTEST_STARTS = 5
#: N_opt intervals wider than this ratio (upper / lower) are "not informative".
MAX_INFORMATIVE_WIDTH = 4.0
#: An interval resting on fewer than this share of successful resamples is marked.
MIN_RESAMPLE_SHARE = 0.8
#: A predicted N_opt above this multiple of the largest swept model is flagged.
MAX_EXTRAPOLATION = 1e6


@dataclass(frozen=True)
class Finding:
    """One thing the runs cannot vouch for, with a severity and the numbers behind it."""

    severity: str  # one of SEVERITIES
    code: str  # machine-readable kind, e.g. "approaches_disagree", "not_informative", "not_identified"
    message: str
    compute: float | None = None
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


def fold(factor: float | None) -> float:
    """A ratio as a distance from agreement, >= 1 (×2 and ×0.5 both give 2); inf for 0, inf or nan."""
    if factor is None or not math.isfinite(factor) or factor <= 0:
        return math.inf
    return max(factor, 1.0 / factor)


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Most severe first, otherwise in the order they were found."""
    return sorted(findings, key=lambda f: -SEVERITIES.index(f.severity))


@dataclass(frozen=True)
class BudgetAgreement:
    """The parametric surface's optimum against one budget's measured IsoFLOP minimum."""

    compute: float
    n_vertex: float
    n_vertex_ci: tuple[float, float] | None
    trusted: bool  # a parabola vertex inside the sampled sizes and not at their edge
    n_approach_3: float | None

    @property
    def factor(self) -> float | None:
        """N*(C) of Approach 3 / measured vertex."""
        return None if self.n_approach_3 is None else self.n_approach_3 / self.n_vertex

    @property
    def inside_ci(self) -> bool:
        ci = self.n_vertex_ci
        return bool(ci and self.n_approach_3 is not None and ci[0] <= self.n_approach_3 <= ci[1])

    @property
    def misses(self) -> bool:
        """Approach 3 misses a well-bracketed vertex: outside its interval and beyond the tolerance."""
        f = self.factor
        return bool(self.trusted and f is not None and not self.inside_ci and fold(f) > IN_SAMPLE_TOLERANCE)


@dataclass(frozen=True)
class BacktestCase:
    """One approach, refitted without the held-out budgets, predicting one of them."""

    approach: str
    held_out: tuple[float, ...]
    compute: float
    n_pred: float
    n_measured: float
    loss_pred: float
    loss_measured: float

    @property
    def n_factor(self) -> float:
        return self.n_pred / self.n_measured

    @property
    def loss_error(self) -> float:
        """Relative error of the predicted loss at the optimum."""
        return self.loss_pred / self.loss_measured - 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"n_factor": self.n_factor, "loss_error": self.loss_error}


@dataclass
class Evidence:
    """What the runs say about each approach, and the choice made from it."""

    agreement: list[BudgetAgreement]
    backtest: list[BacktestCase]
    predict_with: str
    reason: str

    def backtest_error(self, approach: str) -> float | None:
        """Worst back-test N_opt factor of an approach (>= 1), None when it could not be back-tested."""
        return backtest_error(self.backtest, approach)

    def to_dict(self) -> dict[str, Any]:
        return {
            "predict_with": self.predict_with,
            "reason": self.reason,
            "in_sample_agreement": [
                asdict(a) | {"factor": a.factor, "inside_ci": a.inside_ci, "misses": a.misses}
                for a in self.agreement
            ],
            "backtest": [c.to_dict() for c in self.backtest],
            "backtest_error": {ap: self.backtest_error(ap) for ap in ("approach_2", "approach_3")},
        }


# --------------------------------------------------------------------------- evidence


def backtest_error(cases: list[BacktestCase], approach: str) -> float | None:
    """Worst back-test N_opt factor of an approach (>= 1) over usable cases, None when there are none."""
    f = [abs(math.log(c.n_factor)) for c in cases
         if c.approach == approach and c.n_factor > 0 and math.isfinite(c.n_factor)]
    return math.exp(max(f)) if f else None


def trusted(o: BudgetOptimum) -> bool:
    return o.method == "parabola" and o.in_range and not o.near_edge


def in_sample_agreement(analysis: Analysis) -> list[BudgetAgreement]:
    iso, fit, boot = analysis.isoflop, analysis.parametric, analysis.isoflop_bootstrap
    if iso is None:
        return []
    conf = analysis.options.confidence
    out = []
    for o in iso.optima:
        ci = None
        if boot is not None:
            s = boot.vertex_samples(o.compute_budget)
            if np.isfinite(s).sum() >= 2:
                ci = percentile_interval(s, conf)
        n3 = float(fit.optimal_allocation(o.compute_budget, analysis.cost)[0]) \
            if fit is not None and fit.converged else None
        out.append(BudgetAgreement(o.compute_budget, o.n_opt, ci, trusted(o), n3))
    return out


def _holdouts(budgets: list[float]) -> list[tuple[float, ...]]:
    b = sorted(budgets)
    sets = [(b[-1],)] if len(b) >= 3 else []
    if len(b) >= 5:
        sets.append((b[-2], b[-1]))
    return sets


def backtest(analysis: Analysis, used: pd.DataFrame) -> list[BacktestCase]:
    """Refit both approaches without the top budget(s); predict each held-out trusted vertex."""
    iso = analysis.isoflop
    if iso is None:
        return []
    vertices = {o.compute_budget: o for o in iso.optima if trusted(o)}
    cases: list[BacktestCase] = []
    for held in _holdouts([o.compute_budget for o in iso.optima]):
        targets = [c for c in held if c in vertices]
        if not targets:
            continue
        # everything below the smallest held-out budget: runs off the budgets (extra branches) included, and
        # none at or above it, whose compute the held-out budget's prediction may not see
        train = used[used["compute_budget"] < min(held) * (1 - 1e-9)]
        for approach, predictor in (("approach_2", _approach_2_predictor), ("approach_3", _approach_3_predictor)):
            if approach == "approach_3" and (analysis.parametric is None or not analysis.parametric.converged):
                continue
            try:
                predict = predictor(train, analysis)
            except NUMERIC_ERRORS + (RuntimeError,):
                continue
            if predict is None:
                continue
            for c in targets:
                n, loss = predict(c)
                v = vertices[c]
                if math.isfinite(n) and n > 0:
                    cases.append(BacktestCase(approach, tuple(held), c, n, v.n_opt, loss, v.loss_opt))
    return cases


def _approach_2_predictor(train: pd.DataFrame, analysis: Analysis):
    from flops_fit.analysis import off_budget

    sub = fit_isoflop(train[~off_budget(train)], analysis.cost)
    return lambda c: (float(sub.n_opt_fit(c)), float(sub.l_opt_fit(c)))


def _approach_3_predictor(train: pd.DataFrame, analysis: Analysis):
    from flops_fit.analysis import MIN_POINTS_APPROACH_3

    if len(train) < MIN_POINTS_APPROACH_3:
        return None
    full: ParametricFit = analysis.parametric
    prepared = PreparedData(frame=train[["N", "D", "loss"]], excluded=(), source="back-test")
    if full.method == "lbfgs":  # the full-data optimum (a held-out fit is a small change of it) + the grid's best
        starts = np.vstack([full.log_params[None, :], chinchilla_grid()])
        with single_thread_blas():
            sub, _ = _fit_prepared_inner(prepared, method="lbfgs", delta=full.huber_delta, starts=starts,
                                         n_best=BACKTEST_STARTS, outlier_threshold=None)
    else:
        sub, _ = _fit_prepared(prepared, method=full.method, delta=full.huber_delta, init=None, n_best=16,
                               outlier_threshold=None)
    if not sub.converged:
        return None

    def predict(c: float) -> tuple[float, float]:
        n, _ = sub.optimal_allocation(c, analysis.cost)
        return float(n), float(sub.optimal_loss(c, analysis.cost))

    return predict


def choose(analysis: Analysis, agreement: list[BudgetAgreement], cases: list[BacktestCase]) -> tuple[str, str]:
    """The headline approach and why, in words with the numbers."""
    fit = analysis.parametric
    bt2, bt3 = backtest_error(cases, "approach_2"), backtest_error(cases, "approach_3")
    bt_text = ""
    if bt2 is not None and bt3 is not None:
        bt_text = f"; back-test N_opt error one budget ahead: Approach 2 ×{bt2:.2f}, Approach 3 ×{bt3:.2f}"
    if analysis.isoflop is None:
        return "approach_3", "Approach 2 could not be fitted (no IsoFLOP budget with 3 or more sizes)"
    if fit is None or not fit.converged:
        return "approach_2", (analysis.parametric_note or "Approach 3 did not converge")
    loose = [p for p in not_identified(analysis) if p in ("alpha", "beta")]
    if loose:
        return "approach_2", (f"Approach 3's {' and '.join(loose)} are not identified by these runs (at a bound), "
                              "so its optimum is not either")
    good = [a for a in agreement if a.trusted]
    if not good:
        return "approach_3", ("no budget's IsoFLOP minimum is bracketed well enough to check Approach 2 against "
                              "(vertices outside or at the edge of the sampled sizes); Approach 3 uses every run"
                              + bt_text)
    missed = [a for a in good if a.misses]
    if missed:
        worst = max(missed, key=lambda a: fold(a.factor))
        return "approach_2", (
            f"Approach 3's surface misses the measured IsoFLOP minimum inside the data: at C={worst.compute:.3g} "
            f"its optimum is N={worst.n_approach_3:.3g}, ×{worst.factor:.2f} the measured vertex "
            f"N={worst.n_vertex:.3g}" + _ci_text(worst.n_vertex_ci) + bt_text)
    worst_f = max(fold(a.factor) for a in good)
    if bt2 is not None and bt3 is not None:
        tie = max(BACKTEST_TIE, held_out_noise(agreement, cases))
        if bt3 <= bt2 * tie:
            return "approach_3", (f"Approach 3 agrees with the {len(good)} well-bracketed IsoFLOP minima "
                                  f"(within ×{worst_f:.2f}) and back-tests as well as Approach 2 (a difference "
                                  f"below ×{tie:.2f}, the held-out minimum's own uncertainty, is not evidence)"
                                  + bt_text)
        return "approach_2", "Approach 2 back-tests better, beyond the held-out minimum's uncertainty" + bt_text
    return "approach_3", (f"Approach 3 agrees with the {len(good)} well-bracketed IsoFLOP minima (within "
                          f"×{worst_f:.2f}); too few budgets to back-test")


def held_out_noise(agreement: list[BudgetAgreement], cases: list[BacktestCase]) -> float:
    """How far a held-out vertex itself is uncertain: the largest sqrt(upper / lower) of its bootstrap
    interval (1 when unknown). Back-test errors that differ by less say nothing."""
    held = {c.compute for c in cases}
    widths = [math.sqrt(a.n_vertex_ci[1] / a.n_vertex_ci[0]) for a in agreement
              if a.compute in held and a.n_vertex_ci and a.n_vertex_ci[0] > 0 and math.isfinite(a.n_vertex_ci[1])]
    return max(widths, default=1.0)


def _ci_text(ci: tuple[float, float] | None) -> str:
    return f" (interval {ci[0]:.3g}-{ci[1]:.3g})" if ci else ""


def gather(analysis: Analysis, used: pd.DataFrame) -> Evidence:
    agreement = in_sample_agreement(analysis)
    cases = backtest(analysis, used)
    approach, reason = choose(analysis, agreement, cases)
    return Evidence(agreement, cases, approach, reason)


# --------------------------------------------------------------------------- findings


def evidence_findings(analysis: Analysis) -> list[Finding]:
    """Findings about the fit as a whole: in-sample misses, back-test errors, identifiability, resamples."""
    ev = analysis.evidence
    out: list[Finding] = []
    if ev is not None:
        for a in ev.agreement:
            if a.misses:
                out.append(Finding(
                    "disagree", "in_sample_miss",
                    f"Approach 3's optimum at C={a.compute:.3g} is N={a.n_approach_3:.3g}, ×{a.factor:.2f} the "
                    f"measured IsoFLOP minimum N={a.n_vertex:.3g}{_ci_text(a.n_vertex_ci)}: its functional form "
                    "does not fit these runs", a.compute,
                    {"n_approach_3": a.n_approach_3, "n_vertex": a.n_vertex, "factor": a.factor}))
        err = ev.backtest_error(ev.predict_with)
        if err is not None:
            sev = "note" if err < 1.25 else "warning" if err < 2 else "disagree"
            held = sorted({c.compute for c in ev.backtest if c.approach == ev.predict_with})
            out.append(Finding(
                sev, "backtest",
                f"back-test: refitted without the top budget(s), {_label(ev.predict_with)} predicted the held-out "
                f"optimal N at C={', '.join(f'{c:.3g}' for c in held)} within ×{err:.2f}", None,
                {"approach": ev.predict_with, "factor": err}))
    out += identifiability_findings(analysis)
    return out


def _label(approach: str) -> str:
    return "Approach 2" if approach == "approach_2" else "Approach 3"


def identifiability_findings(analysis: Analysis) -> list[Finding]:
    """Parameters at a bound, and intervals that rest on too few resamples."""
    out: list[Finding] = []
    fit = analysis.parametric
    if fit is not None and fit.converged:
        for name in not_identified(analysis):
            out.append(Finding(
                "warning", "not_identified",
                f"Approach 3's {name} is not identified by these runs (the fit or its resamples run to a bound: "
                f"{_bound_text(name)}); predictions that lean on it are unreliable", None, {"parameter": name}))
    for label, n_total, n_ok in resample_counts(analysis):
        if n_total and n_ok / n_total < MIN_RESAMPLE_SHARE:
            out.append(Finding(
                "warning", "few_resamples",
                f"{label} intervals rest on {n_ok} of {n_total} resamples ({100 * n_ok / n_total:.0f}%); the other "
                "refits failed or did not converge, so the intervals are too narrow", None,
                {"n_ok": n_ok, "n_resamples": n_total}))
    return out


def resample_counts(analysis: Analysis) -> list[tuple[str, int, int]]:
    """(approach label, resamples drawn, resamples that gave a converged finite refit)."""
    out = []
    if analysis.isoflop_bootstrap is not None:
        b2 = analysis.isoflop_bootstrap
        out.append(("Approach 2", b2.n_resamples, b2.n_ok))
    elif analysis.isoflop is not None and analysis.options.n_bootstrap:
        out.append(("Approach 2", analysis.options.n_bootstrap, 0))
    b3 = analysis.bootstrap
    if b3 is not None:
        out.append(("Approach 3", b3.n_resamples, int(len(b3.samples)) - b3.n_not_converged))
    return out


_BOUNDS = {"E": "E → 0", "alpha": "α below 0.02 or above 2.5", "beta": "β below 0.02 or above 2.5"}


def _bound_text(name: str) -> str:
    return _BOUNDS.get(name, name)


def not_identified(analysis: Analysis) -> list[str]:
    """Parameters of Approach 3 whose estimate, or central interval, reaches a bound."""
    fit, boot = analysis.parametric, analysis.bootstrap
    if fit is None:
        return []
    min_loss = float(np.nanmin(analysis.table.loc[~analysis.table["outlier"], "loss"]))
    e_floor = 1e-3 * min_loss
    out = []
    conf = analysis.options.confidence
    ci = {}
    if boot is not None and len(boot.samples) >= 2:
        ci = {n: boot.interval(n, conf) for n in ("E", "alpha", "beta")}
    if fit.E < e_floor or ci.get("E", (1, 1))[0] < e_floor:
        out.append("E")
    for name in ("alpha", "beta"):
        lo, hi = ci.get(name, (getattr(fit, name),) * 2)
        v = getattr(fit, name)
        if min(v, lo) < 0.02 or max(v, hi) > 2.5:
            out.append(name)
    return out


def prediction_findings(analysis: Analysis, approach: str, compute: float, est: dict[str, Any]) -> list[Finding]:
    """Findings about one prediction: approaches disagreeing there, width, extrapolation."""
    out: list[Finding] = []
    n, ci = est["optimal_params"], est.get("optimal_params_ci")
    sizes = analysis.table.loc[~analysis.table["outlier"], "N"]
    n_min, n_max = float(sizes.min()), float(sizes.max())
    if ci and ci[0] > 0 and math.isfinite(ci[1]) and ci[1] / ci[0] > MAX_INFORMATIVE_WIDTH:
        out.append(Finding(
            "warning", "not_informative",
            f"at C={compute:.3g} the {round(100 * analysis.options.confidence)}% interval of N_opt spans "
            f"×{ci[1] / ci[0]:.1f} ({ci[0]:.3g}-{ci[1]:.3g}): not informative — add budgets or runs", compute,
            {"width": ci[1] / ci[0]}))
    below = n < n_min * (1 - 1e-6)  # the smallest model itself (a best-sampled optimum) is not below it
    if not (math.isfinite(n) and n > 0) or below or n > MAX_EXTRAPOLATION * n_max:
        where = (f"below the smallest swept model ({n_min:.3g})" if math.isfinite(n) and below
                 else f"more than {MAX_EXTRAPOLATION:.0e}× the largest swept model ({n_max:.3g})")
        out.append(Finding("warning", "out_of_range",
                           f"at C={compute:.3g} the predicted N_opt={n:.3g} is {where}", compute, {"N_opt": n}))
    other = "approach_2" if approach == "approach_3" else "approach_3"
    if analysis.isoflop is None or analysis.parametric is None or not analysis.parametric.converged:
        return out
    from flops_fit.analysis import approach_estimates

    o = approach_estimates(analysis, other, compute)
    out.append(disagreement(compute, {approach: est, other: o}))
    return out


def disagreement(compute: float, est: dict[str, dict[str, Any]]) -> Finding:
    """Approach 2 vs 3 at one compute: N_opt ratio, intervals, severity."""
    e2, e3 = est["approach_2"], est["approach_3"]
    n2, n3 = e2["optimal_params"], e3["optimal_params"]
    r = n2 / n3 if n3 > 0 else math.inf
    rr = fold(r)
    i2, i3 = e2.get("optimal_params_ci"), e3.get("optimal_params_ci")
    disjoint = bool(i2 and i3 and (i2[1] < i3[0] or i3[1] < i2[0]))  # outside each other's intervals
    if rr > IN_SAMPLE_TOLERANCE or (disjoint and rr > 1.25):
        sev = "disagree"
    elif rr >= 1.25 or disjoint:
        sev = "warning"
    else:
        sev = "note"  # intervals overlap and the two are within ×1.25
    verb = {"disagree": "disagree", "warning": "differ", "note": "agree"}[sev]
    text = (f"at C={compute:.3g} Approach 2 and Approach 3 {verb}: N_opt {n2:.3g} vs {n3:.3g} (×{rr:.2f})"
            + (f", intervals {i2[0]:.3g}-{i2[1]:.3g} and {i3[0]:.3g}-{i3[1]:.3g}" if i2 and i3 else ""))
    return Finding(sev, "approaches_disagree" if sev != "note" else "approaches_agree", text, compute,
                   {"n_opt_approach_2": n2, "n_opt_approach_3": n3, "ratio": r,
                    "d_opt_approach_2": e2["optimal_tokens"], "d_opt_approach_3": e3["optimal_tokens"]})
