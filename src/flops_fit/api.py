"""find_optimal(): contract → plan → train → analyse → Result. Orchestration only."""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from flops_fit.contract import check_model
from flops_fit.flops import FLOPS_6ND, FLOPS_MEASURED
from flops_fit.planning import (
    PlanSettings,
    SweepPlan,
    check_trainable,
    make_budgets,
    plan_problems,
    plan_sweep,
)
from flops_fit.result import RESULTS_FILE, SWEEP_FILE, Result
from flops_fit.training.mock import MockLaw, mock_run
from flops_fit.training.store import ResultsStore, driver_lock, journal_path

if TYPE_CHECKING:
    from flops_fit.comparison import Comparison
    from flops_fit.training.trainer import TrainConfig

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
    train_config: Any = None,
    val_dataset: Any = None,
    data_options: dict[str, Any] | None = None,
    units_per_sample: int | None = None,
    allow_repeat: bool = True,
    flops_accounting: str = FLOPS_6ND,
    estimate_cost: bool = True,
    executor: Any = None,
    workers: int | str = "auto",
    exclude_outliers: bool = True,
    n_bootstrap: int = 1000,
    confidence: float = 0.90,
    progress: bool | None = None,
    retry_failed: bool = False,
    max_retries: int = 2,
    train_fn: Callable[..., Any] | None = None,
) -> Result | SweepPlan:
    """Plan an IsoFLOP sweep of `model_cls`, train it, and fit compute-optimal scaling laws.

    `model_cls` is a class/factory, or the name of a registered architecture
    ("gpt", "lstm", ...; then the size parameter, loss and data default to the
    architecture's own). `dataset` is a torch Dataset/IterableDataset/DataLoader
    or a name: "stdlib" (built-in text), "gmm", "digits", or a text file, folder
    or glob (tokenised with `data_options["tokenizer"]`, default bytes).

    Returns the `SweepPlan` when `train=False` (or, in local mode, when no
    dataset/loss is given); otherwise a `Result`. Every argument is validated
    before any training starts. The analysis fits Approach 2 (IsoFLOP parabolas)
    and Approach 3 (parametric L(N, D)); `n_bootstrap` seeded resamples (seed =
    `seed`) give `confidence` percentile intervals; outliers are excluded unless
    `exclude_outliers=False`. A transient failure (out of memory, a killed run
    process, a full disk) is retried up to `max_retries` times within the call and
    again on the next call; other failures are kept and retried with `retry_failed=True`.
    `workers` runs train at once on this machine ("auto": one per core, one thread each, for
    small CPU models in a sweep long enough to pay for the worker processes; see
    ``training.executors.choose_execution``); the plan says what was chosen and why.
    `train_fn(model, experiment, context) -> loss | dict` replaces the built-in trainer with
    your own loop (see ``flops_fit.training.user``); plan, resume, executors and analysis stay.
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
    _check_analysis_options(n_bootstrap, confidence)
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries: expected an int >= 0 (retries of a transient failure), found {max_retries!r}")
    if train_fn is not None and not callable(train_fn):
        raise TypeError(f"train_fn: expected a function (model, experiment, context) -> loss, found "
                        f"{type(train_fn).__name__}")
    if train_fn is not None and mode != "local":
        raise ValueError(f"train_fn: replaces real training, so it needs mode='local', found mode={mode!r}")
    if executor is not None and workers != "auto":
        raise ValueError(f"workers: give workers or executor, not both (found workers={workers!r} and an executor)")
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers: expected 'auto' or a positive integer (runs at once), found {workers!r}")
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
    if flops_accounting not in (FLOPS_6ND, FLOPS_MEASURED):
        raise ValueError(f"flops_accounting: expected {FLOPS_6ND!r} or {FLOPS_MEASURED!r}, found {flops_accounting!r}")
    tc = _train_config(train_config)
    probe = _probe_size(settings, probe_size)
    budgets = make_budgets(compute_budgets, min_flops, max_flops, num_budgets)

    # a registered architecture brings its size parameter, loss and data
    spec = None
    if isinstance(model_cls, str):
        spec, model_cls, model_size_param = _registered(model_cls, model_size_param)
        head_dim = (model_kwargs or {}).get("head_dim", _config_defaults(spec).get("head_dim"))
        if head_dim and model_size_param == "d_model" and size_multiple == 1 and size_values is None:
            settings.size_multiple = int(head_dim)  # attention needs d_model divisible by head_dim
            probe = _probe_size(settings, probe_size)
    data_desc = None
    if mode == "local":
        if dataset is None and spec is not None:
            dataset = spec.default_dataset
        if isinstance(dataset, str):  # resolved even for a plan only, so its N matches what would train
            model_kwargs, dataset, val_dataset, data_desc, ups = _resolve_named_data(
                dataset, val_dataset, model_cls, spec, model_size_param, model_kwargs, probe, data_options, seed
            )
            units_per_sample = units_per_sample or ups
        if loss_fn is None and spec is not None:
            loss_fn = _default_loss(spec, model_size_param, model_kwargs, probe)
    contract = check_model(model_cls, model_size_param, model_kwargs, probe)
    info = None
    if mode == "local" and dataset is not None and loss_fn is not None and train_fn is None:  # train=False too
        from flops_fit.training.local import check_data_contract

        info = check_data_contract(
            contract.factory, contract.size_param, contract.model_kwargs, probe, dataset, loss_fn, tc,
            units_per_sample,
        )
        settings.units_per_step = max(1, round(tc.batch_size * tc.grad_accum_steps * info.units_per_sample))

    # ---- plan -------------------------------------------------------------
    plan = plan_sweep(
        budgets,
        contract.count_params,
        size_param=contract.size_param,
        model_name=contract.name,
        model_kwargs=contract.model_kwargs,
        settings=settings,
    )
    plan.flops_accounting = flops_accounting
    law = mock_law or MockLaw()
    if mode == "mock":
        plan.run_settings = {"mode": "mock", "seed": seed, "mock_law": law.to_dict()}
    elif train_fn is not None:  # the function is part of the sweep's identity: resuming with another is refused
        plan.run_settings = {"mode": "local", "seed": seed, "train_fn": _qualified(train_fn), "data": data_desc}
    else:
        plan.run_settings = {
            "mode": "local",
            "seed": seed,
            "train_config": tc.identity(),
            "units": info.units if info else None,
            "data": data_desc,
            "allow_repeat": allow_repeat,
        }

    if info is not None and plan.runnable and train_fn is None:
        _warn_flops_gap(plan, contract, dataset, loss_fn, info)
    needs_data = mode == "local" and train_fn is None and (dataset is None or loss_fn is None)
    from flops_fit.stages import plan_execution

    if mode == "local" and not needs_data and plan.runnable and executor is None and train_fn is None:
        tc = plan_execution(plan, workers, tc, (contract.factory, dataset, loss_fn, val_dataset), None)
    if estimate_cost and mode == "local" and not needs_data and plan.runnable and not plan_problems(plan) \
            and train_fn is None:  # a user's own loop cannot be timed from here
        from flops_fit.training.cost import estimate_cost as _estimate

        # shown with train=False too: the plan a user inspects carries what it will cost
        plan.cost_estimate = _estimate(plan, contract.factory, contract.size_param, contract.model_kwargs, dataset,
                                       loss_fn, tc, units_per_sample=units_per_sample)
        if executor is None:  # now that the runs' length is known: is a worker pool worth its start-up?
            tc = plan_execution(plan, workers, tc, (contract.factory, dataset, loss_fn, val_dataset),
                                   plan.cost_estimate)
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
    check_trainable(plan)  # before paying for it: no runnable run, or one budget, pins down no law
    _check_results(plan, out, resume)
    if mode == "mock":
        run_fn = functools.partial(mock_run, law=law, seed=seed)
    elif train_fn is not None:
        from flops_fit.training.user import UserTrainRun

        run_fn = UserTrainRun(train_fn=train_fn, model_factory=contract.factory, size_param=contract.size_param,
                              model_kwargs=contract.model_kwargs, dataset=dataset, val_dataset=val_dataset,
                              loss_fn=loss_fn, output_dir=out, seed=seed, flops_accounting=flops_accounting,
                              units=(data_desc or {}).get("units", "tokens") if isinstance(data_desc, dict) else "tokens")
        if isinstance(workers, int) and workers > 1:
            plan.execution = {"workers": workers, "threads_per_run": None, "reason": f"{workers} run(s) at once, as asked"}
    else:
        from flops_fit.training.local import make_run_fn

        run_fn = make_run_fn(
            model_factory=contract.factory, size_param=contract.size_param, model_kwargs=contract.model_kwargs,
            dataset=dataset, loss_fn=loss_fn, train_config=tc, output_dir=out, seed=seed,
            val_dataset=val_dataset, flops_accounting=flops_accounting, units_per_sample=units_per_sample,
            allow_repeat=allow_repeat, data_info=info, experiments=plan.runnable,
        )
    if progress is not False:
        print(plan.summary())
    from flops_fit.stages import train_stage

    options = None
    k = (plan.execution or {}).get("workers", 1)
    if executor is None and k > 1:
        executor, options = "pool", {"workers": k, "threads_per_run": plan.execution.get("threads_per_run")}
    report = train_stage(out, run_fn, plan=plan, resume=resume, executor=executor, executor_options=options,
                         progress=progress, save_plan=True, retry_failed=retry_failed, max_retries=max_retries)
    if report.moved_aside is not None:
        warnings.warn(f"resume=False: previous results moved to {report.moved_aside}", UserWarning, stacklevel=2)

    # ---- analyse ----------------------------------------------------------
    _, records = ResultsStore.read(out / RESULTS_FILE)
    result = Result.from_records(records, plan, out, exclude_outliers=exclude_outliers, n_bootstrap=n_bootstrap,
                                 seed=seed, confidence=confidence)
    result.save()
    return result


def _qualified(fn: Any) -> str:
    """module:qualname of a function (what identifies a user's training loop in sweep.json)."""
    mod = getattr(fn, "__module__", None) or type(fn).__module__
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{mod}:{name}"


def _warn_flops_gap(plan: SweepPlan, contract: Any, dataset: Any, loss_fn: Any, info: Any) -> None:
    """Say, with the factor, when this model's measured FLOPs are far from the 6·N·D the plan counts."""
    from flops_fit.training.local import FLOPS_GAP_WARN, flops_gap

    gap = flops_gap(plan, contract.factory, contract.size_param, contract.model_kwargs, dataset, loss_fn, info)
    plan.flops_check = gap
    far = [g for g in gap if not 1 / FLOPS_GAP_WARN <= g["ratio_to_6N"] <= FLOPS_GAP_WARN]
    if far:
        unit = str(info.units).rstrip("s") or "unit"
        at = "; ".join(f"×{g['ratio_to_6N']:.2g} at N={g['N']:,.0f}" for g in gap)
        warnings.warn(
            f"flops_accounting: this model's measured FLOPs per {unit} (forward+backward, FlopCounterMode) are "
            f"{at} its 6·N estimate, so 6·N·D misstates each run's real compute by that factor. The plan's budgets "
            "count 6·N·D; flops_accounting='measured' also records each run's measured FLOPs, but does not yet "
            "plan D by them",
            UserWarning,
            stacklevel=3,
        )


def _check_analysis_options(n_bootstrap: Any, confidence: Any) -> None:
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap: expected a non-negative int (0 = no intervals), found {n_bootstrap!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a number between 0 and 1 (e.g. 0.9), found {confidence!r}")


def _check_results(plan: SweepPlan, out: Path, resume: bool) -> None:
    """Refuse, before any expensive work, to resume into results made by another plan."""
    if resume:  # the store refuses another plan's results on opening (it writes nothing until add)
        ResultsStore(out / RESULTS_FILE, plan.fingerprint(), resume=True)


def _save_plan(plan: SweepPlan, out: Path) -> None:
    """Write sweep.json unless it would orphan results made by another plan, or a driver is at work."""
    with driver_lock(out) as mine:
        if not mine:
            raise RuntimeError(f"output_dir: a driver is training in {out} (its lock is held); refusing to "
                               f"rewrite {out / SWEEP_FILE} under it")
        results = out / RESULTS_FILE
        if results.exists() or journal_path(results).exists():
            found, _ = ResultsStore.read(results)
            if found != plan.fingerprint():
                raise ValueError(
                    f"{results}: these results were made by a different plan (fingerprint {found}, this plan is "
                    f"{plan.fingerprint()}); refusing to overwrite {out / SWEEP_FILE}. Use a new output_dir, "
                    "or resume=False to move the old results aside."
                )
        plan.save(str(out / SWEEP_FILE))



def _train_config(train_config: Any) -> "TrainConfig":
    from flops_fit.training.trainer import TrainConfig

    if train_config is None:
        return TrainConfig()
    if isinstance(train_config, TrainConfig):
        return train_config
    if isinstance(train_config, dict):
        known = set(TrainConfig.__dataclass_fields__)
        unknown = sorted(set(train_config) - known)
        if unknown:
            raise ValueError(f"train_config: unknown field {unknown[0]!r}; fields are {sorted(known)}")
        return TrainConfig(**train_config)
    raise TypeError(f"train_config: expected a TrainConfig or a dict of its fields, found {type(train_config).__name__}")


class RegisteredModel:
    """Picklable factory for a registered architecture: keyword fields -> model."""

    def __init__(self, architecture: str) -> None:
        self.architecture = architecture
        self.__qualname__ = architecture  # the plan's model_name

    def __call__(self, **fields: Any) -> Any:
        from flops_fit.models import create_model

        return create_model({"architecture": self.architecture, **fields})


def _registered(name: str, size_param: str | None) -> tuple[Any, RegisteredModel, str]:
    from flops_fit.models import get_model_spec

    try:
        spec = get_model_spec(name)
    except ValueError as exc:
        raise ValueError(f"model_cls: {exc}") from None
    if size_param is not None and size_param != spec.size_param:
        raise ValueError(
            f"model_size_param: architecture {name!r} is sized by {spec.size_param!r}, found {size_param!r}"
        )
    return spec, RegisteredModel(name), spec.size_param


def _config_fields(model_cls: Any, spec: Any) -> set[str] | None:
    """Names the model accepts (None: anything, e.g. **kwargs)."""
    if spec is not None and spec.config_cls is not None:
        cfg = spec.config_cls
        names = getattr(cfg, "model_fields", None) or getattr(cfg, "__dataclass_fields__", None)
        return set(names) - {"architecture"} if names else None
    import inspect

    try:
        params = inspect.signature(model_cls).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _config_defaults(spec: Any) -> dict[str, Any]:
    import dataclasses

    cfg = getattr(spec, "config_cls", None)
    if cfg is None:
        return {}
    if hasattr(cfg, "model_fields"):
        return {k: f.default for k, f in cfg.model_fields.items() if not f.is_required()}
    if dataclasses.is_dataclass(cfg):
        return {f.name: f.default for f in dataclasses.fields(cfg) if f.default is not dataclasses.MISSING}
    return {}


def _model_objective(spec: Any, size_param: str, model_kwargs: dict | None, probe: int) -> str | None:
    if spec is None:
        return None
    from flops_fit.models import model_objective

    return model_objective(spec.name, dict(model_kwargs or {}), probe)


def _default_loss(spec: Any, size_param: str, model_kwargs: dict | None, probe: int) -> Any:
    from flops_fit.models import OBJECTIVE_LOSSES

    objective = _model_objective(spec, size_param, model_kwargs, probe)
    return OBJECTIVE_LOSSES.get(objective, spec.default_loss)


def _resolve_named_data(
    name: str, val_dataset: Any, model_cls: Any, spec: Any, size_param: str, model_kwargs: dict | None,
    probe: int, data_options: dict | None, seed: int,
) -> tuple[dict, Any, Any, str, int | None]:
    """Load a named data set and make the model agree with it (vocab size, sequence length, ...)."""
    from flops_fit.data.builtin import resolve_dataset

    opts = dict(data_options or {})
    objective = opts.pop("objective", None) or _model_objective(spec, size_param, model_kwargs, probe)
    opts.setdefault("seed", seed)
    kwargs = dict(model_kwargs or {})
    accepted = _config_fields(model_cls, spec)
    defaults = _config_defaults(spec)
    resolved = resolve_dataset(name, objective=objective, options=opts, model_fields={**defaults, **kwargs})
    for key, value in resolved.model_overrides.items():
        if accepted is not None and key not in accepted:
            continue
        if key in kwargs and key == "vocab_size" and kwargs[key] < value:
            raise ValueError(
                f"model_kwargs: vocab_size={kwargs[key]} is smaller than the tokenizer's vocabulary ({value})"
            )
        kwargs.setdefault(key, value)
    val = val_dataset if val_dataset is not None else resolved.val
    return kwargs, resolved.train, val, resolved.description, resolved.units_per_sample


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
    n_bootstrap: int = 1000,
    confidence: float = 0.90,
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
    _check_analysis_options(n_bootstrap, confidence)
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
