"""Promises of docs/reliability.md: a kill storm loses and repeats nothing and leaves no orphan; a
transient fault never moves the answer; a deterministic one is kept until retry_failed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ff_proc_helpers as P
from flops_fit.planning import Experiment, SweepPlan
from flops_fit.training.executors import ProcessExecutor
from flops_fit.training.store import ResultsStore
from flops_fit.training.sweep import run_sweep

HERE = Path(__file__).parent
SCRIPT = HERE / "sweep_script_for_kill.py"


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids |= {int(x) for x in fh.read().split()}
    except OSError:
        pass
    return kids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            state = next(line for line in fh if line.startswith("State:"))
        return "Z" not in state.split()[1]  # a zombie has died; only its reaping is left
    except (OSError, StopIteration):
        return False


def _run(out: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), str(out), "--process"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_run_process_dies_with_its_killed_driver(tmp_path):
    pidfile = tmp_path / "child.pid"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    driver = subprocess.Popen([sys.executable, str(HERE / "driver_with_sleeper.py"), str(pidfile)], env=env,
                              start_new_session=True)
    try:
        t = time.time()
        while not (pidfile.exists() and pidfile.read_text()) and time.time() - t < 60:
            time.sleep(0.05)
        child = int(pidfile.read_text())
        assert _alive(child)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(30)
        t = time.time()
        while _alive(child) and time.time() - t < 10:
            time.sleep(0.05)
        alive = _alive(child)
        if alive:
            os.kill(child, signal.SIGKILL)
        assert not alive, "the run process outlived its SIGKILLed driver (an orphan training on)"
    finally:
        if driver.poll() is None:
            driver.kill()


@pytest.mark.slow  # ~90 s: 12 kills of a real process-executor sweep, then a reference sweep
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_kill_storm_loses_and_repeats_nothing_and_leaves_no_orphan(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    ref = tmp_path / "ref"
    ref.mkdir()
    assert subprocess.run([sys.executable, str(SCRIPT), str(ref), "--process"], env=env, timeout=300).returncode == 0
    reference = {r["experiment_id"]: r for r in json.loads((ref / "results.json").read_text())["records"]}

    out = tmp_path / "storm"
    out.mkdir()
    rng = random.Random(3)
    kills, orphans_seen = 0, []
    deadline = time.time() + 240
    while kills < 12 and time.time() < deadline:
        proc = _run(out, env)
        time.sleep(rng.uniform(1.5, 4.0))  # spawn + torch import take ~1-2 s: kill at any point after
        kids = _children(proc.pid)
        if proc.poll() is not None:  # finished before this kill
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        kills += 1
        t = time.time()
        while any(_alive(k) for k in kids) and time.time() - t < 10:
            time.sleep(0.05)
        orphans_seen += [k for k in kids if _alive(k)]
        for k in kids:  # never leave one behind, whatever the assertion says
            if _alive(k):
                os.kill(k, signal.SIGKILL)
    assert kills >= 10, f"only {kills} kills before the sweep finished"
    assert not orphans_seen, f"run processes outlived their killed driver: {orphans_seen}"
    final = _run(out, env)
    assert final.wait(300) == 0
    records = json.loads((out / "results.json").read_text())["records"]
    ids = [r["experiment_id"] for r in records]
    assert sorted(ids) == sorted(reference) and len(ids) == len(set(ids))  # every experiment exactly once
    for r in records:
        ref_r = reference[r["experiment_id"]]
        assert r["status"] == ref_r["status"] == "completed"
        assert r["final_loss"] == pytest.approx(ref_r["final_loss"], rel=1e-6, abs=1e-7)
        assert r["details"]["steps"] == ref_r["details"]["steps"]


def _plan(n: int = 6) -> SweepPlan:
    exps = [Experiment(f"C1e18-w{k}", 1e18 * (1 + k // 3), 0, k + 1, 10**6 * (k + 1), 1e12 / (k + 1), 1e6)
            for k in range(n)]
    return SweepPlan(budgets=sorted({e.compute_budget for e in exps}), experiments=exps, size_param="w",
                     model_name="m")


def _losses(path: Path) -> dict[str, float]:
    return {r.experiment_id: r.final_loss for r in ResultsStore.read(path)[1]}


def test_transient_faults_are_retried_and_never_move_the_answer(tmp_path):
    plan = _plan()
    ref_store = ResultsStore(tmp_path / "ref.json", plan.fingerprint())
    run_sweep(plan, P.run_ok, ref_store, progress=False)
    faults = {"C1e18-w0": "oom", "C1e18-w1": "signal", "C1e18-w2": "enospc"}
    store = ResultsStore(tmp_path / "results.json", plan.fingerprint())
    ex = ProcessExecutor()
    try:
        new = run_sweep(plan, P.FailOnce(str(tmp_path), faults), store, executor=ex, progress=False)
    finally:
        ex.shutdown()
    assert all(r.status == "completed" for r in new), [r.error for r in new]
    assert _losses(tmp_path / "results.json") == _losses(tmp_path / "ref.json")
    assert all((tmp_path / f"failed-{k}").exists() for k in faults)  # each fault really happened once


def test_transient_failure_left_after_retries_is_retried_on_the_next_call(tmp_path):
    plan = _plan(3)
    store = ResultsStore(tmp_path / "results.json", plan.fingerprint())
    run_fn = P.FailOnce(str(tmp_path), {"C1e18-w0": "oom"})
    first = run_sweep(plan, run_fn, store, progress=False, max_retries=0)
    failed = [r for r in first if r.status == "failed"]
    assert len(failed) == 1 and failed[0].transient and "out of memory" in failed[0].error
    again = run_sweep(plan, run_fn, ResultsStore(tmp_path / "results.json", plan.fingerprint()), progress=False)
    assert [r.experiment_id for r in again] == ["C1e18-w0"] and again[0].status == "completed"


def test_deterministic_failure_is_kept_until_retry_failed(tmp_path):
    plan = _plan(3)
    run_fn = P.FailOnce(str(tmp_path), {"C1e18-w1": "bug"})
    store = ResultsStore(tmp_path / "results.json", plan.fingerprint())
    first = {r.experiment_id: r for r in run_sweep(plan, run_fn, store, progress=False)}
    assert first["C1e18-w1"].status == "failed" and not first["C1e18-w1"].transient
    assert first["C1e18-w1"].details["attempts"] == 1  # a bug is not retried within the sweep
    store = ResultsStore(tmp_path / "results.json", plan.fingerprint())
    assert run_sweep(plan, run_fn, store, progress=False) == []  # ... nor on the next call
    fixed = run_sweep(plan, run_fn, store, progress=False, retry_failed=True)
    assert [r.experiment_id for r in fixed] == ["C1e18-w1"] and fixed[0].status == "completed"
