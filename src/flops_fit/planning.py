"""IsoFLOP sweep design: which (size value, N, D) to train at each compute budget.

A plan is pure data: it is computed from the budgets and from the user's
constructor (to map target parameter counts to size values) and it is the
only thing the trainer needs to know about the sweep.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from flops_fit import io
from flops_fit.flops import FLOPS_6ND
from flops_fit.validation import check_flops

PARAM_COUNT_ALL, PARAM_COUNT_NON_EMBEDDING = "all", "non_embedding"
PARAM_COUNTS = (PARAM_COUNT_ALL, PARAM_COUNT_NON_EMBEDDING)
SWEEP_SCHEMA = 1
SWEEP_KIND = "flops-fit/sweep"


@dataclass(frozen=True)
class Experiment:
    """One training run of the sweep, planned for exactly one budget (or, an extra branch, for none)."""

    experiment_id: str
    #: the budget this run was planned for (group by this, never round); an extra branch's own compute
    compute_budget: float
    budget_index: int
    size_value: int  # value passed to the model's size parameter
    num_params: int  # N, as counted by the model's num_params()
    num_tokens: float  # D = C / (6 N), or C / measured FLOPs per unit: data units (tokens or samples) to train on
    target_params: float  # the N the planner aimed at
    flagged: bool = False
    flag_reason: str = ""
    #: measured training FLOPs per data unit at this size, when the plan was made by them (None: 6·N)
    flops_per_unit: float | None = None
    #: an extra cooldown branch between two budgets of its size (flops_fit.design.extra_points): on no
    #: IsoFLOP budget, so it feeds Approach 3 only
    extra: bool = False

    @property
    def tokens_per_param(self) -> float:
        return self.num_tokens / self.num_params

    @property
    def flops(self) -> float:
        """The compute this run spends, as the plan counts it (6·N·D, or measured per-unit FLOPs · D)."""
        per_unit = 6.0 * self.num_params if self.flops_per_unit is None else self.flops_per_unit
        return per_unit * self.num_tokens


@dataclass
class PlanSettings:
    """Every number the planner used, so a plan can be re-created and compared."""

    num_model_sizes: int = 7
    span_decades: float = 1.0  # each side of the centre guess, in log10 N
    center_tokens_per_param: float = 20.0  # centre guess N* = sqrt(C / (6 * this))
    size_multiple: int = 1
    size_values: list[int] | None = None
    size_min: int = 1
    size_max: int = 1 << 16
    units_per_step: int | None = None  # batch units per optimizer step, for the too-few-steps flag
    min_steps: int = 20
    #: what N counts: "all" trainable parameters (Chinchilla), or "non_embedding" (Kaplan: without embedding
    #: tables and vocabulary-sized heads, as the model's num_params(non_embedding=True) says)
    param_count: str = PARAM_COUNT_ALL
    #: take every budget's sizes from one log-spaced grid of N shared by all budgets, so that sizes repeat
    #: across budgets (what a trunk-and-branch design shares); None: on for design="branches", else off
    align_sizes: bool | None = None
    #: log10 N of that shared grid: set by the planner from the first budget's centre, so that budgets planned
    #: later (an adaptive sweep's rounds) take their sizes from the same grid
    grid_anchor: float | None = None


@dataclass
class SweepPlan:
    """The experiments of an IsoFLOP sweep and what they will cost."""

    budgets: list[float]
    experiments: list[Experiment]
    size_param: str
    model_name: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    settings: PlanSettings = field(default_factory=PlanSettings)
    flops_accounting: str = FLOPS_6ND
    cost_estimate: dict[str, Any] | None = None
    #: how the runs will be produced (mode, seed, mock law or train config); part of the fingerprint
    run_settings: dict[str, Any] = field(default_factory=dict)
    #: measured FLOPs per data unit against 6·N at the smallest and largest size (a diagnostic, not planned by)
    flops_check: list[dict[str, float]] = field(default_factory=list)
    #: planned targets that were not kept, each {"compute_budget", "target_params", "size_value", "reason"}:
    #: two targets that map to one size value keep one run, and the other is listed here, never dropped silently
    dropped: list[dict[str, Any]] = field(default_factory=list)
    #: how many runs train at once and with how many threads ({"workers", "threads_per_run", "reason"});
    #: operational, not part of the fingerprint (see training.executors.choose_execution)
    execution: dict[str, Any] | None = None
    #: how the points are trained when not as separate runs: trunks and cooldown branches (see flops_fit.design);
    #: part of the fingerprint
    design: dict[str, Any] | None = None
    #: an adaptive sweep's settings and the rounds decided so far (see flops_fit.adaptive); its fingerprint
    #: then covers budgets, settings and target, not the experiments, which grow round by round
    adaptive: dict[str, Any] | None = None

    # ---- summaries -------------------------------------------------------
    @property
    def runnable(self) -> list[Experiment]:
        return [e for e in self.experiments if not e.flagged]

    @property
    def on_budget(self) -> list[Experiment]:
        """The IsoFLOP points: every experiment but the extra branches."""
        return [e for e in self.experiments if not e.extra]

    def planned_runs(self) -> dict[str, tuple[float, int, float, bool]]:
        """experiment id -> (budget, N, D, extra) as planned: what every record read back is checked against."""
        return {e.experiment_id: (e.compute_budget, e.num_params, e.num_tokens, e.extra) for e in self.experiments}

    @property
    def total_flops(self) -> float:
        return float(sum(e.flops for e in self.runnable))

    def to_dataframe(self) -> pd.DataFrame:
        rows = []
        for e in self.experiments:
            rows.append(
                {
                    "experiment_id": e.experiment_id,
                    "compute_budget": e.compute_budget,
                    "size_value": e.size_value,
                    "N": e.num_params,
                    "D": e.num_tokens,
                    "tokens_per_param": e.tokens_per_param,
                    "flops": e.flops,
                    "flops_per_unit": 6.0 * e.num_params if e.flops_per_unit is None else e.flops_per_unit,
                    "flagged": e.flagged,
                    "flag_reason": e.flag_reason,
                    "extra": e.extra,
                }
            )
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """A readable table of the sweep, with its total compute."""
        df = self.to_dataframe()
        lines = [
            f"IsoFLOP sweep: {len(self.budgets)} budgets, {len(self.experiments)} experiments "
            f"({len(self.runnable)} runnable), size parameter '{self.size_param}' of {self.model_name}"
            + (", N without embeddings (param_count='non_embedding')"
               if self.settings.param_count == PARAM_COUNT_NON_EMBEDDING else ""),
            f"total compute: {self.total_flops:.3e} FLOPs "
            + ("(6·N·D)" if self.flops_accounting == FLOPS_6ND else
               "(measured: FlopCounterMode FLOPs per data unit at each size × D; each run records its own)"),
        ]
        if self.cost_estimate:
            est = self.cost_estimate
            per = list((est.get("per_experiment") or {}).values())
            k = int(est.get("workers") or 1)
            wall = est.get("wall_seconds", est.get("total_seconds", float("nan")))
            lines.append(
                f"estimated wall time: {wall:.0f} s on {est.get('device', '?')}"
                + (f", {k} runs at once ({est.get('total_seconds', 0):.0f} s one at a time)" if k > 1 else "")
                + (f" with {est['num_threads']} thread(s) per run" if est.get("num_threads") else "")
                + (f" (runs {min(per):.0f}-{max(per):.0f} s each)" if per else "")
            )
        if self.design:
            from flops_fit.design import describe

            lines.append(describe(self.design))
        if self.adaptive is not None:
            from flops_fit.adaptive import progress_lines

            lines += progress_lines(self)
        if self.execution:
            lines.append(f"execution: {self.execution.get('reason', '')}")
        lines += [f"REFUSED (would not train): {p}" for p in plan_problems(self)]
        lines += [f"measured FLOPs per data unit: ×{g['ratio_to_6N']:.3g} of 6·N at N={g['N']:,.0f}"
                  + (" (D planned by it)" if self.flops_accounting != FLOPS_6ND else "")
                  for g in self.flops_check]
        if self.dropped:
            lines.append(f"{len(self.dropped)} planned size(s) not kept:")
            lines += [f"  C={d['compute_budget']:.2e}: target N={d['target_params']:.3g}: {d['reason']}"
                      for d in self.dropped]
        show = df.assign(
            compute_budget=df.compute_budget.map("{:.2e}".format),
            N=df.N.map("{:,}".format),
            D=df.D.map("{:.3e}".format),
            tokens_per_param=df.tokens_per_param.map("{:.1f}".format),
        )[["compute_budget", "size_value", "N", "D", "tokens_per_param", "flag_reason"]]
        if df["extra"].any():  # an extra branch's compute is its own, on no budget
            show.insert(0, "point", df["extra"].map({True: "extra", False: "budget"}))
        lines.append(show.to_string(index=False))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """Notebooks: the summary's header lines and the experiments as a table (escaped: names come from files)."""
        import html

        head = self.summary().split("\n")
        head = head[: next((i for i, ln in enumerate(head) if ln.lstrip().startswith("compute_budget")), len(head))]
        cols = ["experiment_id", "compute_budget", "size_value", "N", "D", "tokens_per_param", "flagged", "flag_reason"]
        table = self.to_dataframe()[cols].to_html(index=False, float_format=lambda v: f"{v:.4g}", escape=True)
        return "<div>" + "<br>".join(html.escape(ln) for ln in head) + table + "</div>"

    def __repr__(self) -> str:  # keep notebooks readable
        return (
            f"SweepPlan(budgets={len(self.budgets)}, experiments={len(self.experiments)}, "
            f"total_flops={self.total_flops:.3e})"
        )

    # ---- persistence -----------------------------------------------------
    def fingerprint(self) -> str:
        """Hash of everything that makes two plans the same sweep."""
        core = {
            "size_param": self.size_param,
            "model_name": self.model_name,
            "model_kwargs": _jsonable(self.model_kwargs),
            "flops_accounting": self.flops_accounting,
            "run_settings": _jsonable(self.run_settings),
            "experiments": [
                [e.experiment_id, e.compute_budget, e.size_value, e.num_params, e.num_tokens]
                for e in self.experiments
            ],
        }
        if self.design and self.adaptive is None:
            core["design"] = _jsonable(self.design)
        if self.adaptive is not None:  # grows round by round: identified by what decides the rounds
            core["experiments"] = {"adaptive": list(self.budgets), "settings": _jsonable(asdict(self.settings)),
                                   "target": self.adaptive.get("target"),
                                   "max_extensions": self.adaptive.get("max_extensions")}
        blob = json.dumps(core, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SWEEP_SCHEMA,
            "kind": SWEEP_KIND,
            "fingerprint": self.fingerprint(),
            "size_param": self.size_param,
            "model_name": self.model_name,
            "model_kwargs": _jsonable(self.model_kwargs),
            "flops_accounting": self.flops_accounting,
            "settings": asdict(self.settings),
            "run_settings": _jsonable(self.run_settings),
            "budgets": list(self.budgets),
            "total_flops": self.total_flops,
            "cost_estimate": self.cost_estimate,
            "experiments": [asdict(e) for e in self.experiments],
            "dropped": list(self.dropped),
            "flops_check": list(self.flops_check),
            "execution": self.execution,
            "design": self.design,
            "adaptive": self.adaptive,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "sweep.json") -> "SweepPlan":
        io.check_header(data, SWEEP_KIND, SWEEP_SCHEMA, source)
        for key in ("size_param", "model_name", "budgets", "experiments"):
            io.require(data, key, source)
        try:
            exps = [Experiment(**e) for e in data["experiments"]]
        except TypeError as exc:
            raise ValueError(f"{source}: field 'experiments' has a malformed entry: {exc}") from None
        for i, e in enumerate(exps):  # ids name files and folders: checked before they touch the file system
            io.check_id(e.experiment_id, f"{source}: experiments[{i}].experiment_id")
        design = data.get("design")
        if design is not None:
            _check_design(design, {e.experiment_id for e in exps}, source)
        settings = PlanSettings(**data.get("settings", {}))
        return cls(
            budgets=[float(b) for b in data["budgets"]],
            experiments=exps,
            size_param=data["size_param"],
            model_name=data["model_name"],
            model_kwargs=data.get("model_kwargs", {}),
            settings=settings,
            flops_accounting=data.get("flops_accounting", FLOPS_6ND),
            cost_estimate=data.get("cost_estimate"),
            run_settings=data.get("run_settings", {}),
            dropped=list(data.get("dropped", [])),
            flops_check=list(data.get("flops_check", [])),
            execution=data.get("execution") if isinstance(data.get("execution"), dict) else None,
            design=design,
            adaptive=_check_adaptive(data.get("adaptive"), {e.experiment_id for e in exps}, source),
        )

    def save(self, path: str) -> None:
        io.atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str) -> "SweepPlan":
        return cls.from_dict(io.read_json(path), source=str(path))


