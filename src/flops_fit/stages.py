"""The four stages of a study as library calls over an output directory: plan, train, analyze, visualize.

Each stage reads only the files of the stage before it (sweep.json → results.json →
analysis/scaling_laws.json → plots/), so each can run alone, on another machine, or
again to resume. The ``ff-*`` commands are configuration plus one call into here.

Concurrent training (a cluster job array)
    ``train_stage(..., experiment_id=...)`` trains one experiment and writes only
    ``records/<experiment_id>.json`` (atomically; one writer per id). It never
    touches results.json, so any number of tasks can run at once on a shared file
    system without locks. The driver — ``train_stage`` without an id, or
    ``analyze_stage`` — merges those files into results.json through the
    ResultsStore while holding an exclusive ``flock`` on ``.results.lock``; a
    second driver on the same directory is refused with a clear error, and
    ``analyze_stage`` skips the merge (and says so) while a driver is training.
    Record files are kept after the merge, so a merge is idempotent and nothing
    is ever lost.

Model, data and loss are given either as objects or by description
(:func:`resolve_model`, :func:`load_dataset`, :func:`resolve_loss`): a registry
architecture with its fields, or the import path of a user's class / factory /
dataset / loss function.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from flops_fit import io
from flops_fit.contract import ModelContract, check_model
from flops_fit.flops import FLOPS_6ND, FLOPS_MEASURED
from flops_fit.api import MODES, RegisteredModel, _probe_size, _save_plan
from flops_fit.planning import Experiment, PlanSettings, SweepPlan, _jsonable, check_trainable, make_budgets, plan_sweep
from flops_fit.result import ANALYSIS_FILE, PLOTS_DIR, RESULTS_FILE, SWEEP_FILE, Result, read_results
from flops_fit.training.executors import get_executor
from flops_fit.training.mock import MockLaw, mock_run
from flops_fit.training.store import (
    LOCK_FILE,
    STATUS_FAILED,
    ResultsStore,
    RunRecord,
    check_against_plan,
    driver_lock,
    journal_path,
)
from flops_fit.training.sweep import DEFAULT_MAX_RETRIES, RunFn, failed_record, is_transient, run_sweep

RECORDS_DIR = "records"
RECORD_KIND = "flops-fit/record"
RECORD_SCHEMA = 1
PLOT_FILES = ("isoflops_curves.png", "scaling_laws.png", "tokens_per_param.png")

__all__ = [
    "DataChoice", "ModelChoice", "TrainReport", "analyze_stage", "check_plan_matches", "import_object",
    "load_dataset", "load_plan", "make_mock_run_fn", "plan_identity", "make_real_run_fn", "merge_records", "plan_stage", "resolve_loss",
    "resolve_model", "tokenizer_vocab_size", "train_stage", "visualize_stage", "estimate_sweep",
]


# ---------------------------------------------------------------------------
# objects by description


def import_object(path: Any, argument: str) -> Any:
    """The object at import path ``pkg.module.Name`` (attributes allowed: ``pkg.mod.Class.make``)."""
    if not isinstance(path, str) or not path or "." not in path:
        raise ValueError(
            f"{argument}: expected an import path like 'package.module.Name', found {path!r}"
        )
    parts = path.split(".")
    module, last_error = None, None
    for i in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:i])
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            last_error = exc
            if exc.name and not name.startswith(exc.name) and not exc.name.startswith(name):
                raise ImportError(
                    f"{argument}: importing {name!r} for {path!r} failed: {exc}"
                ) from None
            continue
        except Exception as exc:  # noqa: BLE001 - the user's module raised while importing
            raise ImportError(
                f"{argument}: importing {name!r} for {path!r} raised {type(exc).__name__}: {exc}"
            ) from None
        obj = module
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                raise ImportError(f"{argument}: {path!r} not found: module {name!r} has no attribute {attr!r}")
            obj = getattr(obj, attr)
        return obj
    raise ImportError(
        f"{argument}: cannot import {path!r} ({last_error}); is its package installed or on PYTHONPATH?"
    )




@dataclass
class ModelChoice:
    """A model to sweep: how to build it, which argument sets its size, what is held fixed."""

    factory: Callable[..., Any]
    size_param: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    architecture: str | None = None  # registry name, None for a user's class
    objective: str | None = None  # registry objective (causal_lm, masked_lm, ...)


def resolve_model(spec: Mapping[str, Any], *, vocab_size: int | None = None) -> ModelChoice:
    """A :class:`ModelChoice` from ``{"architecture": name, **fields}`` or ``{"_target_": path, "size_param": ..., **kwargs}``.

    Registry fields are validated by the registry (unknown or ill-typed fields are
    named); a ``vocab_size`` of None is filled with `vocab_size` (the tokenizer's).
    The size parameter's value, if given, is dropped: the planner sets it.
    """
    if not isinstance(spec, Mapping):
        raise TypeError(f"model: expected a mapping, found {type(spec).__name__}")
    spec = dict(spec)
    if spec.get("_target_") is not None:
        target = spec.pop("_target_")
        size_param = spec.pop("size_param", None)
        spec.pop("architecture", None)
        factory = import_object(target, "model._target_")
        if not callable(factory):
            raise TypeError(f"model._target_: {target!r} is a {type(factory).__name__}, expected a class or factory")
        if not isinstance(size_param, str) or not size_param:
            raise ValueError(
                f"model.size_param: expected the name of {target}'s size argument (e.g. d_model), found {size_param!r}"
            )
        if vocab_size is not None and spec.get("vocab_size", 0) is None:
            spec["vocab_size"] = vocab_size
        spec.pop(size_param, None)
        return ModelChoice(factory, size_param, spec, name=target)
    from flops_fit.models import get_model_spec, validate_config

    arch = spec.pop("architecture", None)
    if arch is None:
        from flops_fit.models import list_models

        raise ValueError(
            f"model: expected 'architecture' (one of {', '.join(list_models())}) or '_target_', found neither"
        )
    spec.pop("size_param", None)
    registry_spec = get_model_spec(arch)
    if "vocab_size" in spec and spec["vocab_size"] is None and vocab_size is not None:
        spec["vocab_size"] = vocab_size
    _, fields = validate_config({"architecture": arch, **spec})
    fields.pop(registry_spec.size_param, None)
    from flops_fit.models import model_objective

    objective = model_objective(arch, fields)  # the model decides, as for find_optimal
    return ModelChoice(
        RegisteredModel(arch),
        registry_spec.size_param,
        fields,
        name=arch,
        architecture=arch,
        objective=objective,
    )


def resolve_loss(target: str | None, model: ModelChoice) -> Callable[..., Any]:
    """The loss by import path, or the registry architecture's default loss when `target` is None."""
    if target is not None:
        fn = import_object(target, "loss._target_")
        if not callable(fn):
            raise TypeError(f"loss._target_: {target!r} is a {type(fn).__name__}, expected a callable (outputs, batch) -> loss")
        return fn
    if model.architecture is not None:
        from flops_fit.models import OBJECTIVE_LOSSES, get_model_spec

        fn = OBJECTIVE_LOSSES.get(model.objective or "") or get_model_spec(model.architecture).loss()
        if fn is not None:
            return fn
    raise ValueError(
        f"loss._target_: expected the import path of a loss function (outputs, batch) -> scalar tensor "
        f"for model {model.name}, found none (only registry architectures have a default loss)"
    )


def tokenizer_vocab_size(data: Mapping[str, Any], objective: str | None = None) -> int | None:
    """Vocabulary size of a built-in text data set's tokenizer, without reading the corpus (None: not text)."""
    if data.get("name") not in ("stdlib", "text"):
        return None
    kind = data.get("tokenizer", "byte")
    if kind == "byte":
        from flops_fit.data import build_tokenizer

        specials = "bert" if objective == "masked_lm" else "gpt"
        return build_tokenizer("byte", None, None, special_tokens=specials).vocab_size
    vs = data.get("vocab_size")
    if not isinstance(vs, int) or vs < 1:
        raise ValueError(f"data.vocab_size: expected a positive integer for tokenizer {kind!r}, found {vs!r}")
    return vs


@dataclass
class DataChoice:
    """Training data, optional validation data, and a JSON description for the plan's run settings."""

    train: Any
    val: Any | None
    description: dict[str, Any]


def _check_keys(spec: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; expected one of {sorted(allowed)}")


_TEXT_KEYS = ("name", "paths", "tokenizer", "vocab_size", "seq_len", "max_bytes", "val_fraction", "cache_dir")


def describe_data(spec: Mapping[str, Any]) -> dict[str, Any]:
    """What identifies a data description in the plan (validated, nothing loaded)."""
    spec = dict(spec)
    if spec.get("_target_") is not None:
        import_object(spec["_target_"], "data._target_")
        val = spec.get("val")
        if isinstance(val, Mapping) and val.get("_target_") is not None:
            import_object(val["_target_"], "data.val._target_")
        return _jsonable(spec)
    name = spec.get("name")
    if name in ("stdlib", "text"):
        _check_keys(spec, _TEXT_KEYS, f"data (name={name!r})")
        if name == "text" and not spec.get("paths"):
            raise ValueError("data.paths: expected a folder, file, glob or list of them for data=text, found none")
        seq = spec.get("seq_len")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise ValueError(f"data.seq_len: expected a positive integer, found {seq!r}")
        return {k: spec.get(k) for k in _TEXT_KEYS if k != "cache_dir"}
    if name == "digits":
        _check_keys(spec, ("name", "val_fraction"), "data (name='digits')")
        return dict(spec)
    from flops_fit.data import BUILTIN_DATASETS

    raise ValueError(
        f"data: expected 'name' (one of {sorted(set(BUILTIN_DATASETS) | {'text'})}) or '_target_', found {name!r}"
    )


def units_per_sample_of(spec: Mapping[str, Any]) -> int | None:
    """Units (tokens) per sample when the description fixes it, for the too-few-steps flag."""
    if spec.get("name") in ("stdlib", "text"):
        return int(spec["seq_len"])
    return None


def load_dataset(spec: Mapping[str, Any], *, objective: str | None = None, seed: int = 0) -> DataChoice:
    """Load a built-in data set by name, a text folder, or call ``_target_`` with the other keys."""
    desc = describe_data(spec)
    spec = dict(spec)
    if spec.get("_target_") is not None:
        target = spec.pop("_target_")
        val_spec = spec.pop("val", None)
        train = _call_target(target, spec, "data._target_")
        val = None
        if isinstance(val_spec, Mapping) and val_spec.get("_target_") is not None:
            vs = dict(val_spec)
            val = _call_target(vs.pop("_target_"), vs, "data.val._target_")
        return DataChoice(train, val, desc)
    name = spec["name"]
    if name == "digits":
        from flops_fit.data import load_digits_dataset

        vf = spec.get("val_fraction", 0.2)
        return DataChoice(
            load_digits_dataset("train", vf, seed), load_digits_dataset("validation", vf, seed), desc
        )
    from flops_fit.data.builtin import resolve_dataset

    obj = objective if objective in ("causal_lm", "masked_lm") else "causal_lm"
    paths = spec["paths"] if name == "text" else "stdlib"
    if isinstance(paths, (list, tuple)):
        raise ValueError("data.paths: give one folder, file or glob (a list is not supported yet)")
    options = {k: spec[k] for k in ("tokenizer", "vocab_size", "seq_len", "max_bytes", "val_fraction", "cache_dir")
               if spec.get(k) is not None}
    resolved = resolve_dataset(paths, objective=obj, options={**options, "seed": seed})
    return DataChoice(resolved.train, resolved.val, desc)


def _call_target(target: str, kwargs: dict[str, Any], argument: str) -> Any:
    fn = import_object(target, argument)
    try:
        return fn(**kwargs)
    except Exception as exc:  # noqa: BLE001
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ValueError(f"{argument}: {target}({args}) raised {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------
# plan


def check_contract(model: ModelChoice, settings: PlanSettings, probe_size: int | None = None) -> ModelContract:
    """The library's model contract check on a probe instance (same messages as find_optimal)."""
    kwargs = {**model.kwargs}
    contract = check_model(model.factory, model.size_param, kwargs, _probe_size(settings, probe_size))
    contract.name = model.name
    return contract


def plan_stage(
    model: ModelChoice,
    output_dir: str | Path,
    *,
    compute_budgets: Sequence[float] | None = None,
    min_flops: float | None = None,
    max_flops: float | None = None,
    num_budgets: int | None = None,
    settings: PlanSettings | None = None,
    probe_size: int | None = None,
    mode: str = "local",
    seed: int = 0,
    mock_law: MockLaw | None = None,
    run_settings: Mapping[str, Any] | None = None,
    flops_accounting: str = FLOPS_6ND,
    save: bool = True,
) -> SweepPlan:
    """Check the model contract, design the IsoFLOP sweep and write ``output_dir/sweep.json``.

    ``run_settings`` adds what else identifies the runs (train config, data, loss) to
    the plan's fingerprint. Refuses to overwrite a plan whose results exist.
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir: expected a directory, found a file at {out}")
    settings = settings or PlanSettings()
    ident, contract = _identity(
        model, settings, probe_size=probe_size, mode=mode, seed=seed, mock_law=mock_law,
        run_settings=run_settings, flops_accounting=flops_accounting,
    )
    budgets = make_budgets(compute_budgets, min_flops, max_flops, num_budgets)
    plan = plan_sweep(
        budgets,
        contract.count_params,
        size_param=ident.size_param,
        model_name=ident.model_name,
        model_kwargs=ident.model_kwargs,
        settings=settings,
    )
    plan.flops_accounting = ident.flops_accounting
    plan.run_settings = ident.run_settings
    if save:
        _save_plan(plan, out)
    return plan


def plan_identity(
    model: ModelChoice,
    settings: PlanSettings | None = None,
    *,
    probe_size: int | None = None,
    mode: str = "local",
    seed: int = 0,
    mock_law: MockLaw | None = None,
    run_settings: Mapping[str, Any] | None = None,
    flops_accounting: str = FLOPS_6ND,
) -> SweepPlan:
    """A plan without experiments: what identifies a sweep besides its budgets and sizes.

    Checks the model contract (on a probe instance) and the mode; used by
    :func:`plan_stage` and, with :func:`check_plan_matches`, by the train stage
    to verify that its configuration is the one sweep.json was planned with
    (without searching sizes again).
    """
    return _identity(
        model, settings, probe_size=probe_size, mode=mode, seed=seed, mock_law=mock_law,
        run_settings=run_settings, flops_accounting=flops_accounting,
    )[0]


def _identity(
    model: ModelChoice,
    settings: PlanSettings | None,
    *,
    probe_size: int | None,
    mode: str,
    seed: int,
    mock_law: MockLaw | None,
    run_settings: Mapping[str, Any] | None,
    flops_accounting: str,
) -> tuple[SweepPlan, ModelContract]:
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, found {mode!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, found {type(seed).__name__} ({seed!r})")
    if flops_accounting not in (FLOPS_6ND, FLOPS_MEASURED):
        raise ValueError(f"flops_accounting: expected {FLOPS_6ND!r} or {FLOPS_MEASURED!r}, found {flops_accounting!r}")
    settings = settings or PlanSettings()
    contract = check_contract(model, settings, probe_size)
    ident = SweepPlan(
        budgets=[], experiments=[], size_param=contract.size_param, model_name=contract.name,
        model_kwargs=contract.model_kwargs, settings=settings, flops_accounting=flops_accounting,
    )
    if mode == "mock":
        ident.run_settings = {"mode": "mock", "seed": seed, "mock_law": (mock_law or MockLaw()).to_dict()}
    else:
        ident.run_settings = {"mode": "local", "seed": seed, **_jsonable(dict(run_settings or {}))}
    return ident, contract


def load_plan(output_dir: str | Path) -> SweepPlan:
    return SweepPlan.load(str(Path(output_dir) / SWEEP_FILE))


def check_plan_matches(plan: SweepPlan, expected: SweepPlan, source: str) -> None:
    """Refuse to train `plan` (from sweep.json) with a configuration that planned something else.

    Compares the model, its fixed arguments, the FLOPs accounting and the run
    settings; the message names the first differing field.
    """
    a, b = plan.to_dict(), expected.to_dict()
    for key in ("model_name", "size_param", "model_kwargs", "flops_accounting", "run_settings"):
        diff = _first_difference(a.get(key), b.get(key), key)
        if diff is not None:
            path, found, given = diff
            raise ValueError(
                f"{source}: field {path!r} is {found!r}, but this configuration gives {given!r}; "
                "use the configuration (preset and overrides) that ff-plan used, or run ff-plan again "
                "(into a new output_dir if results exist)"
            )


def _first_difference(x: Any, y: Any, path: str) -> tuple[str, Any, Any] | None:
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(set(x) | set(y), key=str):
            d = _first_difference(x.get(k), y.get(k), f"{path}.{k}")
            if d is not None:
                return d
        return None
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y)):
            d = _first_difference(u, v, f"{path}[{i}]")
            if d is not None:
                return d
        return None
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
        return None if math.isclose(float(x), float(y), rel_tol=1e-12) else (path, x, y)
    return None if x == y else (path, x, y)


# ---------------------------------------------------------------------------
# run functions


def make_mock_run_fn(plan: SweepPlan) -> RunFn:
    """The mock engine for a plan made with mode='mock' (law and seed from its run settings)."""
    rs = plan.run_settings
    if rs.get("mode") != "mock":
        raise ValueError(f"sweep.json: field 'run_settings.mode': expected 'mock' for the mock engine, found {rs.get('mode')!r}")
    law = MockLaw(**rs.get("mock_law", {}))
    return functools.partial(mock_run, law=law, seed=int(rs.get("seed", 0)))


def estimate_sweep(plan: SweepPlan, model: ModelChoice, data: DataChoice, loss_fn: Callable[..., Any],
                   train_config: Any) -> dict[str, Any]:
    """The plan's wall-time estimate on this machine (timed training steps), stored in the plan."""
    from flops_fit.training.cost import estimate_cost

    plan.cost_estimate = estimate_cost(plan, model.factory, model.size_param, model.kwargs, data.train, loss_fn,
                                       train_config)
    return plan.cost_estimate


def plan_execution(plan: SweepPlan, workers: int | str, tc: Any, parts: tuple, estimate: dict | None) -> Any:
    """Decide (in training.executors.choose_execution) how many runs go at once and with how many threads,
    for the library and the CLI alike; record it in the plan (and the estimate's wall time), and return the
    train config with those threads (an operational field: the plan's identity is unchanged). `parts` are
    what a worker process would need to unpickle (model factory, data, loss)."""
    import dataclasses

    from flops_fit.training.executors import choose_execution, makespan, workers_blocker
    from flops_fit.training.trainer import resolve_device

    device = resolve_device(tc)
    free = None
    if device.type == "cuda":  # packed runs share the device's memory, not the host's
        import torch

        free = int(torch.cuda.mem_get_info(device)[0])
    kw = dict(n_runs=len(plan.runnable), max_params=max(e.num_params for e in plan.runnable),
              device=str(device), num_threads=tc.num_threads, free_memory=free,
              serial_seconds=None if estimate is None else float(estimate.get("total_seconds", 0.0)))
    choice = choose_execution(workers, **kw)
    if choice["workers"] > 1 or workers != "auto":
        blocker = workers_blocker(parts)
        if blocker:
            choice = choose_execution(workers, blocker=blocker, **kw)
    plan.execution = choice
    if estimate is not None:
        per = list((estimate.get("per_experiment") or {}).values())
        estimate["workers"] = choice["workers"]
        estimate["wall_seconds"] = makespan(per, choice["workers"])
    threads = choice["threads_per_run"]
    return dataclasses.replace(tc, num_threads=threads) if threads != tc.num_threads else tc



def make_real_run_fn(
    plan: SweepPlan,
    model: ModelChoice,
    data: DataChoice,
    loss_fn: Callable[..., Any],
    train_config: Any,
    output_dir: str | Path,
    *,
    probe_size: int | None = None,
) -> RunFn:
    """Check data and loss on one probe batch, then the trainer's run function (real training)."""
    try:
        from flops_fit.training.local import check_data_contract, make_run_fn
    except ImportError as exc:  # pragma: no cover - depends on the training engine being installed
        raise RuntimeError(f"mode: 'local' training is not available in this installation ({exc})") from None
    seed = int(plan.run_settings.get("seed", 0))
    info = check_data_contract(
        model.factory, model.size_param, model.kwargs, _probe_size(plan.settings, probe_size),
        data.train, loss_fn, train_config,
    )
    return make_run_fn(
        model_factory=model.factory,
        size_param=model.size_param,
        model_kwargs=model.kwargs,
        dataset=data.train,
        loss_fn=loss_fn,
        train_config=train_config,
        output_dir=output_dir,
        seed=seed,
        val_dataset=data.val,
        flops_accounting=plan.flops_accounting,
        data_info=info,
    )


# ---------------------------------------------------------------------------
# train


@dataclass
class TrainReport:
    """What a train stage did."""

    trained: list[RunRecord]  # records made by this call
    merged: int = 0  # per-experiment record files merged into results.json
    skipped: list[str] = field(default_factory=list)  # ids already done
    results_path: Path | None = None  # results.json (driver) or records/<id>.json (one experiment)
    moved_aside: Path | None = None  # where resume=False moved earlier results

    def summary(self) -> str:
        ok = sum(r.ok for r in self.trained)
        failed = [r for r in self.trained if not r.ok]
        parts = [f"trained {len(self.trained)} run(s): {ok} completed, {len(failed)} failed or diverged"]
        if self.merged:
            parts.append(f"merged {self.merged} record file(s)")
        if self.skipped:
            parts.append(f"{len(self.skipped)} already done")
        timed = [r for r in self.trained if r.details.get("estimated_wall_time_s")]
        if timed:
            actual = sum(r.wall_time_s for r in timed)
            est = sum(r.details["estimated_wall_time_s"] for r in timed)
            parts.append(f"wall time {actual:.0f} s against {est:.0f} s estimated (x{actual / est:.2f})")
        line = "; ".join(parts) + (f" -> {self.results_path}" if self.results_path else "")
        for r in failed[:5]:
            line += f"\n  {r.experiment_id}: {r.status}: {(r.error or '').splitlines()[-1] if r.error else ''}"
        return line


def _check_precision(store: ResultsStore, run_fn: Any) -> None:
    """Refuse to add runs at another precision than the finished ones (a CPU sweep resumed on a GPU would
    otherwise mix fp32 and bf16 losses in one fit)."""
    from flops_fit.training.local import run_precision

    now = run_precision(run_fn)
    before = sorted({str(r.details["dtype"]) for r in store.records if r.ok and r.details.get("dtype")})
    if now is not None and before and now not in before:
        raise ValueError(
            f"train_config.dtype: the finished runs in {store.path} were trained at {', '.join(before)}, but this "
            f"machine would train the rest at {now} (dtype='auto' follows the device); pass "
            f"TrainConfig(dtype={'fp32' if 'fp32' in before else 'bf16'!r}) to match them, or use a new output_dir"
        )


def _record_path(out: Path, experiment_id: str) -> Path:
    """records/<id>.json; the id is validated and the path must stay inside the output directory."""
    return io.inside(out, RECORDS_DIR, f"{io.check_id(experiment_id, 'experiment_id')}.json")



def write_record_file(out: Path, record: RunRecord, plan_fingerprint: str) -> Path:
    path = _record_path(out, record.experiment_id)
    io.atomic_write_json(
        path,
        {"schema": RECORD_SCHEMA, "kind": RECORD_KIND, "plan_fingerprint": plan_fingerprint, "record": record.to_dict()},
    )
    return path


def read_record_file(path: Path) -> tuple[str, RunRecord]:
    """(plan fingerprint, record) of a records/<id>.json file; malformed files name the field."""
    source = str(path)
    data = io.read_json(path)
    io.check_header(data, RECORD_KIND, RECORD_SCHEMA, source)
    fp = io.require(data, "plan_fingerprint", source)
    rec = RunRecord.from_dict(io.require(data, "record", source), source, 0)
    return fp, rec


def merge_records(output_dir: str | Path, store: ResultsStore) -> int:
    """Add every per-experiment record file not yet in `store` (caller holds the driver lock)."""
    out = Path(output_dir)
    folder = out / RECORDS_DIR
    if not folder.is_dir():
        return 0
    new = []
    for path in sorted(folder.glob("*.json")):
        if path.is_symlink():
            raise ValueError(f"{path}: is a symbolic link; record files must be plain files (remove it)")
        fp, rec = read_record_file(path)
        if fp != store.fingerprint:
            raise ValueError(
                f"{path}: field 'plan_fingerprint' is {fp}, but sweep.json describes plan {store.fingerprint}; "
                "this record belongs to another sweep (move it away)"
            )
        if path.stem != rec.experiment_id:
            raise ValueError(f"{path}: holds the record of {rec.experiment_id!r}, not of {path.stem!r}")
        if store.planned is not None:
            check_against_plan([rec], store.planned, str(path))
        old = store.get(rec.experiment_id)
        if old is None or old.to_dict() != rec.to_dict():
            new.append(rec)
    if new:
        store.add_many(new)
    return len(new)


def _find_experiment(plan: SweepPlan, experiment_id: str | int, source: str) -> Experiment:
    if isinstance(experiment_id, int) and not isinstance(experiment_id, bool):
        runnable = plan.runnable
        if not 0 <= experiment_id < len(runnable):
            raise ValueError(
                f"experiment_id: expected an id or an index in [0, {len(runnable) - 1}] of the "
                f"{len(runnable)} runnable experiments in {source}, found {experiment_id}"
            )
        return runnable[experiment_id]
    by_id = {e.experiment_id: e for e in plan.experiments}
    if experiment_id not in by_id:
        example = plan.runnable[0].experiment_id if plan.runnable else "?"
        raise ValueError(
            f"experiment_id: {experiment_id!r} is not in {source} (ids look like {example!r}, "
            f"or give an index 0..{len(plan.runnable) - 1})"
        )
    exp = by_id[experiment_id]
    if exp.flagged:
        raise ValueError(f"experiment_id: {experiment_id!r} is flagged in {source} and not trained: {exp.flag_reason}")
    return exp


def train_stage(
    output_dir: str | Path,
    run_fn: RunFn,
    *,
    plan: SweepPlan | None = None,
    experiment_id: str | int | None = None,
    resume: bool = True,
    retry_failed: bool = False,
    executor: Any = None,
    executor_options: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    save_plan: bool = False,
    max_retries: int = DEFAULT_MAX_RETRIES,
) -> TrainReport:
    """Train the plan in ``output_dir/sweep.json`` (resuming), or only `experiment_id` of it.

    Without an id this is the driver: it takes the directory's lock, merges
    per-experiment record files, trains every runnable experiment not yet done
    with `executor`, and writes results.json after each. With an id (a string,
    or an index into the runnable experiments) it trains that one experiment
    and writes ``records/<id>.json`` only.
    """
    out = Path(output_dir)
    plan = plan or load_plan(out)
    fingerprint = plan.fingerprint()
    sweep_src = str(out / SWEEP_FILE)
    if experiment_id is not None:
        exp = _find_experiment(plan, experiment_id, sweep_src)
        done = None
        rpath = _record_path(out, exp.experiment_id)
        if rpath.exists():
            fp, rec = read_record_file(rpath)
            done = rec if fp == fingerprint else None
        if done is None and ((out / RESULTS_FILE).exists() or journal_path(out / RESULTS_FILE).exists()):
            fp, records = ResultsStore.read(out / RESULTS_FILE)
            if fp != fingerprint:
                raise ValueError(
                    f"{out / RESULTS_FILE}: field 'plan_fingerprint' is {fp}, but {sweep_src} describes plan "
                    f"{fingerprint}; the two files come from different sweeps"
                )
            done = next((r for r in records if r.experiment_id == exp.experiment_id), None)
        if done is not None and resume and not done.transient and not (retry_failed and done.status == STATUS_FAILED):
            return TrainReport([], skipped=[exp.experiment_id], results_path=rpath)
        try:
            record = run_fn(exp)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as the run's failure, like the driver does
            import traceback

            record = failed_record(
                exp, "".join(traceback.format_exception_only(type(exc), exc)).strip(), plan.flops_accounting,
                transient=is_transient(exc),
            )
        return TrainReport([record], results_path=write_record_file(out, record, fingerprint))

    check_trainable(plan)  # the same rule as find_optimal's, before anything trains
    with driver_lock(out) as mine:
        if not mine:
            raise RuntimeError(
                f"output_dir: another driver is writing {out / RESULTS_FILE} (lock {out / LOCK_FILE} is held); "
                "wait for it to finish, or run single experiments with experiment_id=..."
            )
        io.clean_stale_temp_files(out)  # temp files of writers killed mid-write
        store = ResultsStore(out / RESULTS_FILE, fingerprint, resume=resume, planned=plan.planned_runs())
        if store.moved_aside is not None and not save_plan:
            warnings.warn(f"resume=False: previous results moved to {store.moved_aside}", UserWarning, stacklevel=2)
        if save_plan:  # only now: the store has refused or moved aside results of another plan
            plan.save(str(out / SWEEP_FILE))
        merged = merge_records(out, store) if resume else 0
        _check_precision(store, run_fn)
        skipped = sorted(store.done_ids(include_failed=not retry_failed) & {e.experiment_id for e in plan.runnable})
        ours = executor is None or isinstance(executor, str)  # objects the caller passed stay theirs to close
        ex = get_executor(executor, **dict(executor_options or {})) if ours else executor
        interrupted = True
        try:
            new = run_sweep(plan, run_fn, store, executor=ex, progress=progress, retry_failed=retry_failed,
                            max_retries=max_retries)
            interrupted = False
        finally:
            shutdown = getattr(ex, "shutdown", None)
            if ours and callable(shutdown):  # every built-in executor takes wait=
                # Ctrl-C / SIGTERM: stop runs in flight now (their checkpoints stay); else let them finish
                shutdown(wait=not interrupted)
        if (out / "checkpoints").is_dir():
            from flops_fit.training.checkpoint import cleanup_checkpoints

            cleanup_checkpoints(out, store.done_ids(include_failed=False))
    return TrainReport(new, merged=merged, skipped=skipped, results_path=store.path, moved_aside=store.moved_aside)


# ---------------------------------------------------------------------------
# analyze, visualize


def analyze_stage(
    output_dir: str | Path,
    *,
    exclude_outliers: bool = True,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.90,
) -> Result:
    """Fit the scaling laws to ``output_dir/results.json`` and write analysis/scaling_laws.json.

    Per-experiment record files are merged first unless a driver is training
    (then the results written so far are analysed, with a warning).
    """
    out = Path(output_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"output_dir: {out} is not a directory")
    # record files need the plan's fingerprint: then sweep.json must exist (load_plan names it if not)
    plan = load_plan(out) if (out / SWEEP_FILE).exists() or (out / RECORDS_DIR).is_dir() else None
    if (out / RECORDS_DIR).is_dir():
        with driver_lock(out) as mine:
            if mine:
                store = ResultsStore(out / RESULTS_FILE, plan.fingerprint(), resume=True)
                merge_records(out, store)
            else:
                warnings.warn(
                    f"output_dir: a driver is training in {out}; analysing the results written so far",
                    UserWarning,
                    stacklevel=2,
                )
    fingerprint, records = read_results(out, plan)
    result = Result.from_records(records, plan, out, exclude_outliers=exclude_outliers, n_bootstrap=n_bootstrap,
                                 seed=seed, confidence=confidence, plan_fingerprint=fingerprint)
    result.save()
    return result


def visualize_stage(output_dir: str | Path) -> list[Path]:
    """Draw the three figures from the files in `output_dir` (analysis/scaling_laws.json must exist)."""
    out = Path(output_dir)
    if not (out / ANALYSIS_FILE).exists():
        raise FileNotFoundError(f"{out / ANALYSIS_FILE}: file not found; run ff-analyze first")
    import matplotlib.pyplot as plt

    result = Result.load(out)
    figs = result.plot(show=False, save=True)
    for f in figs:
        plt.close(f)
    return [out / PLOTS_DIR / name for name in PLOT_FILES]
