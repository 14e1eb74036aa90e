"""Every example in examples/ (but the demo, a slow test of its own) runs as its docstring says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(name: str, tmp_path: Path, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), "--output-dir", str(tmp_path / "out"), *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_every_example_has_a_test():
    tested = {"demo.py", "tracking.py", "hugging_face.py", "experiment_config.py", "hf_trainer.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_tracking_example_writes_both_trackers_and_calls_the_users_own(tmp_path):
    out = _run("tracking.py", tmp_path)
    runs = [p for p in (tmp_path / "out" / "tracking" / "tensorboard").iterdir() if p.name != "summary"]
    assert out.count("ended C") == len(runs) >= 15  # the user's tracker heard every run TensorBoard wrote
    assert (tmp_path / "out" / "tracking" / "mlflow" / "mlflow.db").stat().st_size > 0
    assert "| compute (FLOPs) |" in out


def test_hugging_face_example_learns_the_cycle(tmp_path):
    pytest.importorskip("datasets")
    out = _run("hugging_face.py", tmp_path)
    best = float(out.rsplit("best loss ", 1)[1].split()[0])
    assert best < 1.0  # far below ln 16: the cycle is learnt


def test_hf_trainer_example_sweeps_with_the_users_own_trainer(tmp_path):
    pytest.importorskip("accelerate")
    out = _run("hf_trainer.py", tmp_path)
    runs, best = out.rsplit("runs ", 1)[1].split(", best loss ")
    assert int(runs) >= 6 and float(best.split()[0]) < 1.0  # the Trainer learnt the cycle (ln 16 = 2.77 at chance)
    import json

    sweep = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert sweep["run_settings"]["train_fn"].endswith("train_with_hf_trainer")


def test_experiment_config_example_trains_one_model_and_plans_its_sweep(tmp_path):
    out = _run("experiment_config.py", tmp_path, "--tokens", "8000")
    assert "tiny_lstm: completed" in out and "perplexity" in out
    assert (tmp_path / "out" / "model" / "run.json").exists() and (tmp_path / "out" / "sweep" / "sweep.json").exists()