def _check_adaptive(adaptive: Any, ids: set[str], source: str) -> dict[str, Any] | None:
    """An adaptive plan's rounds name experiments of the plan and budgets as numbers, or the file is refused."""
    if adaptive is None:
        return None
    where = f"{source}: field 'adaptive'"
    if not isinstance(adaptive, dict) or not isinstance(adaptive.get("rounds"), list):
        raise ValueError(f"{where}: expected an object with a 'rounds' list, found {type(adaptive).__name__}")
    for i, r in enumerate(adaptive["rounds"]):
        if not isinstance(r, dict) or r.get("kind") not in ("budget", "extend", "stop") \
                or not isinstance(r.get("compute_budget"), (int, float)):
            raise ValueError(f"{where}.rounds[{i}]: expected kind budget/extend/stop and a compute_budget")
        unknown = [e for e in r.get("experiments", []) if e not in ids]
        if unknown:
            raise ValueError(f"{where}.rounds[{i}]: {unknown[0]!r} is not an experiment of this plan")
    return adaptive


def _check_design(design: Any, ids: set[str], source: str) -> None:
    """A design read from sweep.json names folders (trunk ids) and steps: checked before anything uses them."""
    where = f"{source}: field 'design'"
    if not isinstance(design, dict) or not isinstance(design.get("trunks"), dict) \
            or not isinstance(design.get("branches"), dict):
        raise ValueError(f"{where}: expected an object with 'trunks' and 'branches', found {type(design).__name__}")
    for tid, t in design["trunks"].items():
        io.check_id(tid, f"{where}.trunks key")
        if not isinstance(t, dict) or not all(isinstance(s, int) and s >= 0 for s in t.get("fork_steps", [])):
            raise ValueError(f"{where}.trunks[{tid!r}]: expected fork_steps as non-negative integers")
    for eid, b in design["branches"].items():
        if eid not in ids:
            raise ValueError(f"{where}.branches: {eid!r} is not an experiment of this plan")
        if not isinstance(b, dict) or b.get("trunk_id") not in design["trunks"]:
            raise ValueError(f"{where}.branches[{eid!r}]: its trunk_id is not one of the design's trunks")
        step = b.get("fork_step")
        if step is not None and not (isinstance(step, int) and step >= 0):
            raise ValueError(f"{where}.branches[{eid!r}].fork_step: expected a non-negative integer, found {step!r}")


