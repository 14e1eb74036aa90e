"""Study designs: how the planned (N, D) points of a sweep are trained.

``"separate"``
    One run per point, each with its own LR schedule ending at its own last step.
``"branches"`` (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
    Durations")
    One trunk per model size, trained once at the peak LR after warmup (no decay), and every point of that
    size a WSD *cooldown branch* forked from the trunk's state at the step where its own WSD cooldown
    starts. A branch is therefore exactly the WSD run of its own length (same warmup, same data, same
    RNG, same LR at every step) but pays only for its cooldown: the trunk's steps are shared by every
    point of the size.

``extra_branches=k`` (with ``"branches"``) adds k more cooldown branches in each gap between two
consecutive token counts planned for one size, log-evenly spaced (:func:`extra_points`). They lie on
the trunk the size trains anyway, so each costs only its cooldown; they sit on no IsoFLOP budget, so
Approach 2 leaves them out and Approach 3 fits them with the rest (the analysis resamples them as one
stratum of their own and keeps them out of the back-test of any budget they do not lie below).

The plan of a design is pure data, written into sweep.json; the trainer
(:mod:`flops_fit.training.branches`) and the mock engine follow it.
"""

from __future__ import annotations

import math
from typing import Any

from flops_fit.training.config import TrainConfig
from flops_fit.training.schedule import cooldown_steps, warmup_steps

SEPARATE, BRANCHES = "separate", "branches"
DESIGNS = (SEPARATE, BRANCHES)


def trunk_id(size_param: str, size_value: int) -> str:
    return f"trunk-{size_param}{int(size_value)}"


def extra_points(plan: Any, k: int) -> list[Any]:
    """`k` extra points per gap between consecutive planned token counts of each size (runnable budget points
    only), at D_lo·(D_hi/D_lo)^(j/(k+1)), j = 1..k: deterministic, so a plan that grows (an adaptive sweep)
    keeps the ids of the extras it had. A size planned at one budget has no gap and gets none."""
    import dataclasses

    by_size: dict[int, list[Any]] = {}
    for e in plan.runnable:
        if not e.extra:
            by_size.setdefault(e.size_value, []).append(e)
    out = []
    for value in sorted(by_size):
        exps = sorted(by_size[value], key=lambda e: e.num_tokens)
        for lo, hi in zip(exps, exps[1:]):
            for j in range(1, k + 1):
                d = lo.num_tokens * (hi.num_tokens / lo.num_tokens) ** (j / (k + 1))
                c = (lo.flops_per_unit or 6.0 * lo.num_params) * d
                out.append(dataclasses.replace(lo, experiment_id=f"X{c:.6g}-{plan.size_param}{value}",
                                               compute_budget=float(c), budget_index=hi.budget_index,
                                               num_tokens=float(d), extra=True))
    return out


def with_extra_branches(plan: Any, k: int) -> None:
    """Replace `plan`'s extra points by those its budget points now call for (none when k is 0)."""
    plan.experiments = [e for e in plan.experiments if not e.extra] + (extra_points(plan, k) if k else [])


def plan_branches(plan: Any, config: TrainConfig, units_per_step: float | None) -> dict[str, Any]:
    """Trunks and branches of `plan`'s runnable points, and what they cost against separate runs.

    With `units_per_step` (real training) forks are optimizer steps: the trunk's warmup is the
    one the size's shortest run would get (so no branch's warmup exceeds its own cap), each branch
    forks at ``total_steps - cooldown_steps(total_steps, warmup, cooldown_fraction)`` — where its
    own WSD cooldown starts. Without it (the mock engine) forks are at D·(1 − cooldown_fraction).
    """
    f = float(config.cooldown_fraction)
    by_size: dict[int, list[Any]] = {}
    for e in plan.runnable:
        by_size.setdefault(e.size_value, []).append(e)
    trunks: dict[str, dict[str, Any]] = {}
    branches: dict[str, dict[str, Any]] = {}
    for value in sorted(by_size):
        exps = sorted(by_size[value], key=lambda e: (e.num_tokens, e.experiment_id))
        n = exps[0].num_params
        per_unit = exps[0].flops_per_unit or 6.0 * n
        tid = trunk_id(plan.size_param, value)
        warm = None
        if units_per_step:
            steps = {e.experiment_id: max(1, math.ceil(e.num_tokens / units_per_step - 1e-9)) for e in exps}
            warm = warmup_steps(config, min(steps.values()), float(n), float(units_per_step))
        forks = []
        for e in exps:
            if units_per_step:
                total = steps[e.experiment_id]
                fork_step = total - cooldown_steps(total, warm, f)
                fork_units = min(fork_step * float(units_per_step), e.num_tokens)
            else:
                total, fork_step, fork_units = None, None, e.num_tokens * (1.0 - f)
            forks.append((fork_step, fork_units))
            branches[e.experiment_id] = {
                "trunk_id": tid, "fork_step": fork_step, "total_steps": total, "fork_units": fork_units,
                "branch_units": e.num_tokens - fork_units, "flops": per_unit * (e.num_tokens - fork_units),
                **({"extra": True} if e.extra else {}),
            }
        trunk_units = max(u for _, u in forks)
        trunks[tid] = {
            "size_value": int(value), "num_params": int(n), "warmup_steps": warm,
            "fork_steps": sorted({s for s, _ in forks if s is not None}), "units": trunk_units,
            "flops": per_unit * trunk_units, "branches": [e.experiment_id for e in exps],
        }
    trunk_flops = sum(t["flops"] for t in trunks.values())
    branch_flops = sum(b["flops"] for b in branches.values())
    separate = float(sum(e.flops for e in plan.runnable))
    total = trunk_flops + branch_flops
    return {
        "name": BRANCHES, "cooldown_fraction": f, "cooldown_shape": config.cooldown_shape,
        "units_per_step": units_per_step, "trunks": trunks, "branches": branches,
        "flops": {"trunks": trunk_flops, "branches": branch_flops, "total": total, "separate_runs": separate,
                  "ratio": total / separate if separate else math.nan},
    }


def run_costs(plan: Any, order: list[Any]) -> dict[str, float]:
    """FLOPs each run of `order` (experiments, in the order they will be submitted) really costs: its own
    compute as a separate run; under branches its cooldown, plus its trunk for the first branch of each
    trunk in that order (the one that will train it). What progress and time left are counted in."""
    design = plan.design
    if not design:
        return {e.experiment_id: e.flops for e in order}
    out, paid = {}, set()
    for e in order:
        br = design["branches"].get(e.experiment_id)
        if br is None:
            out[e.experiment_id] = e.flops
            continue
        out[e.experiment_id] = br["flops"]
        if br["trunk_id"] not in paid:
            paid.add(br["trunk_id"])
            out[e.experiment_id] += design["trunks"][br["trunk_id"]]["flops"]
    return out


def describe(design: dict[str, Any] | None) -> str:
    """One line for plan.summary(): the design and its compute against separate runs."""
    if not design:
        return ""
    fl = design["flops"]
    extra = sum(bool(b.get("extra")) for b in design["branches"].values())
    return (f"design: {len(design['trunks'])} constant-LR trunk(s) with {len(design['branches'])} WSD cooldown "
            f"branch(es) ({design['cooldown_shape']}, last {100 * design['cooldown_fraction']:g}% of each run)"
            + (f", {extra} of them extra branches between budgets (Approach 3 only)" if extra else "")
            + f": {fl['total']:.3e} FLOPs, ×{fl['ratio']:.2f} of the {fl['separate_runs']:.3e} the same points cost "
            "as separate runs")
