"""Adaptive sweeps: budgets trained smallest first, each centred on the N_opt its predecessors predict, an
unbracketed budget extended on its open side, and (with a target) no budget trained once the answer is as
precise as asked.

Every decision is a *round* appended to sweep.json's ``adaptive.rounds`` before its runs train —
``{"kind": "budget" | "extend" | "stop", "compute_budget", "centre" / "targets", "reason", "experiments"}``
— so a killed sweep, resumed, finds the rounds already decided and replays them instead of deciding
again; only what follows the last round is decided anew. The plan's fingerprint covers the budgets,
the settings and the target, not the experiments (which grow round by round); every record is still
checked against the experiment it claims to be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from flops_fit.planning import SweepPlan, plan_sweep
from flops_fit.validation import check_flops, check_int, check_number

#: extra sizes an unbracketed budget gets on its open side, per extension, and how many extensions at most
EXTEND_SIZES, MAX_EXTENSIONS = 2, 2
#: a target may stop the sweep only after this many budgets: intervals from two IsoFLOP vertices are
#: overconfident (a line through two points has no scatter to bootstrap)
MIN_BUDGETS_BEFORE_STOP = 3


@dataclass(frozen=True)
class Target:
    """Stop adding budgets once the `confidence` interval of N_opt at `compute` spans at most `max_ratio`
    (upper / lower bound)."""

    compute: float
    max_ratio: float
    quantity: str = "N_opt"

    def to_dict(self) -> dict[str, Any]:
        return {"compute": self.compute, "max_ratio": self.max_ratio, "quantity": self.quantity}


def make_target(value: Any) -> Target | None:
    """A Target from itself, a dict (compute, max_ratio[, quantity]) or None; bad fields named."""
    if value is None or isinstance(value, Target):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"target: expected a dict with compute and max_ratio, found {type(value).__name__}")
    unknown = sorted(set(value) - {"compute", "max_ratio", "quantity"})
    if unknown:
        raise ValueError(f"target: unknown field {unknown[0]!r}; fields are compute, max_ratio, quantity")
    if value.get("quantity", "N_opt") != "N_opt":
        raise ValueError(f"target.quantity: expected 'N_opt', found {value.get('quantity')!r}")
    compute = check_flops(value.get("compute"), "target.compute")
    ratio = check_number(value.get("max_ratio"), "target.max_ratio", min=1.0, min_inclusive=False,
                         what="an interval ratio above 1 (upper / lower bound), e.g. 2.0")
    return Target(compute, ratio)


def adaptive_settings(target: Target | None, max_extensions: int = MAX_EXTENSIONS) -> dict[str, Any]:
    check_int(max_extensions, "max_extensions", min=0)
    return {"target": target.to_dict() if target else None, "max_extensions": max_extensions, "rounds": []}


def predicted_centre(plan: SweepPlan, records: list[Any], compute: float) -> tuple[float | None, str]:
    """N_opt at `compute` from the budgets trained so far: a power law through 2+ bracketed IsoFLOP vertices,
    else the one vertex scaled by (C / C_v)^0.5 (the Chinchilla exponent); None without a vertex."""
    from flops_fit.analysis.isoflop import fit_budget

    records = on_budget_records(records)
    vertices = []
    for c in sorted({r.compute_budget for r in records if r.ok}):
        runs = [r for r in records if r.ok and r.compute_budget == c]
        if len({r.num_params for r in runs}) < 3:
            continue
        o = fit_budget(c, np.array([r.num_params for r in runs], float), np.array([r.final_loss for r in runs]))
        vertices.append(o)
    good = [o for o in vertices if o.in_range]
    if len(good) >= 2:
        a, b = np.polyfit(np.log([o.compute_budget for o in good]), np.log([o.n_opt for o in good]), 1)
        a = float(np.clip(a, 0.1, 0.9))  # a wild exponent from two noisy vertices must not throw the grid away
        n = float(math.exp(b + a * math.log(compute)))
        return n, f"N_opt ∝ C^{a:.3f} through {len(good)} bracketed vertices"
    if vertices:
        o = (good or vertices)[-1]
        n = o.n_opt * math.sqrt(compute / o.compute_budget)
        return n, f"the vertex at C={o.compute_budget:.3g} scaled by (C/C_v)^0.5" + (
            "" if o.in_range else " (not bracketed: its best sampled size)")
    return None, "no vertex yet: the centre guess"


def on_budget_records(records: list[Any]) -> list[Any]:
    """The records of IsoFLOP points: extra branches (on no budget; their records say so, checked against the
    plan when read) decide nothing here."""
    return [r for r in records if not r.details.get("extra")]


def open_side_targets(plan: SweepPlan, records: list[Any], compute: float) -> tuple[list[float], str] | None:
    """Sizes beyond the open edge of an unbracketed budget (the per-budget spacing apart), or None when its
    minimum is bracketed (or cannot be judged)."""
    from flops_fit.analysis.isoflop import fit_budget

    runs = [r for r in on_budget_records(records) if r.ok and r.compute_budget == compute]
    if len({r.num_params for r in runs}) < 3:
        return None
    n = np.array([r.num_params for r in runs], float)
    o = fit_budget(compute, n, np.array([r.final_loss for r in runs]))
    if o.in_range:
        return None
    s = plan.settings
    step = 10 ** (2.0 * s.span_decades / max(1, s.num_model_sizes - 1))
    below = o.n_opt <= n.min() * (1 + 1e-9) or (o.parabola is not None and o.parabola[0] > 0
                                                 and -o.parabola[1] / (2 * o.parabola[0]) < math.log(n.min()))
    edge = n.min() if below else n.max()
    targets = [edge / step ** j if below else edge * step ** j for j in range(1, EXTEND_SIZES + 1)]
    return targets, f"minimum not bracketed ({o.warning.split(': ', 1)[-1]}): {EXTEND_SIZES} sizes added " + (
        "below the smallest" if below else "above the largest")


def interval_ratio(result: Any, compute: float) -> tuple[float, tuple[float, float] | None]:
    """(upper / lower bound of N_opt's interval at `compute`, the interval) by the headline approach; (inf,
    None) when there is no interval."""
    p = result.predict(compute)
    ci = p.get("optimal_params_ci")
    if not ci or not (ci[0] > 0 and math.isfinite(ci[1])):
        return math.inf, None
    return float(ci[1] / ci[0]), (float(ci[0]), float(ci[1]))


def run_adaptive(plan: SweepPlan, count_params: Callable[[int], int], *, train: Callable[[SweepPlan], None],
                 records: Callable[[], list[Any]], result: Callable[[], Any], save: Callable[[SweepPlan], None],
                 flops_per_unit: Callable[[int], float | None] | None = None) -> SweepPlan:
    """Decide, record, train round by round (rounds already in `plan.adaptive` are replayed, not re-decided).

    `train(plan)` trains every runnable experiment of the plan not yet done; `records()` are the finished
    runs; `result()` the analysis of them; `save(plan)` writes sweep.json. Returns the plan as it ends."""
    state = plan.adaptive
    target = Target(**state["target"]) if state.get("target") else None
    decided = list(state["rounds"])
    state["rounds"] = []
    for bi, C in enumerate(plan.budgets):
        if _replay_or_decide(plan, decided, "budget", C, lambda: _budget_round(plan, C, records()),
                             count_params, flops_per_unit, save, bi):
            train(plan)
        for _ in range(int(state["max_extensions"])):
            made = _replay_or_decide(plan, decided, "extend", C, lambda: _extend_round(plan, C, records()),
                                     count_params, flops_per_unit, save, bi)
            if made is None:
                break
            train(plan)
        if target is not None and MIN_BUDGETS_BEFORE_STOP - 1 <= bi < len(plan.budgets) - 1:
            stop = _replay_or_decide(plan, decided, "stop", C, lambda: _stop_round(C, target, result()),
                                     count_params, flops_per_unit, save, bi)
            if stop is not None:
                break
    return plan


def _replay_or_decide(plan: SweepPlan, decided: list[dict[str, Any]], kind: str, C: float,
                      decide: Callable[[], dict[str, Any] | None], count_params: Callable[[int], int],
                      flops_per_unit: Any, save: Callable[[SweepPlan], None], bi: int) -> dict[str, Any] | None:
    """The next round of this kind at C: replayed from sweep.json when it was decided before, else decided
    now (None: nothing to do), its experiments planned, recorded and saved before anything trains."""
    if decided and decided[0]["kind"] == kind and decided[0]["compute_budget"] == C:
        plan.adaptive["rounds"].append(decided.pop(0))
        return plan.adaptive["rounds"][-1]
    if decided:  # a recorded round of another kind comes first: this one was not taken then
        return None
    rnd = decide()
    if rnd is None:
        return None
    if kind != "stop":
        new = plan_sweep([C], count_params, size_param=plan.size_param, model_name=plan.model_name,
                         model_kwargs=plan.model_kwargs, settings=plan.settings, flops_per_unit=flops_per_unit,
                         centres={C: rnd["centre"]} if "centre" in rnd else None,
                         targets={C: rnd["targets"]} if "targets" in rnd else None)
        have = {e.experiment_id for e in plan.experiments}
        exps = [_at_index(e, bi) for e in new.experiments if e.experiment_id not in have]
        if kind == "extend" and not any(not e.flagged for e in exps):
            return None  # the size grid cannot go further on that side: nothing to add
        plan.experiments.extend(exps)
        plan.dropped.extend(new.dropped)
        rnd["experiments"] = [e.experiment_id for e in exps]
    plan.adaptive["rounds"].append({"kind": kind, "compute_budget": C, **rnd})
    save(plan)
    return rnd


def _at_index(e: Any, bi: int) -> Any:
    import dataclasses

    return dataclasses.replace(e, budget_index=bi)


def _budget_round(plan: SweepPlan, C: float, records: list[Any]) -> dict[str, Any]:
    centre, why = predicted_centre(plan, records, C)
    if centre is None:
        return {"reason": why}
    return {"centre": centre, "reason": f"centred on N={centre:.4g}: {why}"}


def _extend_round(plan: SweepPlan, C: float, records: list[Any]) -> dict[str, Any] | None:
    found = open_side_targets(plan, records, C)
    if found is None:
        return None
    targets, why = found
    return {"targets": targets, "reason": why}


def _stop_round(C: float, target: Target, result: Any) -> dict[str, Any] | None:
    """Stop when the interval is narrow enough and the two approaches agree at the target compute (a
    disagreement means the interval of either one may not hold the truth)."""
    ratio, ci = interval_ratio(result, target.compute)
    if ratio > target.max_ratio:
        return None
    doubts = [f for f in result.predict(target.compute)["findings"] if f.severity == "disagree"]
    if doubts:
        return None
    return {"reason": f"N_opt at C={target.compute:.3g}: interval ×{ratio:.3g} ({ci[0]:.4g}-{ci[1]:.4g}) is within "
                      f"the target ×{target.max_ratio:g} after the budget C={C:.3g}; no further budget is trained",
            "ratio": ratio}


def progress_lines(plan: SweepPlan | None, result: Any = None) -> list[str]:
    """What an adaptive sweep decided and how far it got, for plan.summary() and Result.summary()."""
    if plan is None or not plan.adaptive:
        return []
    state = plan.adaptive
    rounds = state.get("rounds", [])
    trained = sorted({r["compute_budget"] for r in rounds if r["kind"] == "budget"})
    lines = [f"adaptive: {len(trained)} of {len(plan.budgets)} budgets trained, smallest first, each centred on "
             f"the N_opt its predecessors predict; {sum(r['kind'] == 'extend' for r in rounds)} extension(s) of "
             "unbracketed budgets"]
    lines += [f"  C={r['compute_budget']:.3g} {r['kind']}: {r['reason']}" for r in rounds]
    target = state.get("target")
    if target:
        stop = [r for r in rounds if r["kind"] == "stop"]
        if stop:
            lines.append(f"target reached: {stop[0]['reason']}")
        elif result is not None:
            ratio, _ = interval_ratio(result, target["compute"])
            lines.append(f"target NOT reached: N_opt at C={target['compute']:.3g} spans ×{ratio:.3g} against the "
                         f"target ×{target['max_ratio']:g} after every budget; add budgets or runs")
            lines += _forecast_lines(result, target)
    return lines


def _forecast_lines(result: Any, target: Mapping[str, Any]) -> list[str]:
    """What more budgets would reach the target, by flops_fit.forecast (nothing when it cannot say)."""
    from flops_fit.forecast import precision_forecast

    try:
        f = precision_forecast(result, target["compute"], target["max_ratio"])
    except (ValueError, TypeError):
        return []
    return [f"forecast: {f.verdict()} (ff.precision_forecast)"]


def read_previous(path: Path, plan: SweepPlan) -> SweepPlan | None:
    """The adaptive plan in sweep.json when it is this study's (same fingerprint), to replay its rounds."""
    if not path.exists():
        return None
    old = SweepPlan.load(str(path))
    return old if old.adaptive and old.fingerprint() == plan.fingerprint() else None