def _jsonable(obj: Any) -> Any:
    """Model kwargs as JSON (repr for anything JSON cannot hold)."""
    try:
        json.dumps(obj)
        return obj
    except TypeError:
        if isinstance(obj, dict):
            return {str(k): _jsonable(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [_jsonable(v) for v in obj]
        return repr(obj)


# ---------------------------------------------------------------------------
# budgets


def make_budgets(
    compute_budgets: Sequence[float] | None = None,
    min_flops: float | None = None,
    max_flops: float | None = None,
    num_budgets: int | None = None,
) -> list[float]:
    """Explicit budgets, or a geometric grid from min_flops to max_flops."""
    if compute_budgets is not None:
        if min_flops is not None or max_flops is not None:
            raise ValueError(
                "compute_budgets: give either an explicit list or min_flops/max_flops, not both"
            )
        if isinstance(compute_budgets, (int, float)):
            compute_budgets = [compute_budgets]
        budgets = [check_flops(b, f"compute_budgets[{i}]") for i, b in enumerate(compute_budgets)]
        if not budgets:
            raise ValueError("compute_budgets: expected at least one budget, found an empty list")
    else:
        if min_flops is None or max_flops is None:
            raise ValueError(
                "compute_budgets: expected a list of FLOP budgets or min_flops and max_flops, found neither"
            )
        lo = check_flops(min_flops, "min_flops")
        hi = check_flops(max_flops, "max_flops")
        n = 5 if num_budgets is None else num_budgets
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"num_budgets: expected a positive integer, found {n!r}")
        if hi < lo:
            raise ValueError(f"max_flops: expected >= min_flops ({lo:.3e}), found {hi:.3e}")
        if n == 1 or hi == lo:
            budgets = [lo] if hi == lo else [lo, hi][:n]
        else:
            budgets = [float(x) for x in np.geomspace(lo, hi, n)]
            budgets[0], budgets[-1] = lo, hi
    dup = sorted({b for b in budgets if budgets.count(b) > 1})
    if dup:
        raise ValueError(f"compute_budgets: expected distinct budgets, found duplicates {dup}")
    return sorted(budgets)


# ---------------------------------------------------------------------------
# size search


class SizeSearch:
    """Maps a target parameter count to a size value of the user's constructor.

    num_params is assumed monotone (non-decreasing) in the size value; counts are
    cached, so each size value is instantiated at most once.
    """

    def __init__(
        self,
        count_params: Callable[[int], int],
        *,
        size_multiple: int = 1,
        size_values: Sequence[int] | None = None,
        size_min: int = 1,
        size_max: int = 1 << 16,
    ) -> None:
        if not isinstance(size_multiple, int) or size_multiple < 1:
            raise ValueError(f"size_multiple: expected a positive integer, found {size_multiple!r}")
        self._count = count_params
        self._cache: dict[int, int] = {}
        self.multiple = size_multiple
        if size_values is not None:
            vals = sorted({int(v) for v in size_values})
            if not vals or vals[0] < 1:
                raise ValueError(f"size_values: expected positive integers, found {list(size_values)!r}")
            self.values: list[int] | None = vals
        else:
            self.values = None
        self.k_min = max(1, math.ceil(size_min / size_multiple))
        self.k_max = max(self.k_min, size_max // size_multiple)

    def params(self, value: int) -> int:
        if value not in self._cache:
            self._cache[value] = int(self._count(value))
        return self._cache[value]

    def closest(self, target: float) -> tuple[int, bool]:
        """(size value whose N is closest to target in log space, whether target was reachable)."""
        if self.values is not None:
            counts = np.array([self.params(v) for v in self.values], dtype=float)
            i = int(np.argmin(np.abs(np.log(counts) - math.log(target))))
            reachable = counts[0] <= target * 1.5 and counts[-1] >= target / 1.5
            return self.values[i], bool(reachable)
        m = self.multiple
        lo, hi = self.k_min, self.k_min
        if self.params(lo * m) >= target:
            return lo * m, self.params(lo * m) <= target * 1.5
        # exponential search for an upper bracket
        while self.params(hi * m) < target:
            if hi >= self.k_max:
                return hi * m, self.params(hi * m) >= target / 1.5
            lo, hi = hi, min(hi * 2, self.k_max)
        bisect = False
        while hi - lo > 1:  # invariant: N(lo) < target <= N(hi)
            n_lo, n_hi = self.params(lo * m), self.params(hi * m)
            if bisect or n_hi <= n_lo:
                mid = (lo + hi) // 2
            else:  # N is close to a power law in the size value: interpolate in log-log space
                t = (math.log(target) - math.log(n_lo)) / (math.log(n_hi) - math.log(n_lo))
                mid = round(math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo))))
                mid = min(max(mid, lo + 1), hi - 1)
            width = hi - lo
            if self.params(mid * m) < target:
                lo = mid
            else:
                hi = mid
            bisect = (hi - lo) > width / 2  # safeguard: bisect after a step that did not halve the bracket
        n_lo, n_hi = self.params(lo * m), self.params(hi * m)
        best = lo if abs(math.log(n_lo / target)) < abs(math.log(n_hi / target)) else hi
        return best * m, True


