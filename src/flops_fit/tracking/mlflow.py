"""MLflow: one run per experiment and a summary run, in a local sqlite store (no server, no network).

The store is ``sqlite:///<output_dir>/tracking/mlflow.db`` with artifacts beside it, so
``mlflow ui --backend-store-uri sqlite:///.../mlflow.db`` shows the sweep. The driver creates
the database and the MLflow experiment before any run, so run processes only add rows
(sqlite serialises concurrent writers). MLflow's usage telemetry is turned off
(``MLFLOW_DISABLE_TELEMETRY=true`` unless you set it), so tracking makes no network call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flops_fit.tracking import Callback


def _client(uri: str) -> Any:
    import os

    # the product makes no network calls at run time: MLflow's usage telemetry is off unless the user set it
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ImportError(f"trackers: 'mlflow' needs the MLflow client (pip install 'flops-fit[mlflow]'): {exc}") \
            from None
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no INFO lines about creating tables
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


class MlflowTracker(Callback):
    """Params N, D, budget, size and settings; metrics loss, smoothed_loss, lr per read-back and val_loss at the end;
    the summary run holds the fitted exponent and the Chinchilla table (an artifact)."""

    def __init__(self, directory: str | Path, experiment_name: str = "flops-fit") -> None:
        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        self.uri = f"sqlite:///{directory / 'mlflow.db'}"
        client = _client(self.uri)  # in the driver: the database and the experiment exist before any run
        found = client.get_experiment_by_name(experiment_name)
        self.experiment_id = found.experiment_id if found is not None else client.create_experiment(
            experiment_name, artifact_location=(directory / "artifacts").as_uri())
        self._client: Any = client
        self._runs: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:  # clients stay in the process that opened them
        return {"uri": self.uri, "experiment_id": self.experiment_id, "_client": None, "_runs": {}}

    def _c(self) -> Any:
        if self._client is None:
            self._client = _client(self.uri)
        return self._client

    def on_run_start(self, experiment: Any, config: dict[str, Any]) -> None:
        run = self._c().create_run(self.experiment_id, run_name=experiment.experiment_id)
        self._runs[experiment.experiment_id] = run.info.run_id
        for key, value in config.items():
            self._c().log_param(run.info.run_id, key, str(value)[:500])

    def on_step(self, experiment: Any, step: int, metrics: dict[str, float]) -> None:
        run_id = self._runs.get(experiment.experiment_id)
        if run_id is not None:
            for key, value in metrics.items():
                self._c().log_metric(run_id, key, float(value), step=step)

    def on_run_end(self, experiment: Any, record: Any) -> None:
        run_id = self._runs.pop(experiment.experiment_id, None)
        if run_id is None:
            return
        ok = record is not None and record.final_loss is not None
        if ok:
            self._c().log_metric(run_id, "val_loss", float(record.final_loss), step=int(record.details.get("steps") or 0))
        if record is not None:
            self._c().set_tag(run_id, "status", record.status)
        self._c().set_terminated(run_id, status="FINISHED" if ok else "FAILED")

    def on_sweep_end(self, result: Any) -> None:
        client = self._c()
        run = client.create_run(self.experiment_id, run_name="summary", tags={"flops_fit.kind": "summary"})
        a = result.predict(max(r.compute_budget for r in result.records))
        if a.get("exponent_a") is not None:
            client.log_metric(run.info.run_id, "exponent_a", float(a["exponent_a"]))
        client.log_text(run.info.run_id, str(result.chinchilla_table()), "chinchilla_table.md")
        client.log_text(run.info.run_id, result.summary(), "summary.txt")
        client.set_terminated(run.info.run_id)
