"""Runs at once on one machine: the decision (choose_execution), the worker pool, and a real sweep that gives
the same losses with k runs at once as one at a time."""

from __future__ import annotations

import json
import time

import pytest

import ff_proc_helpers as P
import ff_train_helpers as H
import flops_fit as ff
from flops_fit.planning import Experiment, SweepPlan
from flops_fit.training.executors import (
    PoolExecutor,
    RunProcessDied,
    choose_execution,
    makespan,
    workers_blocker,
)
from flops_fit.training.store import ResultsStore
from flops_fit.training.sweep import run_sweep

GiB = 2**30
AUTO = dict(n_runs=14, max_params=1_000_000, device="cpu", num_threads=None, serial_seconds=300.0, cores=2,
            free_memory=64 * GiB)


def test_auto_runs_one_small_model_per_core_with_one_thread():
    c = choose_execution("auto", **AUTO)
    assert (c["workers"], c["threads_per_run"]) == (2, 1) and "2 runs at once" in c["reason"]
    assert choose_execution("auto", **{**AUTO, "cores": 16})["workers"] == 14  # never more workers than runs


@pytest.mark.parametrize("change, workers, why", [
    ({"serial_seconds": 5.0}, 1, "the sweep is short (5 s estimated)"),
    ({"max_params": 200_000_000}, 1, "models up to N=200,000,000 use several cores"),
    ({"cores": 1}, 1, "one core"),
    ({"n_runs": 1}, 1, "one run"),
    ({"num_threads": 2}, 1, "each run uses 2 threads"),
    ({"free_memory": 700 * 2**20}, 1, "memory allows one run"),
    ({"device": "cuda:0"}, 1, "one run at a time on the GPU"),
    ({"blocker": "the model is defined in a notebook"}, 1, "the model is defined in a notebook"),
])
def test_auto_says_why_it_runs_one_at_a_time(change, workers, why):
    c = choose_execution("auto", **{**AUTO, **change})
    assert c["workers"] == workers and why in c["reason"]


def test_asked_workers_are_checked_not_silently_changed():
    assert choose_execution(3, **AUTO)["workers"] == 3
    with pytest.raises(ValueError, match=r"workers: 2 runs at once need worker processes, but a lambda"):
        choose_execution(2, **{**AUTO, "blocker": "a lambda"})
    with pytest.raises(ValueError, match=r"workers: 8 runs at once need about .* GiB, but 1.0 GiB is free; pass workers=1"):
        choose_execution(8, **{**AUTO, "max_params": 20_000_000, "free_memory": GiB})
    for bad in (0, -1, "many", 2.5, True):
        with pytest.raises(ValueError, match=r"workers: expected 'auto' or a positive integer"):
            choose_execution(bad, **AUTO)