def plan_sweep(
    budgets: Sequence[float],
    count_params: Callable[[int], int],
    *,
    size_param: str,
    model_name: str,
    model_kwargs: dict[str, Any] | None = None,
    settings: PlanSettings | None = None,
    flops_per_unit: Callable[[int], float | None] | None = None,
    centres: Mapping[float, float] | None = None,
    targets: Mapping[float, Sequence[float]] | None = None,
) -> SweepPlan:
    """Design the IsoFLOP sweep: per budget, sizes evenly spaced in log N around the centre guess.

    `centres` (budget -> N) replaces the centre guess of those budgets (an adaptive design centres a
    budget on the N_opt its predecessors predict); `targets` (budget -> N values) replaces their sizes
    outright (sizes added on the open side of an unbracketed budget).

    `flops_per_unit(size_value)` (measured training FLOPs per data unit, None where it
    cannot be measured) plans each D as C / that instead of C / (6 N), so that every
    run's measured compute is its budget; the centre guess then spends C at
    `center_tokens_per_param` under the measured cost, not under 6·N.
    """
    s = settings or PlanSettings()
    if not isinstance(s.num_model_sizes, int) or s.num_model_sizes < 2:
        raise ValueError(f"num_model_sizes: expected an integer >= 2, found {s.num_model_sizes!r}")
    if not (isinstance(s.span_decades, (int, float)) and 0 < s.span_decades <= 4):
        raise ValueError(f"span_decades: expected a number in (0, 4], found {s.span_decades!r}")
    if not (s.center_tokens_per_param > 0):
        raise ValueError(
            f"center_tokens_per_param: expected a positive number, found {s.center_tokens_per_param!r}"
        )
    search = SizeSearch(
        count_params,
        size_multiple=s.size_multiple,
        size_values=s.size_values,
        size_min=s.size_min,
        size_max=s.size_max,
    )
    experiments: list[Experiment] = []
    dropped: list[dict[str, Any]] = []
    anchor = s.grid_anchor  # log10 N of the shared grid (align_sizes): the first budget's centre
    for bi, C in enumerate(budgets):
        n_center = (centres or {}).get(C) or _centre(C, s.center_tokens_per_param, search, flops_per_unit)
        if targets is not None and C in targets:
            wanted = np.asarray(targets[C], dtype=float)
        elif s.align_sizes:
            if anchor is None:
                anchor = math.log10(n_center)
            wanted = _aligned_targets(math.log10(n_center), anchor, s)
        else:
            wanted = np.logspace(math.log10(n_center) - s.span_decades, math.log10(n_center) + s.span_decades,
                                 s.num_model_sizes)
        chosen: dict[int, tuple[Experiment, bool]] = {}  # size value -> (experiment, target reachable)
        for target in wanted:
            value, reachable = search.closest(float(target))
            if value in chosen:
                # duplicate size within a budget (the size grid cannot resolve both targets): keep one,
                # preferring the target the size actually reaches, and list the other
                kept = chosen[value][0].target_params
                if not reachable or chosen[value][1]:
                    dropped.append(_collision(C, float(target), value, kept, size_param, s))
                    continue
                dropped.append(_collision(C, kept, value, float(target), size_param, s))
                del chosen[value]
            chosen[value] = (_experiment(C, bi, float(target), value, reachable, search, size_param, s,
                                         flops_per_unit), reachable)
        experiments.extend(e for e, _ in chosen.values())
    if s.align_sizes and anchor is not None:
        s.grid_anchor = anchor
    ids = [e.experiment_id for e in experiments]
    if len(set(ids)) != len(ids):
        raise ValueError("compute_budgets: budgets must differ in their first 6 significant digits")
    return SweepPlan(budgets=[float(b) for b in budgets], experiments=experiments, size_param=size_param,
                     model_name=model_name, model_kwargs=dict(model_kwargs or {}), settings=s, dropped=dropped)


