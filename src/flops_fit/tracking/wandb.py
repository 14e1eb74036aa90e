"""Weights & Biases: one W&B run per experiment (grouped by sweep) and a summary run, through wandb's own client.

Runs are written under ``<output_dir>/tracking/wandb/``. The mode is W&B's: ``mode=`` here, else the
``WANDB_MODE`` environment variable, else ``"offline"`` — so naming the tracker never sends anything
over the network by itself; ``wandb sync <output_dir>/tracking/wandb/wandb/offline-run-*`` uploads
offline runs later, and ``WANDB_MODE=online`` streams them. Console capture and system metrics are
off: a sweep's runs are short, and their logs are the sweep's own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flops_fit.tracking import Callback


def _wandb() -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise ImportError(f"trackers: 'wandb' needs the W&B client (pip install 'flops-fit[wandb]'): {exc}") from None
    return wandb


class WandbTracker(Callback):
    """Config N, D, budget, size and settings; loss, smoothed_loss and lr per read-back; val_loss and status in
    the run's summary. The summary run holds the fitted exponent, the Chinchilla table and the plots."""

    def __init__(self, directory: str | Path, project: str = "flops-fit", mode: str | None = None,
                 group: str | None = None) -> None:
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.project, self.group = project, group
        self.mode = mode or os.environ.get("WANDB_MODE") or "offline"
        _wandb()  # a missing client is refused before anything runs
        self._runs: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:  # live runs stay in the process that opened them
        return {**self.__dict__, "_runs": {}}

    def _init(self, name: str, config: dict[str, Any], job_type: str) -> Any:
        wandb = _wandb()
        settings = wandb.Settings(console="off", x_disable_stats=True, silent=True)
        return wandb.init(project=self.project, name=name, group=self.group, job_type=job_type,
                          dir=str(self.directory), mode=self.mode, config=config, reinit="create_new",
                          settings=settings)

    def on_run_start(self, experiment: Any, config: dict[str, Any]) -> None:
        self._runs[experiment.experiment_id] = self._init(experiment.experiment_id, config, "run")

    def on_step(self, experiment: Any, step: int, metrics: dict[str, float]) -> None:
        run = self._runs.get(experiment.experiment_id)
        if run is not None:
            run.log({k: float(v) for k, v in metrics.items()}, step=int(step))

    def on_run_end(self, experiment: Any, record: Any) -> None:
        run = self._runs.pop(experiment.experiment_id, None)
        if run is None:
            return
        ok = record is not None and record.final_loss is not None
        if ok:
            run.summary["val_loss"] = float(record.final_loss)
        run.summary["status"] = record.status if record is not None else "raised"
        run.finish(exit_code=0 if ok else 1)

    def on_sweep_end(self, result: Any) -> None:
        wandb = _wandb()
        run = self._init("summary", {"kind": "summary"}, "summary")
        try:
            a = result.predict(max(r.compute_budget for r in result.records))
            if a.get("exponent_a") is not None:
                run.summary["exponent_a"] = float(a["exponent_a"])
            df = result.chinchilla_dataframe()
            run.log({"chinchilla_table": wandb.Table(dataframe=df.astype({c: str for c in df.columns
                                                                            if df[c].dtype == object}))})
            plots = Path(result.output_dir or ".") / "plots"
            images = {p.stem: wandb.Image(str(p)) for p in sorted(plots.glob("*.png"))} if plots.is_dir() else {}
            if images:
                run.log(images)
        finally:
            run.finish()
