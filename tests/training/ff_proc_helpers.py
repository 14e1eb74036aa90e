"""Run functions for the process-executor tests; no torch import, so spawned children start fast."""

from __future__ import annotations

import os
import signal


def run_ok(exp):
    from flops_fit.training.mock import MockLaw, mock_run

    return mock_run(exp, MockLaw(), seed=0)


def run_by_size(exp):
    """Raises for size w1, hard-exits (os._exit) for w2, succeeds otherwise."""
    if exp.experiment_id.endswith("-w1"):
        raise ValueError(f"boom in {exp.experiment_id}")
    if exp.experiment_id.endswith("-w2"):
        os._exit(3)
    return run_ok(exp)


def add(a, b):
    return a + b


def self_kill():
    os.kill(os.getpid(), signal.SIGKILL)


class FailOnce:
    """A run function that fails in a given way the first time it meets each listed experiment, then runs
    the mock law: the transient-fault test. Markers under `folder` remember what has failed already."""

    def __init__(self, folder: str, faults: dict) -> None:
        self.folder, self.faults = folder, faults

    def __call__(self, exp):
        import errno

        kind = self.faults.get(exp.experiment_id)
        marker = os.path.join(self.folder, f"failed-{exp.experiment_id}")
        if kind and not os.path.exists(marker):
            open(marker, "w").close()
            if kind == "oom":
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            if kind == "enospc":
                raise OSError(errno.ENOSPC, "No space left on device", "checkpoints/state.pt")
            if kind == "signal":
                os.kill(os.getpid(), signal.SIGKILL)
            if kind == "bug":
                raise ValueError("a bug in the user's code")
        return run_ok(exp)


def pid_of_worker(_exp=None):
    return os.getpid()


class CountsUnpickling:
    """A run function that records, in `folder`, each time it is unpickled (once per worker, not per run)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __setstate__(self, state):
        self.__dict__.update(state)
        open(os.path.join(self.folder, f"unpickled-{os.getpid()}-{time_ns()}"), "w").close()

    def __call__(self, exp):
        return run_ok(exp)


def time_ns():
    import time

    return time.time_ns()


def kill_script_when(script, out, ready, what: str, timeout: float = 120.0) -> None:
    """Start `python script out`, SIGKILL it once `ready()` is true (it must not finish first), and wait."""
    import subprocess
    import sys
    import time

    import pytest

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"the sweep ended before it could be killed: {proc.stdout.read().decode()[-2000:]}")
            if time.time() > deadline:
                pytest.fail(f"{what} did not happen within {timeout:.0f} s")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