def _aligned_targets(log_centre: float, anchor: float, s: PlanSettings) -> np.ndarray:
    """The `num_model_sizes` points of the shared grid anchor + j·step (step: the per-budget spacing,
    2·span/(k−1) decades) nearest this budget's centre."""
    k = s.num_model_sizes
    step = 2.0 * s.span_decades / (k - 1)
    start = round((log_centre - anchor) / step - (k - 1) / 2)
    return 10.0 ** (anchor + step * (start + np.arange(k)))


def _centre(C: float, tokens_per_param: float, search: "SizeSearch",
            flops_per_unit: Callable[[int], float | None] | None) -> float:
    """The N that spends C at `tokens_per_param`: sqrt(C / (6 t)) under 6·N; under a measured cost
    k(N)·6·N, a few fixed-point steps of N = sqrt(C / (6 k(N) t)) (k read at the nearest size value)."""
    n = math.sqrt(C / (6.0 * tokens_per_param))
    for _ in range(4 if flops_per_unit is not None else 0):
        value, _ = search.closest(n)
        fpu = flops_per_unit(value)
        if not fpu:
            break
        n = math.sqrt(C / (6.0 * tokens_per_param * fpu / (6.0 * search.params(value))))
    return n


def _experiment(C: float, bi: int, target: float, value: int, reachable: bool, search: "SizeSearch",
                size_param: str, s: PlanSettings,
                flops_per_unit: Callable[[int], float | None] | None = None) -> Experiment:
    """One planned run at size `value`, flagged (not trained) with its reasons when it cannot answer."""
    n = search.params(value)
    reasons = []
    fpu = None
    if flops_per_unit is not None:
        fpu = flops_per_unit(value)
        if not fpu:
            reasons.append(f"its FLOPs could not be measured at {size_param}={value} (flops_accounting='measured')")
            fpu = None
    d = C / (6.0 * n if fpu is None else fpu)
    if not reachable:
        reasons.append(f"target N={target:.3g} is outside what {size_param} in "
                       f"[{search.k_min * search.multiple}, {search.k_max * search.multiple}] reaches (got N={n:,})")
    if d < 1:
        reasons.append(f"D={d:.3g} is less than one data unit")
    elif s.units_per_step and d / s.units_per_step < s.min_steps:
        reasons.append(f"only {d / s.units_per_step:.1f} optimizer steps of {s.units_per_step} units "
                       f"(minimum {s.min_steps})")
    return Experiment(experiment_id=f"C{C:.6g}-{size_param}{value}", compute_budget=float(C), budget_index=bi,
                      size_value=int(value), num_params=int(n), num_tokens=float(d), target_params=target,
                      flagged=bool(reasons), flag_reason="; ".join(reasons),
                      flops_per_unit=None if fpu is None else float(fpu))