def test_packed_gpu_runs_say_whether_cuda_mps_lets_their_kernels_overlap(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    gpu = {**AUTO, "device": "cuda:0", "free_memory": 80 * GiB}
    off = choose_execution(4, **gpu)
    assert off["workers"] == 4 and "CUDA MPS is not running" in off["reason"]
    assert "nvidia-cuda-mps-control -d" in off["reason"]
    (tmp_path / "control").touch()  # the daemon's control pipe
    on = choose_execution(4, **gpu)
    assert on["workers"] == 4 and "CUDA MPS is running" in on["reason"]
    assert "MPS" not in choose_execution(1, **gpu)["reason"]  # one run: nothing to overlap
    assert "MPS" not in choose_execution(2, **AUTO)["reason"]  # CPU runs


def test_makespan_is_longest_first_on_k_slots():
    assert makespan([4, 3, 3, 2], 1) == 12
    assert makespan([4, 3, 3, 2], 2) == 6  # {4, 2} and {3, 3}
    assert makespan([10, 1, 1], 2) == 10


def test_what_cannot_reach_a_worker_is_named():
    assert workers_blocker((H.TinyLM, H.TokenData(16), H.lm_loss)) is None
    why = workers_blocker((H.TinyLM, lambda o, b: o.sum()))
    assert why.startswith("the model, data or loss cannot be pickled")


def _plan(n):
    exps = [Experiment(f"C1e18-w{k}", 1e18, 0, k, 10**6 * k, 1e12 / k, 1e6) for k in range(3, 3 + n)]
    return SweepPlan(budgets=[1e18], experiments=exps, size_param="w", model_name="m")


def test_pool_sends_the_run_function_once_per_worker_and_survives_a_dead_worker(tmp_path):
    pool = PoolExecutor(workers=2)
    try:
        fn = P.CountsUnpickling(str(tmp_path))
        plan = _plan(6)
        store = ResultsStore(tmp_path / "results.json", plan.fingerprint())
        recs = run_sweep(plan, fn, store, executor=pool, progress=False)
        assert sorted(r.experiment_id for r in recs) == sorted(e.experiment_id for e in plan.experiments)
        assert all(r.ok for r in recs)
        assert len(list(tmp_path.glob("unpickled-*"))) <= 2  # 6 runs, at most one transfer per worker
        pids = {pool.submit(P.pid_of_worker).result(timeout=60) for _ in range(6)}
        assert 1 <= len(pids) <= 2  # long-lived workers, not a process per run
        dead = pool.submit(P.self_kill)
        with pytest.raises(RunProcessDied, match="killed by signal SIGKILL"):
            dead.result(timeout=60)
        assert pool.submit(P.add, 2, b=3).result(timeout=60) == 5  # a replacement worker takes the next run
    finally:
        pool.shutdown()


def test_pool_shutdown_without_waiting_stops_runs_at_once():
    pool = PoolExecutor(workers=1)
    fut = pool.submit(time.sleep, 60)
    time.sleep(1.0)
    t0 = time.perf_counter()
    pool.shutdown(wait=False)
    assert time.perf_counter() - t0 < 15
    with pytest.raises(Exception):
        fut.result(timeout=30)


SWEEP = dict(model_cls=H.TinyLM, model_size_param="d_model", dataset=H.TokenData(512), loss_fn=H.lm_loss,
             compute_budgets=[3e7, 1e8], num_model_sizes=3, span_decades=0.5, size_min=4, size_max=128,
             train_config={"batch_size": 8, "val_units": 128}, n_bootstrap=20, progress=False)


def test_a_real_sweep_with_two_runs_at_once_matches_one_at_a_time_bit_for_bit(tmp_path):
    one = ff.find_optimal(output_dir=tmp_path / "one", workers=1, **SWEEP)
    two = ff.find_optimal(output_dir=tmp_path / "two", workers=2, **SWEEP)
    assert one.plan.execution["workers"] == 1 and one.plan.execution["threads_per_run"] == 1
    assert two.plan.execution == {"workers": 2, "threads_per_run": 1, "reason": "2 run(s) at once, as asked"}
    losses = lambda r: {x.experiment_id: x.final_loss for x in r.records}  # noqa: E731
    assert len(losses(two)) >= 6 and losses(two) == losses(one)
    saved = json.loads((tmp_path / "two" / "sweep.json").read_text())
    assert saved["execution"]["workers"] == 2 and saved["fingerprint"] == json.loads(
        (tmp_path / "one" / "sweep.json").read_text())["fingerprint"]  # operational: same sweep identity
    est = two.plan.cost_estimate
    assert est["workers"] == 2 and est["wall_seconds"] < est["total_seconds"]
    assert "2 runs at once" in two.plan.summary()


def test_workers_and_executor_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="workers: give workers or executor, not both"):
        ff.find_optimal(output_dir=tmp_path, workers=2, executor="process", **SWEEP)
    with pytest.raises(ValueError, match=r"workers: expected 'auto' or a positive integer .* found 0"):
        ff.find_optimal(output_dir=tmp_path, workers=0, **SWEEP)
    with pytest.raises(ValueError, match=r"workers: 2 runs at once need worker processes, but the model, data or "
                                         r"loss cannot be pickled"):
        ff.find_optimal(output_dir=tmp_path, workers=2, **{**SWEEP, "loss_fn": lambda o, b: H.lm_loss(o, b)})
