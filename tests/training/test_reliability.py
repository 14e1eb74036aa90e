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

import ff_proc_helpers as P
import pytest

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
        while not (pidfile.exists() and pidfile.read_text()) and time.time() - t < 60 and driver.poll() is None:
            time.sleep(0.05)
        if not (pidfile.exists() and pidfile.read_text()):
            driver.kill()
            pytest.fail(f"the run process never started (driver exit {driver.wait()}): {driver.stderr.read().decode()}")
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


def test_ctrl_c_stops_the_sweep_within_seconds(tmp_path):
    """SIGINT to a driver whose run would take 60 s: it stops in seconds, and the run process with it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    driver = subprocess.Popen([sys.executable, str(HERE / "driver_interrupted.py"), str(tmp_path)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    pidfile = tmp_path / "child.pid"
    try:
        t = time.time()
        while not (pidfile.exists() and pidfile.read_text()) and time.time() - t < 60 and driver.poll() is None:
            time.sleep(0.05)
        if not (pidfile.exists() and pidfile.read_text()):
            driver.kill()
            pytest.fail(f"the run process never started (driver exit {driver.wait()}): {driver.stderr.read().decode()}")
        child = int(pidfile.read_text())
        t0 = time.time()
        os.kill(driver.pid, signal.SIGINT)
        driver.wait(20)
        took = time.time() - t0
        assert took < 8, f"Ctrl-C took {took:.1f} s to stop the sweep"
        assert "KeyboardInterrupt" in driver.stderr.read().decode()
        t = time.time()
        while _alive(child) and time.time() - t < 5:
            time.sleep(0.05)
        assert not _alive(child)
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


def test_a_gpu_resume_of_a_cpu_sweep_is_refused_not_mixed(tmp_path):
    """Finished runs at bf16 and a machine that would train fp32 (or the reverse): refused before training."""
    from ff_train_helpers import TinyLM, TokenData, lm_loss

    from flops_fit import pipeline as stages
    from flops_fit.training.local import make_run_fn, run_precision
    from flops_fit.training.trainer import TrainConfig

    exps = [Experiment(f"C1e{k}-d_model{w}", 10.0**k, 0, w, TinyLM(w).num_params(), 512.0, 1e6)
            for k in (9, 10) for w in (4, 8, 12)]
    plan = SweepPlan(budgets=[1e9, 1e10], experiments=exps, size_param="d_model", model_name="TinyLM")
    fn = make_run_fn(model_factory=TinyLM, size_param="d_model", model_kwargs={}, dataset=TokenData(256),
                     loss_fn=lm_loss, train_config=TrainConfig(batch_size=8, val_units=64, progress=False),
                     output_dir=tmp_path, seed=0)
    assert run_precision(fn) == "fp32"  # this CPU machine, dtype="auto"
    store = ResultsStore(tmp_path / "results.json", plan.fingerprint())
    done = P.run_ok(exps[0])
    done.details["dtype"] = "bf16-autocast"  # as if trained on a GPU
    store.add(done)
    with pytest.raises(ValueError, match=r"train_config\.dtype: the finished runs .* were trained at bf16-autocast, "
                                         r"but this machine would train the rest at fp32"):
        stages.train_stage(tmp_path, fn, plan=plan)
    assert len(ResultsStore.read(tmp_path / "results.json")[1]) == 1  # nothing trained


def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno

    from flops_fit import io

    path = tmp_path / "results.json"
    io.atomic_write_json(path, {"old": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"results\.json: could not be written \(No space left on device\); the "
                                      r"previous version is intact") as info:
        io.atomic_write_json(path, {"new": 2})
    assert info.value.errno == errno.ENOSPC  # still classified transient by the driver
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"old": 1} and not list(tmp_path.glob(".*.tmp"))
