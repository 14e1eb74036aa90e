"""find_optimal(), analyze(), compare(): check the arguments, resolve the study, call the pipeline."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from flops_fit import pipeline
from flops_fit.flops import FLOPS_6ND
from flops_fit.layout import RunDir
from flops_fit.planning import SweepPlan
from flops_fit.result import Result
from flops_fit.study import CONFIDENCE, MODES, N_BOOTSTRAP, check_analysis_options, resolve_study
from flops_fit.tracking import make_trackers, notify
from flops_fit.training.mock import MockLaw
from flops_fit.training.store import ResultsStore
from flops_fit.validation import check_int

if TYPE_CHECKING:
    from flops_fit.comparison import Comparison

__all__ = ["MODES", "analyze", "compare", "find_optimal"]


def find_optimal(
    model_cls: Callable[..., Any] | str | None = None,
    model_size_param: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    dataset: Any = None,
    loss_fn: Callable[..., Any] | None = None,
    compute_budgets: Sequence[float] | None = None,
    *,
    train: bool = True, mode: str = "local", output_dir: str | Path = "outputs", resume: bool = True, seed: int = 0,
    min_flops: float | None = None, max_flops: float | None = None, num_budgets: int | None = None,
    # planning (None: PlanSettings' defaults, the CLI's too)
    num_model_sizes: int | None = None, span_decades: float | None = None,
    center_tokens_per_param: float | None = None, size_multiple: int | None = None,
    size_values: Sequence[int] | None = None, size_min: int | None = None, size_max: int | None = None,
    probe_size: int | None = None, param_count: str | None = None, align_sizes: bool | None = None,
    # training
    mock_law: MockLaw | None = None, train_config: Any = None, val_dataset: Any = None,
    data_options: dict[str, Any] | None = None, units_per_sample: int | None = None, allow_repeat: bool = True,
    flops_accounting: str = FLOPS_6ND, estimate_cost: bool = True, executor: Any = None,
    workers: int | str = "auto", progress: bool | None = None, retry_failed: bool = False, max_retries: int = 2,
    train_fn: Callable[..., Any] | None = None, trackers: Any = None, design: str = "separate",
    extra_branches: int = 0, adaptive: bool = False, target: Any = None,
    # analysis
    exclude_outliers: bool = True, n_bootstrap: int = N_BOOTSTRAP, confidence: float = CONFIDENCE,
) -> Result | SweepPlan:
    """Plan an IsoFLOP sweep of `model_cls`, train it, and fit compute-optimal scaling laws.

    `model_cls`: a class/factory, or a registered architecture's name ("gpt", "lstm", ...: then
    size parameter, loss and data default to its own). `dataset`: a torch Dataset/IterableDataset/
    DataLoader, or "stdlib", "gmm", "digits", a text file, folder or glob. The study is resolved by
    ``study.resolve_study``, as every ``ff-*`` command resolves its own, before anything trains.
    Returns the `SweepPlan` (with its cost) when `train=False` or when no data/loss is given in
    mode="local", else a `Result`: Approach 2 and 3 fits with `n_bootstrap` seeded resamples giving
    `confidence` intervals. Transient failures are retried up to `max_retries` times (and on the next
    call); others with `retry_failed=True`. `workers`: runs at once on this machine ("auto": see
    ``training.executors.choose_execution``). `train_fn(model, experiment, context)`: your own loop
    (``training.user``); `trackers`: names or ``tracking.Callback`` objects. `flops_accounting`: "6ND" or
    "measured" (D planned by FlopCounterMode FLOPs per data unit); `param_count`: "all" or
    "non_embedding"; `design`: "separate" runs or "branches" (``flops_fit.design``), with `extra_branches`
    more cooldown branches per gap between a size's budgets (Approach 3 only); `adaptive`, `target`:
    budgets smallest first, re-centred, stopping at a precision (``flops_fit.adaptive``).
    """
    _check_options(n_bootstrap, confidence, max_retries, mock_law, mode, executor, workers)
    _check_adaptive(adaptive, target, n_bootstrap)
    run = RunDir(output_dir)
    run.check_usable()
    callbacks = make_trackers(trackers, run.root)  # a bad tracker is refused before anything runs
    planning = dict(num_model_sizes=num_model_sizes, span_decades=span_decades,
                    center_tokens_per_param=center_tokens_per_param, size_multiple=size_multiple,
                    size_values=size_values, size_min=size_min, size_max=size_max, probe_size=probe_size,
                    param_count=param_count, align_sizes=align_sizes)
    spec = resolve_study(
        model_cls, model_size_param, model_kwargs, dataset=dataset, val_dataset=val_dataset, loss=loss_fn,
        data_options=data_options, units_per_sample=units_per_sample, planning=planning, mode=mode, seed=seed,
        mock_law=mock_law, train_config=train_config, flops_accounting=flops_accounting, allow_repeat=allow_repeat,
        train_fn=train_fn, design=design, extra_branches=extra_branches,
        compute=dict(compute_budgets=compute_budgets, min_flops=min_flops, max_flops=max_flops,
                     num_budgets=num_budgets),
    )
    plan = pipeline.plan_stage(spec, run.root, workers=workers, executor=executor, estimate_cost=estimate_cost,
                               save=False)
    if not train or spec.needs_data:
        return _plan_only(spec, plan, run, train)
    adaptive = adaptive or target is not None
    if resume and not adaptive:  # before paying for anything: the store refuses another plan's results on opening
        ResultsStore(run.results, plan.fingerprint(), resume=True)
    _announce(plan, progress)
    options = dict(executor=executor, progress=progress, retry_failed=retry_failed, max_retries=max_retries,
                   trackers=callbacks)
    if adaptive:
        pipeline.train_adaptive(spec, plan, run.root, target=target, resume=resume, **options,
                                analysis=dict(exclude_outliers=exclude_outliers, n_bootstrap=n_bootstrap, seed=seed,
                                              confidence=confidence))
    else:
        pipeline.train(spec, plan, run.root, resume=resume, save_plan=True, **options)
    result = pipeline.analyze_stage(run.root, exclude_outliers=exclude_outliers, n_bootstrap=n_bootstrap,
                                    seed=seed, confidence=confidence)
    notify(callbacks, "on_sweep_end", result)
    return result


#: a sweep estimated above this many seconds is announced even with progress=False (the CLI asks: confirm_above_s)
LONG_SWEEP_S = 1800.0


def _plan_only(spec: Any, plan: SweepPlan, run: RunDir, train: bool) -> SweepPlan:
    """train=False, or nothing to train on: save and return the plan (saying why when training was asked)."""
    if train:
        missing = "dataset" if spec.data is None else "loss_fn"
        warnings.warn(
            f"{missing}: not given, so nothing is trained in mode='local'; returning the SweepPlan "
            "(pass train=False to silence this, or mode='mock' to try the pipeline)",
            UserWarning,
            stacklevel=3,
        )
    pipeline.save_plan(plan, run)
    return plan


def _announce(plan: SweepPlan, progress: bool | None) -> None:
    """The plan before training (with its estimate); without a progress display, only a long estimate."""
    if progress is not False:
        print(plan.summary())
        return
    est = plan.cost_estimate or {}
    wall = float(est.get("wall_seconds", est.get("total_seconds", 0.0)) or 0.0)
    if wall > LONG_SWEEP_S:
        warnings.warn(f"the sweep is estimated at {wall:.0f} s ({wall / 3600:.1f} h) on {est.get('device', '?')} "
                      f"for {len(plan.runnable)} runs; training starts now (see plan.summary() with train=False)",
                      UserWarning, stacklevel=3)


def _check_adaptive(adaptive: Any, target: Any, n_bootstrap: int) -> None:
    from flops_fit.adaptive import make_target

    if not isinstance(adaptive, bool):
        raise TypeError(f"adaptive: expected True or False, found {adaptive!r}")
    if make_target(target) is not None and n_bootstrap < 50:
        raise ValueError(f"target: judged by the bootstrap interval, so n_bootstrap must be 50 or more, found {n_bootstrap}")


def _check_options(n_bootstrap: Any, confidence: Any, max_retries: Any, mock_law: Any, mode: str, executor: Any,
                   workers: Any) -> None:
    """find_optimal's own arguments (the study's are checked by resolve_study)."""
    check_analysis_options(n_bootstrap, confidence)
    check_int(max_retries, "max_retries", min=0, what="retries of a transient failure")
    if mock_law is not None and mode != "mock":
        raise ValueError(f"mock_law: only used with mode='mock', found mode={mode!r}")
    if executor is not None and workers != "auto":
        raise ValueError(f"workers: give workers or executor, not both (found workers={workers!r} and an executor)")
    if workers != "auto":
        check_int(workers, "workers", min=1, expected="'auto' or a positive integer (runs at once)")


def analyze(
    table: Any,
    *,
    n_col: str = "N",
    d_col: str = "D",
    loss_col: str = "loss",
    c_col: str | None = None,
    budget_col: str | None = None,
    budget_tolerance: float = 0.10,
    best_of: str | None = None,
    exclude_outliers: bool = True,
    n_bootstrap: int = N_BOOTSTRAP,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    output_dir: str | Path | None = None,
) -> Result:
    """The same `Result` as `find_optimal` for runs you already have.

    `table`: a DataFrame, CSV or JSON (a list of records, or a sweep's results.json)
    with any two of N (parameters), D (tokens) and C (FLOPs) plus the loss; common
    column names are recognised (num_params, tokens, flops, final_loss, ...), others
    are named with `n_col` / `d_col` / `c_col` / `loss_col`. IsoFLOP budgets come from
    a budget column or are grouped by compute within `budget_tolerance`; a label more
    than 20% off a run's 6·N·D is warned about by name. `best_of="lr"` keeps the lowest
    loss of runs that share (N, D). `output_dir`, when given, is where `save()` and
    `plot()` write.
    """
    from flops_fit.analysis.data_io import runs_frame

    frame, notes = runs_frame(table, n_col=n_col, d_col=d_col, loss_col=loss_col, c_col=c_col,
                              budget_col=budget_col, budget_tolerance=budget_tolerance, best_of=best_of)
    check_analysis_options(n_bootstrap, confidence)
    return Result.from_table(frame, notes, output_dir, exclude_outliers=exclude_outliers,
                             n_bootstrap=n_bootstrap, seed=seed, confidence=confidence)


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
