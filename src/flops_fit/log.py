"""The ``flops_fit`` logger: progress lines of a sweep and of long runs, routed like any Python logging.

Records go to ``logging.getLogger("flops_fit.progress")``. If nothing anywhere handles them (no handler on
``flops_fit`` or the root logger), one handler printing the bare message to stderr is added, so a sweep
under nohup or SLURM logs without any set-up; configure logging yourself (``logging.basicConfig(...)``, a
file handler on ``flops_fit``) and the lines go where you route them instead.
"""

from __future__ import annotations

import logging

NAME = "flops_fit"


def progress_logger() -> logging.Logger:
    root = logging.getLogger(NAME)
    if not root.hasHandlers():
        handler = logging.StreamHandler()  # stderr, bound now: what a log file under nohup or SLURM receives
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        if root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
    return logging.getLogger(f"{NAME}.progress")
