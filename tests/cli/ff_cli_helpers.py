"""Run the installed ff-* commands as subprocesses, the way a user does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

# small mock sweep: 3 budgets x 5 sizes (the preset itself is 5 x 7)
MOCK_SMALL = ["preset=mock_demo", "compute.num_budgets=3", "planning.num_model_sizes=5", "analysis.n_bootstrap=20"]


def ff(command: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    exe = BIN / f"ff-{command}"
    assert exe.exists(), f"{exe} is not installed (pip install -e . creates the ff-* console scripts)"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one line a failing command prints (asserts it is exactly one, and no traceback)."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert len(lines) == 1, f"expected one error line, found:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return lines[0]


def assert_no_stray_dirs(cwd: Path) -> None:
    stray = [p.name for p in cwd.iterdir() if p.name in ("outputs", ".hydra", "multirun")]
    assert not stray, f"Hydra left {stray} in {cwd}"
    assert not list(cwd.rglob(".hydra")), "a .hydra folder was created"
