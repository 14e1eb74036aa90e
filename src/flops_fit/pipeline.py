"""The stages of a study over an output directory: plan, train, analyze, visualize.

``find_optimal`` and every ``ff-*`` command resolve a :class:`~flops_fit.study.StudySpec`
once and then call these same functions. Files flow one way: the plan stage
writes sweep.json; the train stage reads it and writes results (results.json,
its journal, or records/<id>.json for one job-array task) and checkpoints; the
analyze stage reads sweep.json and the results and writes
analysis/scaling_laws.json; the visualize stage reads the analysis (and the
results it plots) and writes plots/. Every name is in :mod:`flops_fit.layout`.

Concurrent training (a cluster job array)
    ``train_stage(..., experiment_id=...)`` trains one experiment and writes only
    ``records/<experiment_id>.json`` (atomically; one writer per id), so any
    number of tasks can run at once on a shared file system without locks. The
    driver — ``train_stage`` without an id, or ``analyze_stage`` — merges those
    files into results.json while holding an exclusive ``flock`` on
    ``.results.lock``; a second driver on the same directory is refused, and
    ``analyze_stage`` skips the merge (and says so) while a driver is training.
    Record files are kept after the merge, so a merge is idempotent.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from flops_fit import io
from flops_fit.design import BRANCHES, plan_branches, with_extra_branches
from flops_fit.flops import FLOPS_MEASURED
from flops_fit.layout import RunDir
from flops_fit.planning import PARAM_COUNT_NON_EMBEDDING, Experiment, SweepPlan, check_trainable, plan_problems, plan_sweep
from flops_fit.result import Result, read_results
from flops_fit.study import CONFIDENCE, N_BOOTSTRAP, StudySpec
from flops_fit.training.mock import MockLaw, mock_run
from flops_fit.training.store import (
    STATUS_FAILED,
    ResultsStore,
    RunRecord,
    driver_lock,
    merge_records,
    read_record_file,
    write_record_file,
)
from flops_fit.training.sweep import DEFAULT_MAX_RETRIES, RunFn, failed_record, is_transient, run_sweep



# ---------------------------------------------------------------------------
# plan


def plan_stage(spec: StudySpec, output_dir: str | Path, *, workers: int | str = "auto", executor: Any = None,
               estimate_cost: bool = True, save: bool = True) -> SweepPlan:
    """Design the IsoFLOP sweep of `spec`, check what it will really compute and cost, write sweep.json.

    The plan made here is the plan that trains: the same flags (too few steps, size
    collisions), the measured-FLOPs check, how many runs go at once and the cost
    estimate at those threads — whether it is then trained or only inspected.
    """
    run = RunDir(output_dir)
    run.check_usable()
    if not spec.budgets:
        raise ValueError("compute_budgets: expected a list of FLOP budgets or min_flops and max_flops, found neither")
    probe = _flops_probe(spec)
    measured = spec.flops_accounting == FLOPS_MEASURED
    count = functools.partial(spec.model.count_params,
                              non_embedding=spec.settings.param_count == PARAM_COUNT_NON_EMBEDDING)
    plan = plan_sweep(spec.budgets, count, size_param=spec.model.size_param,
                      model_name=spec.model.name, model_kwargs=spec.model.model_kwargs, settings=spec.settings,
                      flops_per_unit=probe if measured else None)
    plan.flops_accounting = spec.flops_accounting
    plan.run_settings = spec.run_settings()
    if spec.design == BRANCHES and plan.runnable:
        with_extra_branches(plan, spec.extra_branches)
        plan.design = plan_branches(plan, spec.train_config,
                                    spec.settings.units_per_step if spec.mode == "local" else None)
    if probe is not None and plan.runnable:
        _check_flops_gap(plan, probe, warn=not measured)
    prepare_execution(plan, spec, workers=workers, executor=executor, estimate_cost=estimate_cost)
    if save:
        save_plan(plan, run)
    return plan


def _flops_probe(spec: StudySpec) -> Any:
    """Measured FLOPs per data unit at any size of this study's model (None without data to run it on);
    flops_accounting='measured' needs one."""
    if spec.data_info is None:
        if spec.flops_accounting == FLOPS_MEASURED:
            raise ValueError(
                f"flops_accounting: 'measured' plans each D by the model's FLOPs measured on its data, but this "
                f"study has no data to run the model on (mode={spec.mode!r}); use flops_accounting='6ND', or real "
                "training with a dataset")
        return None
    from flops_fit.training.local import FlopsProbe

    c = spec.model
    return FlopsProbe(c.factory, c.size_param, c.model_kwargs, spec.data.train, spec.loss_fn, spec.data_info,
                      c.count_params)


def _check_flops_gap(plan: SweepPlan, probe: Any, *, warn: bool) -> None:
    """Record measured FLOPs per data unit against 6·N; when the plan counts 6·N·D and they are far apart,
    say so with the factor."""
    from flops_fit.training.local import FLOPS_GAP_WARN, flops_gap

    gap = flops_gap(plan, probe)
    plan.flops_check = gap
    if warn and any(not 1 / FLOPS_GAP_WARN <= g["ratio_to_6N"] <= FLOPS_GAP_WARN for g in gap):
        at = "; ".join(f"×{g['ratio_to_6N']:.2g} at N={g['N']:,.0f}" for g in gap)
        warnings.warn(
            f"flops_accounting: this model's measured FLOPs per {probe.unit_name} (forward+backward, "
            f"FlopCounterMode) are {at} its 6·N estimate, so 6·N·D misstates each run's real compute by that "
            "factor. The plan's budgets count 6·N·D; flops_accounting='measured' plans each D by the measured "
            "FLOPs instead, so that every run spends its budget",
            UserWarning,
            stacklevel=4,
        )


def prepare_execution(plan: SweepPlan, spec: StudySpec, *, workers: int | str = "auto", executor: Any = None,
                      estimate_cost: bool = True) -> None:
    """Threads per run, the cost estimate at those threads, then how many runs go at once (decided in
    ``training.executors``), all recorded in the plan; the same for the library and the CLI."""
    if spec.train_fn is not None:  # a user's own loop cannot be timed or threaded from here
        if isinstance(workers, int) and workers > 1:
            plan.execution = {"workers": workers, "threads_per_run": None, "reason": f"{workers} run(s) at once, as asked"}
        return
    if spec.mode != "local" or spec.needs_data or not plan.runnable:
        return
    from flops_fit.training.executors import choose_execution, makespan, threads_per_run, workers_blocker
    from flops_fit.training.trainer import resolve_device

    device = resolve_device(spec.train_config)
    max_params = max(e.num_params for e in plan.runnable)
    threads = threads_per_run(spec.train_config.num_threads, max_params, str(device)) if executor is None \
        else spec.train_config.num_threads
    tc = dataclasses.replace(spec.train_config, num_threads=threads)
    if estimate_cost and not plan_problems(plan):
        from flops_fit.training.cost import estimate_cost as _estimate

        c = spec.model
        plan.cost_estimate = _estimate(plan, c.factory, c.size_param, c.model_kwargs, spec.data.train, spec.loss_fn,
                                       tc, units_per_sample=spec.data.units_per_sample)
        if plan.design:
            _design_cost(plan.cost_estimate, plan)
    if executor is not None:
        return
    free = None
    if device.type == "cuda":  # packed runs share the device's memory, not the host's
        import torch

        free = int(torch.cuda.mem_get_info(device)[0])
    est = plan.cost_estimate
    kw = dict(n_runs=len(plan.runnable), max_params=max_params, device=str(device), num_threads=threads,
              free_memory=free, serial_seconds=None if est is None else float(est.get("total_seconds", 0.0)))
    choice = choose_execution(workers, **kw)
    if choice["workers"] > 1 or workers != "auto":
        blocker = workers_blocker((spec.model.factory, spec.data.train, spec.loss_fn,
                                   spec.data.val))
        if blocker:
            choice = choose_execution(workers, blocker=blocker, **kw)
    plan.execution = choice
    if est is not None:
        est["workers"] = choice["workers"]
        est["wall_seconds"] = makespan(list((est.get("per_experiment") or {}).values()), choice["workers"])


def _design_cost(est: dict[str, Any], plan: SweepPlan) -> None:
    """Per-run seconds of a trunk-and-branch design: each branch its cooldown's share of a separate run, and
    the trunk (up to its last fork) charged to the branch that trains it first, its longest."""
    from flops_fit.design import run_costs

    per = est.get("per_experiment") or {}
    if not per:
        return
    longest_first = sorted(plan.runnable, key=lambda e: -e.num_tokens)  # each trunk's first taker: its longest
    cost = run_costs(plan, longest_first)
    out = {e.experiment_id: per[e.experiment_id] * cost[e.experiment_id] / e.flops for e in longest_first}
    est["separate_runs_seconds"] = float(sum(per.values()))
    est["per_experiment"], est["total_seconds"] = out, float(sum(out.values()))


def save_plan(plan: SweepPlan, run: RunDir) -> None:
    """Write sweep.json unless it would orphan results made by another plan, or a driver is at work."""
    with driver_lock(run.root) as mine:
        if not mine:
            raise RuntimeError(f"output_dir: a driver is training in {run.root} (its lock is held); refusing to "
                               f"rewrite {run.sweep} under it")
        if run.has_results():
            found, _ = ResultsStore.read(run.results)
            if found != plan.fingerprint():
                raise ValueError(
                    f"{run.results}: these results were made by a different plan (fingerprint {found}, this plan is "
                    f"{plan.fingerprint()}); refusing to overwrite {run.sweep}. Use a new output_dir, "
                    "or resume=False to move the old results aside."
                )
        plan.save(str(run.sweep))


def load_plan(output_dir: str | Path) -> SweepPlan:
    return SweepPlan.load(str(RunDir(output_dir).sweep))


def check_plan_matches(plan: SweepPlan, expected: SweepPlan, source: str) -> None:
    """Refuse to train `plan` (from sweep.json) with a study that planned something else.

    Compares the model, its fixed arguments, the FLOPs accounting and the run
    settings; the message names the first differing field.
    """
    a, b = plan.to_dict(), expected.to_dict()
    for key in ("model_name", "size_param", "model_kwargs", "flops_accounting", "run_settings"):
        diff = _first_difference(a.get(key), b.get(key), key)
        if diff is not None:
            path, found, given = diff
            raise ValueError(
                f"{source}: field {path!r} is {found!r}, but this study gives {given!r}; use the arguments "
                "(or preset and overrides) that planned it, or plan again into a new output_dir"
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
    """The mock engine of a plan made with mode='mock' (law and seed from its run settings)."""
    rs = plan.run_settings
    if rs.get("mode") != "mock":
        raise ValueError(f"sweep.json: field 'run_settings.mode': expected 'mock' for the mock engine, found {rs.get('mode')!r}")
    return functools.partial(mock_run, law=MockLaw(**rs.get("mock_law", {})), seed=int(rs.get("seed", 0)),
                             **({"design": plan.design} if plan.design else {}))


def make_run_fn(spec: StudySpec, plan: SweepPlan, output_dir: str | Path, trackers: Any = None) -> RunFn:
    """What trains one experiment of `plan`, announced to the `trackers` (names or callbacks; see
    :mod:`flops_fit.tracking`): the mock law, the user's train_fn, or the built-in trainer."""
    from flops_fit.tracking import TrackedRun, make_trackers

    callbacks = make_trackers(trackers, output_dir)
    run_fn = _engine(spec, plan, output_dir, callbacks)
    settings = {"mode": spec.mode, "seed": spec.seed, "flops_accounting": spec.flops_accounting}
    if spec.mode == "local" and spec.train_fn is None:
        settings["train_config"] = spec.train_config.identity()
    return TrackedRun(run_fn, callbacks, settings) if callbacks else run_fn


