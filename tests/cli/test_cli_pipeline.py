"""The commands end to end, as subprocesses in a fresh directory (~60 s on 2 shared cores)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ff_cli_helpers import MOCK_SMALL, assert_no_stray_dirs, error_line, ff
from flops_fit import MockLaw

PLOTS = ("isoflops_curves.png", "scaling_laws.png", "tokens_per_param.png")


def _ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def test_stages_one_by_one_with_a_job_array_task(tmp_path):
    args = [*MOCK_SMALL, "output_dir=study"]
    _ok(ff("plan", *args, cwd=tmp_path))
    out = tmp_path / "study"
    plan = json.loads((out / "sweep.json").read_text())
    # the overrides changed the plan: 3 budgets on the preset's 1e17..1e21 grid, at most 5 sizes each
    assert plan["budgets"] == pytest.approx(list(np.geomspace(1e17, 1e21, 3)))
    assert plan["settings"]["num_model_sizes"] == 5
    runnable = [e for e in plan["experiments"] if not e["flagged"]]
    assert 10 <= len(runnable) <= 15

    # one job-array task: trains experiment 0 only, writes its own record file, not results.json
    first = runnable[0]["experiment_id"]
    _ok(ff("train", *args, "experiment_id=0", cwd=tmp_path))
    record_file = out / "records" / f"{first}.json"
    assert record_file.exists() and not (out / "results.json").exists()
    task_record = json.loads(record_file.read_text())["record"]

    # the driver merges the task's record and trains the rest; nothing is trained twice
    proc = _ok(ff("train", *args, cwd=tmp_path))
    assert f"trained {len(runnable) - 1} run(s)" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["plan_fingerprint"] == plan["fingerprint"]
    by_id = {r["experiment_id"]: r for r in results["records"]}
    assert set(by_id) == {e["experiment_id"] for e in runnable}
    assert by_id[first] == task_record
    assert all(r["status"] == "completed" for r in by_id.values())

    _ok(ff("analyze", *args, cwd=tmp_path))
    fits = json.loads((out / "analysis" / "scaling_laws.json").read_text())
    assert fits["kind"] == "flops-fit/scaling-laws"
    assert fits["n_opt_fit"]["exponent_a"] == pytest.approx(MockLaw().a, abs=0.05)
    # analysis.* overrides reach the analysis, and the report says which approach predicts
    assert fits["analysis_options"]["n_bootstrap"] == 20
    assert fits["predict_with"] == "approach_3" and fits["approach_3"]["a"] == pytest.approx(MockLaw().a, abs=0.03)
    assert fits["approach_3_bootstrap"]["n_resamples"] == 20
    # forecast.*: how much more would pin N_opt at a far compute, after the table (ff.precision_forecast)
    proc = _ok(ff("analyze", *args, "forecast.compute=1e24", "forecast.max_ratio=2", cwd=tmp_path))
    assert "N_opt at C=1e+24: its interval spans ×" in proc.stdout and "\ntarget ×2: " in proc.stdout
    assert "  +1 budget(s) up to C=" in proc.stdout and "or twice the runs at every budget trained" in proc.stdout

    proc = _ok(ff("visualize", *args, cwd=tmp_path))
    for name in PLOTS:
        png = out / "plots" / name
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
        assert str(png.relative_to(tmp_path)) in proc.stdout
    assert_no_stray_dirs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study"]


def test_run_preset_mock_demo_does_everything_in_one_call(tmp_path):
    proc = _ok(ff("run", "preset=mock_demo", cwd=tmp_path))
    out = tmp_path / "runs" / "mock-demo"  # the preset's output_dir, relative to the cwd
    plan = json.loads((out / "sweep.json").read_text())
    assert len(plan["budgets"]) == 5 and plan["settings"]["num_model_sizes"] == 7
    assert plan["run_settings"]["mode"] == "mock"
    results = json.loads((out / "results.json").read_text())
    assert len(results["records"]) == sum(not e["flagged"] for e in plan["experiments"])
    fits = json.loads((out / "analysis" / "scaling_laws.json").read_text())
    assert fits["n_opt_fit"]["exponent_a"] == pytest.approx(MockLaw().a, abs=0.03)
    assert "| compute (FLOPs) |" in proc.stdout
    assert all((out / "plots" / n).exists() for n in PLOTS)
    assert_no_stray_dirs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


PLUGIN = [
    "output_dir=real",
    "model=custom",
    "model._target_=plugin_models.TinyLM",
    "model.size_param=width",
    "data=custom",
    "data._target_=plugin_models.SequenceData",
    "loss._target_=plugin_models.lm_loss",
    "compute.budgets=[2e7,6e7]",
    "planning.num_model_sizes=3",
    "planning.span_decades=0.3",
    "planning.size_min=4",
    "training.batch_size=8",
    "training.device=cpu",
    "training.num_threads=1",
]


def test_target_plugin_model_trains_a_tiny_real_sweep(tmp_path):
    _ok(ff("plan", *PLUGIN, cwd=tmp_path))
    out = tmp_path / "real"
    plan = json.loads((out / "sweep.json").read_text())
    assert plan["model_name"] == "plugin_models.TinyLM" and plan["size_param"] == "width"
    assert plan["run_settings"]["train_config"]["batch_size"] == 8
    assert plan["run_settings"]["loss"] == "plugin_models.lm_loss"

    # the training section is part of the plan: a different one is refused, naming the field
    line = error_line(ff("train", *PLUGIN, "training.lr=0.01", cwd=tmp_path))
    assert "run_settings.train_config.lr" in line and "0.003" in line and "0.01" in line
    assert not (out / "results.json").exists()

    _ok(ff("train", *PLUGIN, cwd=tmp_path))
    records = json.loads((out / "results.json").read_text())["records"]
    assert len(records) == len(plan["experiments"]) == 6
    for r in records:
        assert r["status"] == "completed" and r["units"] == "tokens"
        assert math.isfinite(r["final_loss"])
        assert r["final_loss"] < r["details"]["initial_loss"]  # it learned something
        assert r["details"]["units_trained"] >= r["num_tokens"]  # the token budget was reached
    assert not (out / "checkpoints").exists()  # cleaned up once results.json holds the records
    assert_no_stray_dirs(tmp_path)


def test_ff_analyze_and_visualize_a_table_of_runs(tmp_path):
    """Runs the user already has (Llama 3's published points): same evidence as the library's ff.analyze."""
    import flops_fit as ff_lib

    raw = ff_lib.load_llama3().rename(columns={"D": "tokens", "loss": "val_loss"}).drop(columns=["N"])
    raw.to_csv(tmp_path / "runs.csv", index=False)
    args = ["table=runs.csv", "output_dir=fit", "analysis.n_bootstrap=30", "analysis.d_col=tokens",
            "analysis.c_col=compute_budget", "analysis.loss_col=val_loss"]
    proc = _ok(ff("analyze", *args, cwd=tmp_path))
    assert proc.stdout.startswith("DISAGREE: ")
    saved = json.loads((tmp_path / "fit" / "analysis" / "scaling_laws.json").read_text())
    assert saved["predict_with"] == "approach_2"
    lib = ff_lib.analyze(tmp_path / "runs.csv", d_col="tokens", c_col="compute_budget", loss_col="val_loss",
                         n_bootstrap=30)
    assert saved["table"][0]["N_opt"] == pytest.approx(lib.chinchilla_dataframe()["N_opt"].iloc[0], rel=1e-12)
    _ok(ff("visualize", *args, cwd=tmp_path))
    assert all((tmp_path / "fit" / "plots" / p).stat().st_size > 10_000 for p in PLOTS)
    bad = ff("analyze", *args[:-1], "analysis.loss_col=nope", cwd=tmp_path)
    assert bad.returncode != 0 and "loss_col='nope': column not found" in bad.stderr
    bad = ff("analyze", "table=runs.csv", "output_dir=fit", cwd=tmp_path)
    assert bad.returncode != 0 and "any two of N, D, C are needed" in bad.stderr
