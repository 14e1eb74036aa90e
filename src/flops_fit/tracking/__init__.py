"""Experiment tracking: a small callback protocol, and trackers that implement it.

A :class:`Callback` hears about every run of a sweep — ``on_run_start`` (its config: N, D,
budget, size value, train settings), ``on_step`` (training loss, smoothed loss, learning
rate and throughput at each read-back, every ``log_every`` steps; the built-in trainer
only), ``on_run_end`` (its record, or None when it raised) — and about the sweep's
``on_sweep_end`` (the fitted :class:`~flops_fit.Result`). Runs may execute in worker
processes, so a callback is pickled to them: keep its constructor light and open files
or clients on first use. A callback that raises is reported once and then left out;
it never fails a run.

``find_optimal(..., trackers=["tensorboard", "mlflow", "wandb"])`` (or callback objects); the CLI's
``tracking.trackers=[tensorboard,mlflow,wandb]``. Trackers write under ``<output_dir>/tracking/``:
TensorBoard event files, MLflow's local sqlite store (no server, no network), and W&B runs (offline
unless ``WANDB_MODE`` or ``mode=`` says otherwise).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["Callback", "TrackedRun", "make_trackers", "notify"]


class Callback:
    """Override what you need; every hook is optional."""

    def on_run_start(self, experiment: Any, config: dict[str, Any]) -> None:
        """A run begins (in the process that trains it)."""

    def on_step(self, experiment: Any, step: int, metrics: dict[str, float]) -> None:
        """Training metrics at a read-back (every log_every optimizer steps)."""

    def on_run_end(self, experiment: Any, record: Any) -> None:
        """A run ended: its RunRecord (completed, diverged or failed), or None when it raised."""

    def on_sweep_end(self, result: Any) -> None:
        """The sweep is analysed (in the driver): the Result."""


_BROKEN: set[int] = set()


def notify(callbacks: Sequence[Callback], hook: str, *args: Any) -> None:
    """Call `hook` on every callback; one that raises is reported once and skipped from then on."""
    for cb in callbacks:
        if id(cb) in _BROKEN:
            continue
        try:
            getattr(cb, hook)(*args)
        except Exception as exc:  # noqa: BLE001 - tracking never fails a run
            _BROKEN.add(id(cb))
            warnings.warn(f"trackers: {type(cb).__name__}.{hook} raised {type(exc).__name__}: {exc}; "
                          "it is left out for the rest of this process", UserWarning, stacklevel=2)


def run_config(experiment: Any) -> dict[str, Any]:
    return {"experiment_id": experiment.experiment_id, "compute_budget": experiment.compute_budget,
            "size_value": experiment.size_value, "N": experiment.num_params, "D": experiment.num_tokens}


class TrackedRun:
    """Any run function (the trainer, the mock law, a user's train_fn) with its runs announced to callbacks."""

    def __init__(self, run_fn: Callable[[Any], Any], callbacks: Sequence[Callback], settings: dict[str, Any]) -> None:
        self.run_fn, self.callbacks, self.settings = run_fn, tuple(callbacks), settings

    def __call__(self, experiment: Any) -> Any:
        notify(self.callbacks, "on_run_start", experiment, {**run_config(experiment), **self.settings})
        try:
            record = self.run_fn(experiment)
        except BaseException:
            notify(self.callbacks, "on_run_end", experiment, None)
            raise
        notify(self.callbacks, "on_run_end", experiment, record)
        return record

    def __getattr__(self, name: str) -> Any:  # keywords, func, ...: what inspects the wrapped run function
        if name in ("run_fn", "callbacks", "settings"):
            raise AttributeError(name)
        return getattr(self.run_fn, name)


TRACKERS = ("tensorboard", "mlflow", "wandb")


def make_trackers(trackers: Sequence[Any] | None, output_dir: str | Path) -> list[Callback]:
    """Callback objects from names ("tensorboard") or objects of your own (anything with the hooks)."""
    if trackers is None:
        return []
    if isinstance(trackers, (str, Callback)) or not isinstance(trackers, (list, tuple)):
        trackers = [trackers]
    out: list[Callback] = []
    for i, t in enumerate(trackers):
        if isinstance(t, str):
            if t not in TRACKERS:
                raise ValueError(f"trackers[{i}]: expected one of {', '.join(TRACKERS)} or a Callback, found {t!r}")
            if t == "tensorboard":
                from flops_fit.tracking.tensorboard import TensorBoardTracker

                out.append(TensorBoardTracker(Path(output_dir) / "tracking" / "tensorboard"))
            elif t == "mlflow":
                from flops_fit.tracking.mlflow import MlflowTracker

                out.append(MlflowTracker(Path(output_dir) / "tracking" / "mlflow"))
            else:
                from flops_fit.tracking.wandb import WandbTracker

                out.append(WandbTracker(Path(output_dir) / "tracking" / "wandb"))
        elif all(callable(getattr(t, h, None)) for h in ("on_run_start", "on_step", "on_run_end", "on_sweep_end")):
            out.append(t)
        else:
            raise TypeError(f"trackers[{i}]: expected a tracker name or an object with on_run_start, on_step, "
                            f"on_run_end and on_sweep_end (subclass flops_fit.tracking.Callback), found "
                            f"{type(t).__name__}")
    return out
