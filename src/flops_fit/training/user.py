"""Your own training loop: ``find_optimal(..., train_fn=my_train)``.

``my_train(model, experiment, context) -> float | dict`` gets the model built at the
planned size, the experiment (its exact budget ``experiment.num_tokens`` in data units,
``experiment.num_params``, ``experiment.compute_budget``) and a :class:`RunContext`
(seed, dataset, loss, device, a checkpoint directory of its own, a logger). It returns
the final validation loss, or a dict with ``"loss"`` and optionally ``"status"``
(``"completed"`` or ``"diverged"``), ``"flops"`` (measured FLOPs, recorded beside 6·N·D)
and ``"details"`` (JSON-able facts kept in the record). Everything else stays the
library's: the plan, resume (a finished run is never called again), executors and the
analysis. An exception is the run's failure, classified like the built-in trainer's.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from flops_fit import io
from flops_fit.flops import FLOPS_6ND, FLOPS_MEASURED, six_nd
from flops_fit.training.store import STATUS_COMPLETED, STATUS_DIVERGED, RunRecord

TrainFn = Callable[[Any, Any, "RunContext"], Any]


@dataclass
class RunContext:
    """What a user training function gets besides the model and the experiment."""

    seed: int  # seed of this run (the sweep's seed; torch is seeded with it before the model is built)
    dataset: Any  # the training data given to find_optimal
    val_dataset: Any  # its validation data, or None (then hold some out yourself, the same for every run)
    loss_fn: Any  # the loss given to find_optimal, or None
    device: str  # "cuda" when available, else "cpu"
    checkpoint_dir: Path  # checkpoints/<experiment_id>/ inside the output directory, created
    logger: logging.Logger  # "flops_fit.run.<experiment_id>"
    units: str = "tokens"  # what experiment.num_tokens counts


class UserTrainRun:
    """Picklable ``run(experiment) -> RunRecord`` around a user's training function."""

    def __init__(self, *, train_fn: TrainFn, model_factory: Callable[..., Any], size_param: str,
                 model_kwargs: dict[str, Any], dataset: Any, val_dataset: Any, loss_fn: Any,
                 output_dir: str | Path, seed: int, flops_accounting: str = FLOPS_6ND,
                 units: str = "tokens") -> None:
        if not callable(train_fn):
            raise TypeError(f"train_fn: expected a function (model, experiment, context) -> loss, found "
                            f"{type(train_fn).__name__}")
        self.train_fn, self.model_factory, self.size_param = train_fn, model_factory, size_param
        self.model_kwargs, self.dataset, self.val_dataset, self.loss_fn = dict(model_kwargs), dataset, val_dataset, loss_fn
        self.output_dir, self.seed, self.flops_accounting, self.units = Path(output_dir), int(seed), flops_accounting, units

    def __call__(self, exp: Any) -> RunRecord:
        import torch

        torch.manual_seed(self.seed)
        model = self.model_factory(**{**self.model_kwargs, self.size_param: exp.size_value})
        folder = io.inside(self.output_dir, "checkpoints", io.check_id(exp.experiment_id, "experiment_id"))
        folder.mkdir(parents=True, exist_ok=True)
        ctx = RunContext(
            seed=self.seed, dataset=self.dataset, val_dataset=self.val_dataset, loss_fn=self.loss_fn,
            device="cuda" if torch.cuda.is_available() else "cpu", checkpoint_dir=folder,
            logger=logging.getLogger(f"flops_fit.run.{exp.experiment_id}"), units=self.units,
        )
        t0 = time.perf_counter()
        out = self.train_fn(model, exp, ctx)
        wall = time.perf_counter() - t0
        return self._record(exp, out, wall)

    def _record(self, exp: Any, out: Any, wall: float) -> RunRecord:
        where = f"train_fn for {exp.experiment_id}"
        details: dict[str, Any] = {"engine": "train_fn", "seed": self.seed}
        measured = None
        status = STATUS_COMPLETED
        if isinstance(out, dict):
            unknown = sorted(set(out) - {"loss", "status", "flops", "details"})
            if unknown:
                raise ValueError(f"{where}: returned unknown key {unknown[0]!r}; expected loss, status, flops, details")
            if "loss" not in out:
                raise ValueError(f"{where}: returned a dict without 'loss'")
            status = out.get("status", STATUS_COMPLETED)
            if status not in (STATUS_COMPLETED, STATUS_DIVERGED):
                raise ValueError(f"{where}: 'status': expected 'completed' or 'diverged', found {status!r}")
            measured = out.get("flops")
            if measured is not None and (isinstance(measured, bool) or not isinstance(measured, (int, float))
                                         or not measured > 0):
                raise ValueError(f"{where}: 'flops': expected a positive number, found {measured!r}")
            extra = out.get("details") or {}
            if not isinstance(extra, dict):
                raise ValueError(f"{where}: 'details': expected a dict, found {type(extra).__name__}")
            details.update(extra)
            loss = out["loss"]
        else:
            loss = out
        if hasattr(loss, "item"):  # a 0-d tensor or numpy scalar
            loss = loss.item()
        if isinstance(loss, bool) or not isinstance(loss, (int, float)):
            raise TypeError(f"{where}: expected the final validation loss (a number) or a dict with 'loss', found "
                            f"{type(loss).__name__}")
        loss = float(loss)
        if status == STATUS_COMPLETED and not (math.isfinite(loss) and loss > 0):
            status = STATUS_DIVERGED  # a non-finite or non-positive loss is not a result to fit
            details["stop_reason"] = f"train_fn returned loss {loss!r}"
        flops_6nd = six_nd(exp.num_params, exp.num_tokens)
        details["flops_6nd"], details["flops_measured"] = flops_6nd, measured
        use_measured = self.flops_accounting == FLOPS_MEASURED and measured is not None
        return RunRecord.of(
            exp, final_loss=loss if status == STATUS_COMPLETED else None, status=status,
            flops=float(measured if use_measured else flops_6nd),
            flops_method=FLOPS_MEASURED if use_measured else FLOPS_6ND, units=self.units,
            wall_time_s=wall, details=details,
        )
