"""The sweep driver: submit every unfinished experiment, write each result as it lands.

A failure is classified once, here: *transient* failures (out of memory, a run
process killed by a signal or lost with its worker, an I/O error such as a full
disk) say nothing about the run, so they are retried within the sweep up to
``max_retries`` times and, if still failing, stored marked transient and retried
on the next call; any other failure is deterministic (the same inputs fail the
same way) and is stored, retried only with ``retry_failed``.
"""

from __future__ import annotations

import contextlib
import errno
import sys
import time
import traceback
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, Callable

from flops_fit.log import progress_logger

from tqdm.auto import tqdm

from flops_fit.planning import Experiment, SweepPlan
from flops_fit.training.executors import Executor, LocalExecutor
from flops_fit.training.store import STATUS_FAILED, ResultsStore, RunRecord

RunFn = Callable[[Experiment], RunRecord]


#: errno values of I/O failures that a retry can survive (a full disk freed, a file server back)
TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN,
                    errno.ENOMEM}
#: exception class names of engines that lose workers (Ray, Dask), matched by name: their packages are optional
TRANSIENT_NAMES = ("RunProcessDied", "OutOfMemoryError", "WorkerCrashedError", "ActorDiedError",
                   "NodeDiedError", "KilledWorker", "WorkerLostError", "ObjectLostError", "RunBusyError")
DEFAULT_MAX_RETRIES = 2


def is_transient(exc: BaseException) -> bool:
    """True for failures that say nothing about the run itself (see the module docstring)."""
    for e in _chain(exc):
        if isinstance(e, MemoryError) or type(e).__name__ in TRANSIENT_NAMES:
            return True
        if isinstance(e, OSError) and e.errno in TRANSIENT_ERRNOS:
            return True
        if isinstance(e, RuntimeError) and "out of memory" in str(e).lower():
            return True
    return False


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def failed_record(exp: Experiment, error: str, flops_method: str, transient: bool = False,
                  attempts: int = 1) -> RunRecord:
    """The record of a run that raised: no loss, the planned compute, the error and whether to retry it."""
    return RunRecord.of(
        exp,
        final_loss=None,
        status=STATUS_FAILED,
        flops=exp.flops,
        flops_method=flops_method,
        units="tokens",
        error=error,
        details={"transient": transient, "attempts": attempts},
    )


def progress_line(record: RunRecord, done: int, total: int, flops_done: float, total_flops: float,
                  elapsed_s: float, left_s: float | None = None) -> str:
    """One log line per finished run (what nohup, SLURM and pipes get): the run, and the sweep's progress
    and time left by FLOPs (runs differ in cost by 10x and more, so counting runs misleads); `left_s`, when
    the runs have cost estimates, replaces the FLOPs extrapolation (see :func:`_time_left`)."""
    frac = flops_done / total_flops if total_flops > 0 else 1.0
    left = left_s if left_s is not None else elapsed_s * (1 - frac) / frac if frac > 0 else float("nan")
    loss = f"loss {record.final_loss:.4f}" if record.final_loss is not None else record.status
    return (f"[flops-fit] {done}/{total} {record.experiment_id}: {loss}, N={record.num_params:.3g}, "
            f"D={record.num_tokens:.3g}, {record.wall_time_s:.1f} s | {frac:.0%} of FLOPs done, "
            f"{_duration(elapsed_s)} elapsed, about {_duration(left)} left")


def _duration(s: float) -> str:
    if not s == s:  # nan
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def run_sweep(
    plan: SweepPlan,
    run_fn: RunFn,
    store: ResultsStore,
    *,
    executor: Executor | None = None,
    progress: bool | None = None,
    retry_failed: bool = False,
    max_retries: int = DEFAULT_MAX_RETRIES,
) -> list[RunRecord]:
    """Train every runnable experiment not yet in `store`; returns the records made now.

    Completed and diverged experiments are never redone (a diverged run is a
    result: the same seed would diverge again); deterministic failures only with
    `retry_failed`; transient ones always, and up to `max_retries` more times
    within this call. Each record is made durable before the next is awaited.
    """
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries: expected an int >= 0, found {max_retries!r}")
    try:
        new = _drive(plan, run_fn, store, executor or LocalExecutor(), progress, retry_failed, max_retries)
    except BaseException:  # Ctrl-C, a crash of the driver loop: compact if we can; the journal keeps all anyway
        with contextlib.suppress(OSError):
            store.compact()
        raise
    store.compact()  # the journal into results.json
    return new


def _running_share(running: Any, started: dict[str, float], seconds: dict[str, float], cost: dict[str, float],
                   now: float) -> float:
    """FLOPs the runs still in flight have done by now, by their estimated seconds (capped at 90%: an estimate
    is not a finish); 0 for runs without an estimate. Without this, runs at once make time left look long."""
    done = 0.0
    for exp in running:
        est = seconds.get(exp.experiment_id)
        if est and est > 0:
            done += cost[exp.experiment_id] * min(0.9, (now - started[exp.experiment_id]) / est)
    return done


