"""How much more compute would pin N_opt: a forecast of the interval after more budgets, from the current one.

Why a forecast and not a rule of thumb: the interval of N_opt at a far compute C* is dominated by the slope
of log N_opt against log C, and a straight line's prediction at x* = log C* has a standard error
proportional to its *leverage* sqrt(1/n + (x* - mean x)^2 / Sxx) over the budgets x_i = log C_i. The
current bootstrap interval fixes the scale; each extra budget (the same spacing, the same runs per budget,
hence about as precise a vertex) changes only the leverage. So the forecast width is

    ratio_k = ratio_0 ** (leverage_k / leverage_0)

(ratio = upper / lower bound). The other lever, more runs at the budgets already trained, shrinks each
vertex's error by about 1/sqrt(runs): doubling them gives ratio_0 ** (1/sqrt 2). Both assume the new runs
behave like the old; after training, the bootstrap says what was reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flops_fit.validation import check_flops, check_int, check_number

#: extra budgets a forecast looks ahead at most
MAX_EXTRA_BUDGETS = 6


@dataclass
class PrecisionForecast:
    """The interval of N_opt at `compute` now and after each of `rows` (see the module docstring)."""

    compute: float
    current_ratio: float
    max_ratio: float | None
    budgets: list[float]
    runs_per_budget: int
    spacing: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    more_runs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def needed(self) -> dict[str, Any] | None:
        """The first row that reaches `max_ratio` (None: none within the rows, or no max_ratio given)."""
        if self.max_ratio is None:
            return None
        return next((r for r in self.rows if r["ratio"] <= self.max_ratio), None)

    def summary(self) -> str:
        lines = [f"N_opt at C={self.compute:.3g}: its interval spans ×{self.current_ratio:.3g} now "
                 f"({len(self.budgets)} budgets, {self.runs_per_budget} runs each); more budgets ×{self.spacing:.3g} "
                 "apart"]
        for r in self.rows:
            lines.append(f"  +{r['extra_budgets']} budget(s) up to C={r['budgets'][-1]:.3g}: about ×{r['ratio']:.3g} "
                         f"for {r['extra_runs']} more runs, {r['extra_compute']:.3g} more FLOPs")
        m = self.more_runs
        lines.append(f"  or twice the runs at every budget trained: about ×{m['ratio']:.3g} for {m['extra_runs']} "
                     f"more runs, {m['extra_compute']:.3g} more FLOPs")
        if self.max_ratio is not None:
            lines.append(f"target ×{self.max_ratio:g}: {self.verdict()}")
        lines += [f"note: {t}" for t in self.notes]
        return "\n".join(lines)

    def verdict(self) -> str:
        """What reaches `max_ratio`, in words (the summary's target line; an adaptive sweep's forecast line)."""
        n = self.needed
        if self.current_ratio <= (self.max_ratio or 0.0):
            return "reached already"
        if n is not None:
            return (f"about {n['extra_budgets']} more budget(s) (up to C={n['budgets'][-1]:.3g}, "
                    f"{n['extra_compute']:.3g} FLOPs), to about ×{n['ratio']:.3g}")
        return (f"not within {len(self.rows)} more budgets at this spacing (×{self.rows[-1]['ratio']:.3g} after "
                f"{len(self.rows)}): more runs per budget, or a wider spacing (spacing=)")


def _leverage(x: np.ndarray, x_star: float) -> float:
    return math.sqrt(1.0 / x.size + (x_star - x.mean()) ** 2 / float(((x - x.mean()) ** 2).sum()))


def precision_forecast(result: Any, compute: float, max_ratio: float | None = None, *,
                       extra_budgets: int = MAX_EXTRA_BUDGETS, spacing: float | None = None) -> PrecisionForecast:
    """Forecast N_opt's interval at `compute` after 1..`extra_budgets` more budgets above the largest, each
    `spacing` times the last (default: the sweep's own median ratio between budgets), and after twice the
    runs at the budgets it has; with `max_ratio`, which is the first to reach it. Scales the current
    bootstrap interval of the headline approach by the leverage of the budgets (module docstring)."""
    c = check_flops(compute, "compute")
    if max_ratio is not None:
        max_ratio = check_number(max_ratio, "max_ratio", min=1.0, min_inclusive=False,
                                 what="an interval ratio above 1 (upper / lower bound), e.g. 2.0")
    check_int(extra_budgets, "extra_budgets", min=1)
    if spacing is not None:
        spacing = check_number(spacing, "spacing", min=1.0, min_inclusive=False,
                               what="the ratio between consecutive new budgets, above 1, e.g. 3.0")
    analysis = getattr(result, "analysis", None)
    if analysis is None or not hasattr(result, "predict"):
        raise TypeError(f"result: expected a flops_fit Result, found {type(result).__name__}")
    from flops_fit.adaptive import interval_ratio

    ratio0, ci = interval_ratio(result, c)
    if ci is None:
        raise ValueError(f"result: no interval of N_opt at C={c:.3g} to scale (analysed with n_bootstrap=0, or "
                         "every resample failed); rerun the analysis with resamples")
    budgets = [float(b) for b in analysis.budgets]
    if len(budgets) < 2:
        raise ValueError(f"result: a forecast needs runs at 2 or more compute budgets, found {len(budgets)}")
    from flops_fit.analysis import off_budget

    kept = analysis.table[~analysis.table["outlier"]]
    kept = kept[~off_budget(kept)]  # runs per budget: extra branches sit on none
    per = kept.groupby("compute_budget").size() if "compute_budget" in kept else None
    if per is not None and len(per):
        m = int(round(float(np.median(per.to_numpy()))))
    else:
        m = max(1, len(kept) // len(budgets))
    x = np.log(budgets)
    step = math.log(spacing) if spacing is not None else float(np.median(np.diff(x)))
    if not step > 0:
        raise ValueError("result: its budgets do not increase; cannot continue their spacing")
    x_star, lev0 = math.log(c), _leverage(x, math.log(c))
    rows = []
    for k in range(1, extra_budgets + 1):
        new = [math.exp(x[-1] + j * step) for j in range(1, k + 1)]
        lev = _leverage(np.concatenate([x, np.log(new)]), x_star)
        rows.append({"extra_budgets": k, "budgets": new, "extra_runs": m * k, "extra_compute": m * sum(new),
                     "ratio": ratio0 ** (lev / lev0)})
    more = {"extra_runs": m * len(budgets), "extra_compute": m * sum(budgets), "ratio": ratio0 ** (1 / math.sqrt(2))}
    notes = ["a forecast from the current interval, assuming new budgets' vertices are as precise as these; "
             "the bootstrap after training says what was reached"]
    if len(budgets) < 3:
        notes.append("2 budgets: the current interval has no scatter of vertices behind it and may be "
                     "too narrow; so is this forecast")
    plan = getattr(result, "plan", None)
    if plan is not None and getattr(plan, "design", None):
        notes.append("compute is counted as separate runs; trunks and branches spend less")
    return PrecisionForecast(c, ratio0, max_ratio, budgets, m, math.exp(step), rows, more, notes)