def _collision(C: float, target: float, value: int, kept: float, size_param: str, s: PlanSettings) -> dict:
    return {"compute_budget": float(C), "target_params": target, "size_value": int(value),
            "reason": f"maps to {size_param}={value}, the same size as target N={kept:.3g} (the size grid, "
                      f"multiples of {s.size_multiple}, cannot resolve both)"}


#: An IsoFLOP budget needs this many distinct runnable sizes to bracket its minimum with a parabola.
MIN_SIZES_PER_BUDGET = 3


def plan_problems(plan: SweepPlan) -> list[str]:
    """Why this plan cannot give a scaling law, if it cannot: no runnable run, runnable runs at fewer than 2
    budgets (one IsoFLOP curve pins down no law), or a budget with fewer than 3 distinct runnable sizes (no
    bracketed minimum). Each reason says what to change. Empty for a plan that may train."""
    if not plan.runnable:
        reasons = sorted({e.flag_reason for e in plan.experiments if e.flagged})
        return [f"compute_budgets: no runnable experiment in this plan ({len(plan.experiments)} flagged"
                + (f": {reasons[0]}" if reasons else "") + "); use larger budgets or other size bounds"]
    if plan.adaptive is not None:  # its budgets come one by one; the fixed grid it starts from was checked
        return []
    budgets = sorted({e.compute_budget for e in plan.runnable if not e.extra})
    if len(budgets) < 2:
        return [f"compute_budgets: a scaling-law fit needs runnable runs at 2 or more budgets (3 or more "
                f"recommended), found {len(budgets)} ({budgets}); add budgets, or pass train=False for the plan alone"]
    short = []
    for c in sorted({e.compute_budget for e in plan.on_budget}):
        sizes = {e.size_value for e in plan.runnable if e.compute_budget == c and not e.extra}
        if len(sizes) < MIN_SIZES_PER_BUDGET:
            why = sorted({e.flag_reason for e in plan.experiments if e.compute_budget == c and e.flagged})
            why += [d["reason"] for d in plan.dropped if d["compute_budget"] == c][:1]
            short.append(f"C={c:.3g}: {len(sizes)} size(s) {sorted(sizes)}" + (f" ({why[0]})" if why else ""))
    if short:
        return [f"compute_budgets: every budget needs {MIN_SIZES_PER_BUDGET} or more distinct runnable model sizes "
                f"to bracket its IsoFLOP minimum (5 or more recommended); {'; '.join(short)}. Change what limits "
                "it: a finer size grid (size_multiple / size_values), wider size bounds (size_min, size_max), more "
                "sizes (num_model_sizes, span_decades), larger budgets (more optimizer steps), or drop that budget"]
    return []


def check_trainable(plan: SweepPlan) -> None:
    """Refuse, before anything trains, a plan that cannot give a scaling law (see plan_problems); the library
    and every ff-* driver call this one check."""
    problems = plan_problems(plan)
    if problems:
        raise ValueError(problems[0])