def _engine(spec: StudySpec, plan: SweepPlan, output_dir: str | Path, callbacks: list) -> RunFn:
    """The mock law, the user's train_fn, or the built-in trainer (at the threads per run the plan chose)."""
    out = Path(output_dir)
    if spec.mode == "mock":
        return functools.partial(mock_run, law=spec.mock_law or MockLaw(), seed=spec.seed,
                                 **({"design": plan.design} if plan.design else {}))
    if spec.needs_data:
        missing = "dataset" if spec.data is None else "loss_fn"
        raise ValueError(f"{missing}: expected one for real training (mode='local'), found none")
    c = spec.model
    data = spec.data
    if spec.train_fn is not None:
        from flops_fit.training.user import UserTrainRun

        return UserTrainRun(train_fn=spec.train_fn, model_factory=c.factory, size_param=c.size_param,
                            model_kwargs=c.model_kwargs, dataset=data.train if data else None,
                            val_dataset=data.val if data else None, loss_fn=spec.loss_fn, output_dir=out,
                            seed=spec.seed, flops_accounting=spec.flops_accounting,
                            units=spec.data_info.units if spec.data_info is not None else "tokens")
    from flops_fit.training.local import make_run_fn as trainer_run_fn

    tc = spec.train_config
    threads = (plan.execution or {}).get("threads_per_run", tc.num_threads)
    if threads != tc.num_threads:  # operational: the plan's identity is unchanged
        tc = dataclasses.replace(tc, num_threads=threads)
    return trainer_run_fn(
        model_factory=c.factory, size_param=c.size_param, model_kwargs=c.model_kwargs, dataset=data.train,
        loss_fn=spec.loss_fn, train_config=tc, output_dir=out, seed=spec.seed, val_dataset=data.val,
        flops_accounting=spec.flops_accounting, units_per_sample=data.units_per_sample,
        allow_repeat=spec.allow_repeat, data_info=spec.data_info, experiments=plan.runnable, callbacks=callbacks,
        design=plan.design,
    )


