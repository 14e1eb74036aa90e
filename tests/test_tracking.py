"""Experiment tracking: the callback protocol, and TensorBoard event files, MLflow's sqlite store and W&B offline
runs read back (with their own readers), from a real sweep whose runs train in worker processes."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest

import flops_fit as ff
from flops_fit.tracking import Callback

sys.path.insert(0, str(Path(__file__).parent / "cli"))
sys.path.insert(0, str(Path(__file__).parent))
import plugin_models  # noqa: E402

REAL = dict(dataset=plugin_models.SequenceData(), loss_fn=plugin_models.lm_loss, compute_budgets=[3e7, 1e8],
            size_min=4, size_max=128, num_model_sizes=5, n_bootstrap=20, progress=False,
            train_config={"batch_size": 8, "log_every": 2, "device": "cpu"})


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_a_real_sweep_writes_one_tracked_run_per_experiment_and_a_summary(tmp_path):
    """TensorBoard event files and MLflow's sqlite store, read back with their own readers: one run per
    experiment whose final loss is results.json's, and a summary run holding the fitted exponent."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ff.find_optimal(plugin_models.TinyLM, "width", **REAL, workers=2,
                                 trackers=["tensorboard", "mlflow", "wandb"], output_dir=tmp_path)
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    board = tmp_path / "tracking" / "tensorboard"
    assert sorted(p.name for p in board.iterdir()) == sorted([r["experiment_id"] for r in records] + ["summary"])
    for r in records:
        s = _scalars(board / r["experiment_id"])
        assert s["val/loss"] == [(r["details"]["steps"], pytest.approx(r["final_loss"], rel=1e-6))]
        steps = [step for step, _ in s["train/loss"]]
        assert steps == sorted(steps) and steps[-1] == r["details"]["steps"] and len(steps) >= 2
        assert all(v > 0 for _, v in s["train/lr"])
    a = result.predict(max(r["compute_budget"] for r in records))["exponent_a"]
    assert _scalars(board / "summary")["fit/exponent_a"] == [(0, pytest.approx(a, rel=1e-6))]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'tracking' / 'mlflow' / 'mlflow.db'}")
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("flops-fit").experiment_id])}
    assert sorted(runs) == sorted([r["experiment_id"] for r in records] + ["summary"])
    for r in records:
        run = runs[r["experiment_id"]]
        assert run.data.metrics["val_loss"] == pytest.approx(r["final_loss"], rel=1e-9)
        assert run.data.params["N"] == str(r["num_params"]) and run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "loss")) >= 2
    assert runs["summary"].data.metrics["exponent_a"] == pytest.approx(a, rel=1e-9)

    from wandb_offline import read_run  # W&B's offline run files, read back with its own protobuf classes

    wb = {x["name"]: x for x in map(read_run, (tmp_path / "tracking" / "wandb" / "wandb").glob("offline-run-*"))}
    assert sorted(wb) == sorted([r["experiment_id"] for r in records] + ["summary"])
    for r in records:
        run = wb[r["experiment_id"]]
        assert run["summary"]["val_loss"] == pytest.approx(r["final_loss"], rel=1e-9) and run["exit_code"] == 0
        assert run["config"]["N"] == r["num_params"] and run["summary"]["status"] == "completed"
        steps = [h["_step"] for h in run["history"] if "loss" in h]
        assert len(steps) >= 2 and steps == sorted(steps) and steps[-1] == r["details"]["steps"]
    assert wb["summary"]["summary"]["exponent_a"] == pytest.approx(a, rel=1e-9)
    assert wb["summary"]["summary"]["chinchilla_table/nrows"] == len(result.chinchilla_dataframe())


class _Events(Callback):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_run_start(self, experiment, config):
        self.events.append(("start", experiment.experiment_id, config["N"], config["D"]))

    def on_run_end(self, experiment, record):
        self.events.append(("end", experiment.experiment_id, record.final_loss))

    def on_sweep_end(self, result):
        self.events.append(("sweep", len(result.records)))


class _Broken(Callback):
    def on_run_start(self, experiment, config):
        raise RuntimeError("tracker down")


def test_callbacks_hear_every_run_and_a_broken_one_never_fails_the_sweep(tmp_path):
    events = _Events()
    with pytest.warns(UserWarning, match=r"trackers: _Broken.on_run_start raised RuntimeError: tracker down"):
        res = ff.find_optimal("gpt", compute_budgets=[1e16, 1e17], mode="mock", num_model_sizes=4, n_bootstrap=10,
                              progress=False, output_dir=tmp_path, trackers=[_Broken(), events])
    starts = [e for e in events.events if e[0] == "start"]
    ends = {e[1]: e[2] for e in events.events if e[0] == "end"}
    assert len(starts) == len(res.records) == len(ends) and events.events[-1] == ("sweep", len(res.records))
    assert ends == {r.experiment_id: r.final_loss for r in res.records}


def test_bad_trackers_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match=r"trackers\[0\]: expected one of tensorboard, mlflow, wandb or a Callback, found 'tb'"):
        ff.find_optimal("gpt", compute_budgets=[1e16, 1e17], mode="mock", output_dir=tmp_path / "a", trackers=["tb"])
    with pytest.raises(TypeError, match=r"trackers\[0\]: expected a tracker name or an object with on_run_start"):
        ff.find_optimal("gpt", compute_budgets=[1e16, 1e17], mode="mock", output_dir=tmp_path / "b", trackers=[1])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_cli_tracks_with_tensorboard(tmp_path, monkeypatch):
    from flops_fit.cli import main as cli_main

    monkeypatch.chdir(tmp_path)
    args = ["preset=mock_demo", "compute.budgets=[1e18,1e19]", "planning.num_model_sizes=4", "analysis.n_bootstrap=10",
            "tracking.trackers=[tensorboard]", "output_dir=o"]
    assert cli_main.main("run", args) == 0
    names = {p.name for p in (tmp_path / "o" / "tracking" / "tensorboard").iterdir()}
    assert "summary" in names and len(names) == len(json.loads((tmp_path / "o" / "results.json").read_text())["records"]) + 1
    assert cli_main.main("plan", ["preset=mock_demo", "tracking.trackers=[tb]", "output_dir=p"]) == 2


def test_mlflow_tracking_makes_no_network_call_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    from flops_fit.tracking.mlflow import MlflowTracker

    MlflowTracker(tmp_path / "m")
    import os

    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    from mlflow.telemetry.utils import is_telemetry_disabled

    assert is_telemetry_disabled()
