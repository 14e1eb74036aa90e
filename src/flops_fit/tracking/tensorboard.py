"""TensorBoard: one event-file run per experiment (<dir>/<experiment_id>/) and a summary run (<dir>/summary/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flops_fit.tracking import Callback


class TensorBoardTracker(Callback):
    """Scalars train/loss, train/smoothed_loss, train/lr, train/units_per_s per read-back; val/loss and the run's
    config (as text) at its end; the sweep's exponent and Chinchilla table in the summary run."""

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self._writers: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:  # writers stay in the process that opened them
        return {"log_dir": self.log_dir, "_writers": {}}

    def _writer(self, name: str) -> Any:
        if name not in self._writers:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError(f"trackers: 'tensorboard' needs the tensorboard package (pip install "
                                  f"'flops-fit[tensorboard]'): {exc}") from None
            self._writers[name] = SummaryWriter(log_dir=str(self.log_dir / name))
        return self._writers[name]

    def on_run_start(self, experiment: Any, config: dict[str, Any]) -> None:
        w = self._writer(experiment.experiment_id)
        w.add_text("config", "\n".join(f"    {k}: {v}" for k, v in config.items()), 0)

    def on_step(self, experiment: Any, step: int, metrics: dict[str, float]) -> None:
        w = self._writer(experiment.experiment_id)
        for key, value in metrics.items():
            w.add_scalar(f"train/{key}", value, step)

    def on_run_end(self, experiment: Any, record: Any) -> None:
        w = self._writer(experiment.experiment_id)
        if record is not None:
            step = int(record.details.get("steps") or 0)
            if record.final_loss is not None:
                w.add_scalar("val/loss", record.final_loss, step)
            w.add_text("status", f"{record.status}" + (f": {record.error}" if record.error else ""), step)
        w.close()
        self._writers.pop(experiment.experiment_id, None)

    def on_sweep_end(self, result: Any) -> None:
        w = self._writer("summary")
        a = result.predict(max(r.compute_budget for r in result.records))
        if a.get("exponent_a") is not None:
            w.add_scalar("fit/exponent_a", float(a["exponent_a"]), 0)
        w.add_text("chinchilla_table", str(result.chinchilla_table()), 0)
        w.add_text("summary", result.summary(), 0)
        w.close()
        self._writers.pop("summary", None)
