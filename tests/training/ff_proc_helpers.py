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
