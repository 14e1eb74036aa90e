"""The sweep driver: submit every unfinished experiment, write each result as it lands."""

from __future__ import annotations

import traceback
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Callable

from tqdm.auto import tqdm

from flops_fit.planning import Experiment, SweepPlan
from flops_fit.training.executors import Executor, LocalExecutor
from flops_fit.training.store import STATUS_FAILED, ResultsStore, RunRecord

RunFn = Callable[[Experiment], RunRecord]


def failed_record(exp: Experiment, error: str, flops_method: str, units: str = "tokens") -> RunRecord:
    return RunRecord(
        experiment_id=exp.experiment_id,
        compute_budget=exp.compute_budget,
        size_value=exp.size_value,
        num_params=exp.num_params,
        num_tokens=exp.num_tokens,
        final_loss=None,
        status=STATUS_FAILED,
        flops=exp.flops,
        flops_method=flops_method,
        units=units,
        error=error,
    )


def run_sweep(
    plan: SweepPlan,
    run_fn: RunFn,
    store: ResultsStore,
    *,
    executor: Executor | None = None,
    progress: bool | None = None,
    retry_failed: bool = False,
) -> list[RunRecord]:
    """Train every runnable experiment not yet in `store`; returns the records made now.

    Completed and diverged experiments are never redone (a diverged run is a
    result: the same seed would diverge again); failed ones only with
    `retry_failed`. Each record is made durable before the next is awaited.
    """
    executor = executor or LocalExecutor()
    done = store.done_ids(include_failed=not retry_failed)
    todo = deque(e for e in plan.runnable if e.experiment_id not in done)
    new: list[RunRecord] = []
    if not todo:
        return new
    total_flops = sum(e.flops for e in todo)
    bar = tqdm(
        total=len(todo),
        desc="sweep",
        unit="run",
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
    )
    flops_done = 0.0
    inflight: dict[Future, Experiment] = {}
    try:
        while todo or inflight:
            while todo and len(inflight) < max(1, executor.capacity):
                exp = todo.popleft()
                inflight[executor.submit(run_fn, exp)] = exp
            finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for fut in finished:
                exp = inflight.pop(fut)
                exc = fut.exception()
                if exc is None:
                    record = fut.result()
                    if not isinstance(record, RunRecord) or record.experiment_id != exp.experiment_id:
                        record = failed_record(
                            exp, f"run function returned {type(record).__name__}, expected its RunRecord",
                            plan.flops_accounting,
                        )
                else:
                    tb = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                    record = failed_record(exp, tb, plan.flops_accounting)
                store.add(record)
                new.append(record)
                flops_done += exp.flops
                bar.update(1)
                bar.set_postfix_str(f"{flops_done / total_flops:.0%} of FLOPs")
    finally:
        bar.close()
    return new
