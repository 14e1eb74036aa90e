"""find_optimal(): contract → plan → train → analyse → Result. Orchestration only."""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from flops_fit.contract import ModelContract, check_model
from flops_fit.planning import PlanSettings, SweepPlan, make_budgets, plan_sweep
from flops_fit.result import RESULTS_FILE, SWEEP_FILE, Result
from flops_fit.training.executors import get_executor
from flops_fit.training.mock import MockLaw, mock_run
from flops_fit.training.store import ResultsStore
from flops_fit.training.sweep import run_sweep

if TYPE_CHECKING:
    from flops_fit.comparison import Comparison

MODES = ("local", "mock")


def _probe_size(settings: PlanSettings, probe_size: int | None) -> int:
    if probe_size is not None:
        if not isinstance(probe_size, int) or probe_size < 1:
            raise ValueError(f"probe_size: expected a positive integer size value, found {probe_size!r}")
        return probe_size
    if settings.size_values:
        return int(min(settings.size_values))
    m = settings.size_multiple
    return max(m, m * math.ceil(settings.size_min / m))


def find_optimal(
    model_cls: Callable[..., Any] | None = None,
    model_size_param: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    dataset: Any = None,
    loss_fn: Callable[..., Any] | None = None,
    compute_budgets: Sequence[float] | None = None,
    *,
    train: bool = True,
    mode: str = "local",
    output_dir: str | Path = "outputs",
    resume: bool = True,
    seed: int = 0,
    min_flops: float | None = None,
    max_flops: float | None = None,
    num_budgets: int | None = None,
    num_model_sizes: int = 7,
    span_decades: float = 1.0,
    center_tokens_per_param: float = 20.0,
    size_multiple: int = 1,
    size_values: Sequence[int] | None = None,
    size_min: int = 1,
    size_max: int = 1 << 16,
    probe_size: int | None = None,
    mock_law: MockLaw | None = None,
    executor: Any = None,
    exclude_outliers: bool = True,
    progress: bool | None = None,
) -> Result | SweepPlan:
    """Plan an IsoFLOP sweep of `model_cls`, train it, and fit compute-optimal scaling laws.

    Returns the `SweepPlan` when `train=False` (or, in local mode, when no
    dataset/loss is given); otherwise a `Result`. Every argument is validated
    before any training starts.
    """
    # ---- validate at the door --------------------------------------------
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, found {mode!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed: expected an int, found {type(seed).__name__} ({seed!r})")
    if mock_law is not None and not isinstance(mock_law, MockLaw):
        raise TypeError(f"mock_law: expected a flops_fit.MockLaw, found {type(mock_law).__name__}")
    if mock_law is not None and mode != "mock":
        raise ValueError(f"mock_law: only used with mode='mock', found mode={mode!r}")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir: expected a directory, found a file at {out}")

    settings = PlanSettings(
        num_model_sizes=num_model_sizes,
        span_decades=span_decades,
        center_tokens_per_param=center_tokens_per_param,
        size_multiple=size_multiple,
        size_values=list(size_values) if size_values is not None else None,
        size_min=size_min,
        size_max=size_max,
    )
    contract = check_model(model_cls, model_size_param, model_kwargs, _probe_size(settings, probe_size))
    budgets = make_budgets(compute_budgets, min_flops, max_flops, num_budgets)

    # ---- plan -------------------------------------------------------------
    plan = plan_sweep(
        budgets,
        contract.count_params,
        size_param=contract.size_param,
        model_name=contract.name,
        model_kwargs=contract.model_kwargs,
        settings=settings,
    )
    law = mock_law or MockLaw()
    if mode == "mock":
        plan.model_kwargs = {**plan.model_kwargs}
        plan.run_settings = {"mode": "mock", "seed": seed, "mock_law": law.to_dict()}
    else:
        plan.run_settings = {"mode": "local", "seed": seed}

    needs_data = mode == "local" and (dataset is None or loss_fn is None)
    if not train or needs_data:
        if train and needs_data:
            missing = "dataset" if dataset is None else "loss_fn"
            warnings.warn(
                f"{missing}: not given, so nothing is trained in mode='local'; returning the SweepPlan "
                "(pass train=False to silence this, or mode='mock' to try the pipeline)",
                UserWarning,
                stacklevel=2,
            )
        _save_plan(plan, out)
        return plan

    # ---- train ------------------------------------------------------------
    store = ResultsStore(out / RESULTS_FILE, plan.fingerprint(), resume=resume)
    if store.moved_aside is not None:
        warnings.warn(f"resume=False: previous results moved to {store.moved_aside}", UserWarning, stacklevel=2)
    _save_plan(plan, out)
    if mode == "mock":
        run_fn = functools.partial(mock_run, law=law, seed=seed)
    else:  # pragma: no cover - wired by the training engine
        run_fn = _local_run_fn(contract, plan, dataset, loss_fn, out, seed)
    run_sweep(plan, run_fn, store, executor=get_executor(executor), progress=progress)

    # ---- analyse ----------------------------------------------------------
    result = Result.from_records(store.records, plan, out, exclude_outliers=exclude_outliers)
    result.save()
    return result


def _save_plan(plan: SweepPlan, out: Path) -> None:
    """Write sweep.json unless it would orphan results made by another plan."""
    results = out / RESULTS_FILE
    if results.exists():
        found, _ = ResultsStore.read(results)
        if found != plan.fingerprint():
            raise ValueError(
                f"{results}: these results were made by a different plan (fingerprint {found}, this plan is "
                f"{plan.fingerprint()}); refusing to overwrite {out / SWEEP_FILE}. Use a new output_dir, "
                "or resume=False to move the old results aside."
            )
    plan.save(str(out / SWEEP_FILE))


def _local_run_fn(contract: ModelContract, plan: SweepPlan, dataset: Any, loss_fn: Any, out: Path, seed: int):
    raise NotImplementedError("mode='local' training is not available yet")


def compare(
    runs: dict[str, dict[str, Any]],
    *,
    output_dir: str | Path = "outputs/compare",
    **common: Any,
) -> "Comparison":
    """Run `find_optimal` once per architecture (same budgets, data and settings) and compare.

    `runs` maps a name to that architecture's own `find_optimal` arguments
    (model_cls, model_size_param, model_kwargs, ...); `common` holds the shared
    ones (compute_budgets, dataset, mode, ...). Each sweep gets output_dir/<name>.
    """
    from flops_fit.comparison import Comparison

    if not isinstance(runs, dict) or not runs:
        raise ValueError(f"runs: expected a non-empty dict of name -> find_optimal arguments, found {runs!r}")
    if "train" in common and not common["train"]:
        raise ValueError("train: compare() needs trained sweeps; found train=False")
    out = Path(output_dir)
    results = {}
    for name, kwargs in runs.items():
        if not isinstance(kwargs, dict):
            raise TypeError(f"runs[{name!r}]: expected a dict of find_optimal arguments, found {type(kwargs).__name__}")
        clash = sorted(set(kwargs) & set(common))
        if clash:
            raise ValueError(f"runs[{name!r}]: {clash[0]!r} is also given as a common argument; give it once")
        res = find_optimal(**{**common, **kwargs}, output_dir=out / name)
        if not isinstance(res, Result):
            raise ValueError(f"runs[{name!r}]: nothing was trained (no dataset/loss_fn in mode='local')")
        results[name] = res
    return Comparison(results, out)