def train(spec: StudySpec, plan: SweepPlan, output_dir: str | Path, *, experiment_id: str | int | None = None,
          executor: Any = None, executor_options: Mapping[str, Any] | None = None, trackers: Any = None,
          **options: Any) -> "TrainReport":
    """Train `plan` with `spec`'s engine: the driver (every runnable experiment not yet done, on the executor
    the plan's execution chose unless one is given) or one experiment. `options` go to :func:`train_stage`."""
    if experiment_id is None:
        check_trainable(plan)  # before building anything: no runnable run, or one budget, pins down no law
    run_fn = make_run_fn(spec, plan, output_dir, trackers)
    k = (plan.execution or {}).get("workers", 1)
    if executor is None and k > 1 and experiment_id is None:
        executor, executor_options = "pool", {"workers": k, "threads_per_run": plan.execution.get("threads_per_run")}
    return train_stage(output_dir, run_fn, plan=plan, experiment_id=experiment_id, executor=executor,
                       executor_options=executor_options, **options)


def train_adaptive(spec: StudySpec, static: SweepPlan, output_dir: str | Path, *, target: Any = None,
                   max_extensions: int = 2, resume: bool = True, analysis: Mapping[str, Any] | None = None,
                   **options: Any) -> SweepPlan:
    """An adaptive sweep (``flops_fit.adaptive``) starting from the fixed grid `static` (checked answerable
    first): rounds decided from the runs so far, each recorded in sweep.json and trained with :func:`train`
    (`options`); rounds already recorded there are replayed. Returns the plan as it ends."""
    from flops_fit import adaptive as ad

    run = RunDir(output_dir)
    check_trainable(static)
    plan = dataclasses.replace(static, experiments=[], dropped=[], design=None,
                               adaptive=ad.adaptive_settings(ad.make_target(target), max_extensions))
    old = ad.read_previous(run.sweep, plan) if resume else None
    if old is not None:
        ids = {i for r in old.adaptive["rounds"] for i in r.get("experiments", [])}
        plan.experiments = [e for e in old.experiments if e.experiment_id in ids]
        plan.dropped, plan.adaptive["rounds"] = list(old.dropped), list(old.adaptive["rounds"])
        with_extra_branches(plan, spec.extra_branches)  # the extras of those rounds: their records are read next
    if resume:  # before paying for anything: results of another plan are refused on opening
        ResultsStore(run.results, plan.fingerprint(), resume=True)
    first = [resume]

    def train_round(p: SweepPlan) -> None:
        if spec.design == BRANCHES:
            with_extra_branches(p, spec.extra_branches)
            p.design = plan_branches(p, spec.train_config, spec.settings.units_per_step if spec.mode == "local"
                                     else None)
        train(spec, p, run.root, resume=first[0], save_plan=True, **options)
        first[0] = True

    def records() -> list[RunRecord]:
        return read_results(run.root, plan)[1] if run.has_results() else []

    def result() -> Result:
        return Result.from_records(records(), plan, run.root, **dict(analysis or {}))

    count = functools.partial(spec.model.count_params,
                              non_embedding=spec.settings.param_count == PARAM_COUNT_NON_EMBEDDING)
    probe = _flops_probe(spec) if spec.flops_accounting == FLOPS_MEASURED else None
    return ad.run_adaptive(plan, count, train=train_round, records=records, result=result,
                           save=lambda p: p.save(str(run.sweep)), flops_per_unit=probe)


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
    with `executor`, and journals each finished run. With an id (a string,
    or an index into the runnable experiments) it trains that one experiment
    and writes ``records/<id>.json`` only.
    """
    run = RunDir(output_dir)
    plan = plan or load_plan(run.root)
    if experiment_id is not None:
        return _train_one(run, plan, run_fn, experiment_id, resume=resume, retry_failed=retry_failed)
    check_trainable(plan)  # the same rule for every front end, before anything trains
    with driver_lock(run.root) as mine:
        if not mine:
            raise RuntimeError(
                f"output_dir: another driver is writing {run.results} (lock {run.lock} is held); "
                "wait for it to finish, or run single experiments with experiment_id=..."
            )
        io.clean_stale_temp_files(run.root)  # temp files of writers killed mid-write
        store = ResultsStore(run.results, plan.fingerprint(), resume=resume, planned=plan.planned_runs())
        if store.moved_aside is not None:
            warnings.warn(f"resume=False: previous results moved to {store.moved_aside}", UserWarning, stacklevel=3)
        if save_plan:  # only now: the store has refused or moved aside results of another plan
            plan.save(str(run.sweep))
        merged = merge_records(run.root, store) if resume else 0
        _check_precision(store, run_fn)
        skipped = sorted(store.done_ids(include_failed=not retry_failed) & {e.experiment_id for e in plan.runnable})
        new = _drive(plan, run_fn, store, executor, executor_options, progress=progress, retry_failed=retry_failed,
                     max_retries=max_retries)
        if run.checkpoints_dir.is_dir():
            from flops_fit.training.checkpoint import cleanup_checkpoints

            from flops_fit.training.branches import cleanup_trunks

            done = store.done_ids(include_failed=False)
            cleanup_checkpoints(run.root, done)
            cleanup_trunks(run.root, plan.design, done)
    return TrainReport(new, merged=merged, skipped=skipped, results_path=store.path, moved_aside=store.moved_aside)


def _drive(plan: SweepPlan, run_fn: RunFn, store: ResultsStore, executor: Any,
           executor_options: Mapping[str, Any] | None, **options: Any) -> list[RunRecord]:
    """run_sweep on an executor made here (and shut down here), or on the caller's own."""
    from flops_fit.training.executors import get_executor

    ours = executor is None or isinstance(executor, str)  # objects the caller passed stay theirs to close
    ex = get_executor(executor, **dict(executor_options or {})) if ours else executor
    interrupted = True
    try:
        new = run_sweep(plan, run_fn, store, executor=ex, **options)
        interrupted = False
    finally:
        shutdown = getattr(ex, "shutdown", None)
        if ours and callable(shutdown):  # every built-in executor takes wait=
            # Ctrl-C / SIGTERM: stop runs in flight now (their checkpoints stay); else let them finish
            shutdown(wait=not interrupted)
    return new


