"""A driver whose ProcessExecutor child sleeps: python driver_with_sleeper.py PIDFILE. Writes the child's pid."""

from __future__ import annotations

import sys
import time

from flops_fit.training.executors import ProcessExecutor

if __name__ == "__main__":
    ex = ProcessExecutor()
    ex.submit(time.sleep, 60)
    while not ex._procs:
        time.sleep(0.01)
    time.sleep(0.5)  # the child is past its start-up (and has armed its parent-death signal)
    with open(sys.argv[1], "w") as fh:
        fh.write(str(next(iter(ex._procs)).pid))
    time.sleep(60)