def _time_left(finished: list[RunRecord], todo: Any, running: Any, started: dict[str, float],
               seconds: dict[str, float], now: float, capacity: int) -> float | None:
    """Seconds left from the runs' cost estimates, scaled by how the finished runs compared with theirs (their
    own wall time, plus any trunk they trained), spread over the runs at once; None without estimates."""
    est = [seconds.get(r.experiment_id) for r in finished if r.ok]
    real = [r.wall_time_s + float(r.details.get("trunk_wall_time_s") or 0.0) for r in finished if r.ok]
    pairs = [(e, w) for e, w in zip(est, real) if e and w]
    if not pairs or not seconds:
        return None
    scale = sum(w for _, w in pairs) / sum(e for e, _ in pairs)
    left = sum(seconds.get(e.experiment_id, 0.0) for e in todo)
    left += sum(seconds.get(e.experiment_id, 0.0) * (1 - min(0.9, (now - started[e.experiment_id])
                                                            / max(1e-9, seconds.get(e.experiment_id, 0.0) or 1e-9)))
                for e in running)
    n = len(todo) + len(list(running))
    return scale * left / max(1, min(capacity, n)) if n else 0.0


def _drive(plan: SweepPlan, run_fn: RunFn, store: ResultsStore, executor: Executor, progress: bool | None,
           retry_failed: bool, max_retries: int) -> list[RunRecord]:
    done = store.done_ids(include_failed=not retry_failed)
    todo = deque(e for e in plan.runnable if e.experiment_id not in done)
    if executor.capacity > 1:  # longest first: the last runs to finish are short ones (results do not depend on order)
        est = (plan.cost_estimate or {}).get("per_experiment") or {}
        todo = deque(sorted(todo, key=lambda e: -float(est.get(e.experiment_id, e.flops))))
    new: list[RunRecord] = []
    if not todo:
        return new
    from flops_fit.design import run_costs

    cost = run_costs(plan, list(todo))  # what each run really costs (a branch its cooldown; its trunk once)
    total_flops = sum(cost.values())
    terminal = sys.stderr.isatty()
    lines = progress is None and not terminal  # nohup, SLURM, a pipe: one log line per finished run instead
    bar = tqdm(  # counts FLOPs, so its time left is by compute, not by number of runs
        total=total_flops,
        desc="sweep",
        unit="FLOP",
        unit_scale=True,
        disable=not (progress is True or (progress is None and terminal)),
        dynamic_ncols=True,
    )
    flops_done = 0.0
    t_start = time.perf_counter()
    inflight: dict[Future, Experiment] = {}
    started: dict[str, float] = {}
    seconds = (plan.cost_estimate or {}).get("per_experiment") or {}
    attempts: dict[str, int] = {}
    n_todo = len(todo)
    try:
        while todo or inflight:
            while todo and len(inflight) < max(1, executor.capacity):
                exp = todo.popleft()
                inflight[executor.submit(run_fn, exp)] = exp
                started[exp.experiment_id] = time.perf_counter()
            finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for fut in finished:
                exp = inflight.pop(fut)
                exc = fut.exception()
                attempts[exp.experiment_id] = attempts.get(exp.experiment_id, 0) + 1
                if exc is not None and is_transient(exc) and attempts[exp.experiment_id] <= max_retries:
                    todo.append(exp)  # a one-off fault: the same run again, resuming from its checkpoint
                    if lines:
                        progress_logger().warning(f"[flops-fit] {exp.experiment_id}: transient failure, retrying "
                                                  f"({type(exc).__name__}: {str(exc)[:200]})")
                    continue
                if exc is None:
                    record = fut.result()
                    if not isinstance(record, RunRecord) or record.experiment_id != exp.experiment_id:
                        record = failed_record(
                            exp, f"run function returned {type(record).__name__}, expected its RunRecord",
                            plan.flops_accounting,
                        )
                else:
                    tb = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                    record = failed_record(exp, tb, plan.flops_accounting, transient=is_transient(exc),
                                           attempts=attempts[exp.experiment_id])
                est = (plan.cost_estimate or {}).get("per_experiment", {}).get(exp.experiment_id)
                if est is not None and record.ok:  # the plan's estimate beside the run's wall time
                    record.details["estimated_wall_time_s"] = float(est)
                store.add(record)
                new.append(record)
                flops_done += cost[exp.experiment_id]
                bar.update(cost[exp.experiment_id])
                bar.set_postfix_str(f"{len(new)}/{n_todo} runs")
                if lines:
                    now = time.perf_counter()
                    running = _running_share(inflight.values(), started, seconds, cost, now)
                    left = _time_left(new, todo, inflight.values(), started, seconds, now, executor.capacity)
                    progress_logger().info(progress_line(record, len(new), n_todo, flops_done + running,
                                                         total_flops, now - t_start, left))
    finally:
        bar.close()
    return new