def _train_one(run: RunDir, plan: SweepPlan, run_fn: RunFn, experiment_id: str | int, *, resume: bool,
               retry_failed: bool) -> TrainReport:
    """One experiment (a job-array task): skipped if done, else trained into records/<id>.json."""
    fingerprint = plan.fingerprint()
    exp = _find_experiment(plan, experiment_id, str(run.sweep))
    done = None
    rpath = run.record(exp.experiment_id)
    if rpath.exists():
        fp, rec = read_record_file(rpath)
        done = rec if fp == fingerprint else None
    if done is None and run.has_results():
        fp, records = ResultsStore.read(run.results)
        if fp != fingerprint:
            raise ValueError(f"{run.results}: field 'plan_fingerprint' is {fp}, but {run.sweep} describes plan "
                             f"{fingerprint}; the two files come from different sweeps")
        done = next((r for r in records if r.experiment_id == exp.experiment_id), None)
    if done is not None and resume and not done.transient and not (retry_failed and done.status == STATUS_FAILED):
        return TrainReport([], skipped=[exp.experiment_id], results_path=rpath)
    try:
        record = run_fn(exp)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded as the run's failure, like the driver does
        import traceback

        record = failed_record(exp, "".join(traceback.format_exception_only(type(exc), exc)).strip(),
                               plan.flops_accounting, transient=is_transient(exc))
    return TrainReport([record], results_path=write_record_file(run.root, record, fingerprint))


