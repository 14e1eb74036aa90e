"""The process executor survives crashing runs; a SIGKILLed sweep resumes without redoing or losing runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ff_proc_helpers as P
from flops_fit.planning import Experiment, SweepPlan
from flops_fit.training.executors import ProcessExecutor, get_executor
from flops_fit.training.store import ResultsStore
from flops_fit.training.sweep import run_sweep

HERE = Path(__file__).parent


def _plan(ids):
    exps = [Experiment(i, 1e18, 0, k + 1, 10**6 * (k + 1), 1e12 / (k + 1), 1e6) for k, i in enumerate(ids)]
    return SweepPlan(budgets=[1e18], experiments=exps, size_param="w", model_name="m")


def test_process_executor_survives_raise_and_hard_exit(tmp_path):
    plan = _plan(["C1e18-w1", "C1e18-w2", "C1e18-w3"])
    store = ResultsStore(tmp_path / "results.json", plan.fingerprint())
    ex = get_executor("process")
    assert isinstance(ex, ProcessExecutor)
    recs = {r.experiment_id: r for r in run_sweep(plan, P.run_by_size, store, executor=ex, progress=False)}
    ex.shutdown()
    assert recs["C1e18-w1"].status == "failed" and "ValueError: boom in C1e18-w1" in recs["C1e18-w1"].error
    assert recs["C1e18-w2"].status == "failed" and "exited with code 3" in recs["C1e18-w2"].error
    assert recs["C1e18-w3"].status == "completed" and recs["C1e18-w3"].final_loss > 0
    assert len(ResultsStore.read(tmp_path / "results.json")[1]) == 3


def test_process_executor_reports_signal():
    ex = ProcessExecutor()
    assert ex.submit(P.add, 2, b=3).result(timeout=60) == 5
    with pytest.raises(RuntimeError, match=r"killed by signal SIGKILL \(out of memory\?\)"):
        ex.submit(P.self_kill).result(timeout=60)
    with pytest.raises(ValueError, match=r"capacity: expected a positive integer, found 0"):
        ProcessExecutor(capacity=0)


def test_sigkill_mid_run_resumes(tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    cmd = [sys.executable, str(HERE / "sweep_script_for_kill.py"), str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # a complete checkpoint: state.pt is written first, then its gate state.json (a kill between them is a
    # checkpoint set aside, and the run restarts at step 0, as it should); wait for the gate
    results, second = out / "results.json", out / "checkpoints" / "C1e9-d8" / "state.json"
    journal = out / "results.journal.jsonl"  # a record lands there first (one appended line)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:  # kill once run 1 is stored and run 2 has a checkpoint
            if journal.exists() and second.exists():
                break
            if proc.poll() is not None:
                pytest.fail(f"sweep ended before it could be killed: {proc.stdout.read().decode()[-2000:]}")
            time.sleep(0.05)
        else:
            pytest.fail("no checkpoint appeared")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not results.exists()  # killed before compaction: the journal alone holds the finished run
    first = {r.experiment_id: r.to_dict() for r in ResultsStore.read(results)[1]}
    assert list(first) == ["C1e9-d4"]
    starts_before = (out / "starts.log").read_text().split("\n")

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    starts_after = (out / "starts.log").read_text().split("\n")[len(starts_before) - 1:]
    assert "start C1e9-d4" not in starts_after  # the finished run was not redone
    final = json.loads(results.read_text())["records"]
    assert not journal.exists()  # compacted into results.json at the end
    ids = [r["experiment_id"] for r in final]
    assert sorted(ids) == ["C1e9-d12", "C1e9-d4", "C1e9-d8"]  # each exactly once
    by_id = {r["experiment_id"]: r for r in final}
    assert by_id["C1e9-d4"] == first["C1e9-d4"]  # untouched
    assert by_id["C1e9-d8"]["details"]["resumed_from_step"] > 0  # resumed from its checkpoint
    assert by_id["C1e9-d12"]["details"]["resumed_from_step"] == 0
    assert all(r["status"] == "completed" for r in final)
    assert all(r["details"]["steps"] == 150 for r in final)
