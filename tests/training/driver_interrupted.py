"""A driver (pipeline.train_stage, process executor) whose one run sleeps 60 s: python driver_interrupted.py OUT.

Writes OUT/child.pid once the run process has started; the test then sends SIGINT (Ctrl-C) to this driver.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from flops_fit import pipeline as stages
from flops_fit.planning import Experiment, SweepPlan


def slow_run(exp):
    Path(os.environ["FF_TEST_OUT"], "child.pid").write_text(str(os.getpid()))
    time.sleep(60)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    os.environ["FF_TEST_OUT"] = str(out)
    exps = [Experiment(f"C1e{k}-w{w}", 10.0**k, 0, w, 10 * w, 1e3, 6e4) for k in (18, 19) for w in (1, 2, 3)]
    plan = SweepPlan(budgets=[1e18, 1e19], experiments=exps, size_param="w", model_name="m")
    stages.train_stage(out, slow_run, plan=plan, executor="process", progress=False)