# ---------------------------------------------------------------------------
# analyze, visualize


def analyze_stage(
    output_dir: str | Path,
    *,
    exclude_outliers: bool = True,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Result:
    """Fit the scaling laws to the sweep's results and write analysis/scaling_laws.json.

    Per-experiment record files are merged first unless a driver is training
    (then the results written so far are analysed, with a warning).
    """
    run = RunDir(output_dir)
    if not run.root.is_dir():
        raise FileNotFoundError(f"output_dir: {run.root} is not a directory")
    # record files need the plan's fingerprint: then sweep.json must exist (load_plan names it if not)
    plan = load_plan(run.root) if run.sweep.exists() or run.records_dir.is_dir() else None
    if run.records_dir.is_dir():
        with driver_lock(run.root) as mine:
            if mine:
                merge_records(run.root, ResultsStore(run.results, plan.fingerprint(), resume=True))
            else:
                warnings.warn(f"output_dir: a driver is training in {run.root}; analysing the results written so far",
                              UserWarning, stacklevel=2)
    fingerprint, records = read_results(run.root, plan)
    result = Result.from_records(records, plan, run.root, exclude_outliers=exclude_outliers, n_bootstrap=n_bootstrap,
                                 seed=seed, confidence=confidence, plan_fingerprint=fingerprint)
    result.save()
    return result


def visualize_stage(output_dir: str | Path, result: Result | None = None) -> list[Path]:
    """Draw the three figures from analysis/scaling_laws.json (or from `result`, just fitted: no refit)."""
    run = RunDir(output_dir)
    if result is None:
        if not run.analysis.exists():
            raise FileNotFoundError(f"{run.analysis}: file not found; run ff-analyze first")
        result = Result.load(run.root)
    import matplotlib.pyplot as plt

    for fig in result.plot(show=False, save=True):
        plt.close(fig)
    return run.plots
