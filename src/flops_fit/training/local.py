"""The real engine's entry points: the data/loss contract check and the run-function factory.

``make_run_fn(...)`` returns ``run(experiment) -> RunRecord`` for the sweep
driver. It is a ``functools.partial`` of the module-level
:func:`~flops_fit.training.trainer.train_run` over a :class:`RunInputs`
holding the dataset *by value*, so it pickles: the ``process`` executor (and
Ray / submitit later) ship it to another process unchanged, as long as the
model factory, dataset and loss are picklable themselves (module-level
classes and functions, not lambdas).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from flops_fit.flops import FLOPS_6ND, FLOPS_MEASURED
from flops_fit.training.datautil import (
    UNITS_SAMPLES,
    UNITS_TOKENS,
    DataInfo,
    DataSource,
    batch_format,
    call_model,
    check_repeat,
    describe_batch,
    is_sequence_batch,
    model_input,
    split_validation,
    units_per_item,
)
from flops_fit.training.trainer import (
    RunInputs,
    TrainConfig,
    resolve_loss_signature,
    train_run,
)

DEFAULT_VAL_SAMPLES = 256
_PROBE_SAMPLES = 64  # samples read to estimate tokens per sample when a mask is present


def _factory_name(model_factory: Any) -> str:
    return getattr(model_factory, "__qualname__", None) or type(model_factory).__name__


def _probe_batch(source: DataSource, k: int) -> Any:
    samples = source.first_samples(k)
    if not samples:
        kind = "map-style dataset of length 0" if source.kind == "map" else "iterable that yields nothing"
        raise ValueError(f"{source.name}: expected at least one sample, found an empty dataset ({kind})")
    try:
        return source.collate(samples)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(
            f"{source.name}: could not collate {len(samples)} samples into a batch "
            f"({type(exc).__name__}: {exc}); samples must have equal shapes or the DataLoader a collate_fn"
        ) from None


def infer_data_info(
    source: DataSource, units_per_sample: int | None = None, loss_signature: str = "auto"
) -> DataInfo:
    """What D counts and how much data there is, from a probe batch (no model needed)."""
    batch = _probe_batch(source, _PROBE_SAMPLES)
    fmt = batch_format(batch)
    seq = is_sequence_batch(batch)
    has_mask = isinstance(batch, dict) and "attention_mask" in batch
    seq_len = None
    x = model_input(batch)
    if seq and isinstance(x, torch.Tensor) and x.dim() >= 2:
        seq_len = int(x.shape[1])
    if units_per_sample is not None:
        if isinstance(units_per_sample, bool) or not isinstance(units_per_sample, int) or units_per_sample < 1:
            raise ValueError(f"units_per_sample: expected a positive integer or None, found {units_per_sample!r}")
        ups, units, override = float(units_per_sample), (UNITS_TOKENS if seq else UNITS_SAMPLES), True
    elif seq:
        tmp = DataInfo(UNITS_TOKENS, 1.0, None, loss_signature, seq_len, None, fmt, has_mask)
        ups, units, override = float(units_per_item(batch, tmp).mean()), UNITS_TOKENS, False
    else:
        ups, units, override = 1.0, UNITS_SAMPLES, False
    n = source.length
    return DataInfo(
        units=units,
        units_per_sample=ups,
        dataset_units=None if n is None else n * ups,
        loss_signature=loss_signature,
        seq_len=seq_len,
        num_samples=n,
        batch_format=fmt,
        has_mask=has_mask and not override,
        units_override=override,
    )


def check_data_contract(
    model_factory: Callable[..., torch.nn.Module],
    size_param: str,
    model_kwargs: dict[str, Any],
    probe_size_value: int,
    dataset: Any,
    loss_fn: Callable[..., Any],
    train_config: TrainConfig,
    units_per_sample: int | None = None,
) -> DataInfo:
    """Run one probe batch through a model of size `probe_size_value`, before any training.

    Raises TypeError/ValueError naming the culprit (dataset, loss_fn or
    model_cls) for: an object that is not a dataset, an empty dataset, samples
    that do not collate, a batch the model cannot take, and a loss that is not
    a tensor, not scalar, not finite or not differentiable. Returns what D
    counts and which loss signature is used.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable (outputs, batch) -> scalar tensor, found {type(loss_fn).__name__}")
    source = DataSource(dataset, name="dataset")
    if source.loader_batch_size not in (None, train_config.batch_size):
        raise ValueError(
            f"dataset: a DataLoader with batch_size={source.loader_batch_size} was given, but the sweep trains at "
            f"TrainConfig.batch_size={train_config.batch_size} (the trainer batches the DataLoader's dataset itself, "
            f"with its collate_fn); pass train_config={{'batch_size': {source.loader_batch_size}}} to train at "
            "the DataLoader's batch size, or pass its dataset"
        )
    batch = _probe_batch(source, min(2, train_config.batch_size))
    batch_format(batch)
    _check_causal_labels(batch, loss_fn)
    name = _factory_name(model_factory)
    try:
        model = model_factory(**{**dict(model_kwargs), size_param: probe_size_value})
    except Exception as exc:  # noqa: BLE001
        raise TypeError(
            f"model_cls: could not build {name}({size_param}={probe_size_value!r}, **model_kwargs) for the probe: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    model.train()
    try:
        outputs = call_model(model, batch)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(
            f"dataset: the model (model_cls={name}) cannot take a batch of this dataset, "
            f"found batch {describe_batch(batch)}; the call raised {type(exc).__name__}: {exc}. "
            "Dict batches are passed as model(batch['input_ids']) (or model(**batch without 'labels')), "
            "(inputs, labels) pairs as model(inputs), tensors as model(batch)."
        ) from None
    try:
        signature, loss = resolve_loss_signature(loss_fn, outputs, batch)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(
            f"loss_fn: raised {type(exc).__name__}: {exc} on the probe batch {describe_batch(batch)} "
            f"(called as loss_fn(outputs, batch), outputs {describe_batch(outputs)})"
        ) from None
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss_fn: expected a scalar torch.Tensor, found {type(loss).__name__} {loss!r}")
    if loss.numel() != 1:
        raise ValueError(
            f"loss_fn: expected a scalar tensor (one element), found a tensor of shape {list(loss.shape)}; "
            "reduce it, e.g. with .mean()"
        )
    value = float(loss.detach().float())
    if not math.isfinite(value):
        raise ValueError(f"loss_fn: expected a finite loss on the probe batch, found {value}")
    if not loss.requires_grad:
        raise ValueError(
            "loss_fn: expected a loss differentiable with respect to the model's parameters, found a tensor "
            "with requires_grad=False (was it detached, or computed through .item()/numpy?)"
        )
    loss.reshape(()).backward()
    if not any(p.grad is not None for p in model.parameters()):
        raise ValueError("loss_fn: the loss does not depend on any parameter of the model (no gradients after backward)")
    info = infer_data_info(source, units_per_sample, signature)
    return info


def _probe_val(model_factory: Callable[..., Any], size_param: str, model_kwargs: dict[str, Any],
               experiments: Sequence[Any], source: DataSource, val_samples: list[Any],
               loss_fn: Callable[..., Any]) -> None:
    """The validation data goes through the model and the loss before any run trains (a val_dataset of the
    wrong shape would otherwise fail every run at its very end)."""
    if not experiments:
        return
    size = min(experiments, key=lambda e: e.num_params).size_value
    try:
        batch = source.collate(val_samples[:2])
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"val_dataset: its samples do not collate like the training data's: "
                         f"{type(exc).__name__}: {exc}") from None
    try:
        model = model_factory(**{**dict(model_kwargs), size_param: size})
        with torch.no_grad():
            resolve_loss_signature(loss_fn, call_model(model, batch), batch)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(
            f"val_dataset: the model cannot be evaluated on it, found batch {describe_batch(batch)}; "
            f"{type(exc).__name__}: {exc}. It must have the training data's format"
        ) from None


def _check_causal_labels(batch: Any, loss_fn: Callable[..., Any]) -> None:
    """The project's causal LM loss compares position t's logits with labels[t]: labels must already be the
    inputs shifted by one. Labels equal to the inputs would teach the model to copy them (a loss near 0 that
    means nothing), so that is refused, with the fix."""
    from flops_fit.models.losses import causal_lm_loss

    if loss_fn is not causal_lm_loss or not isinstance(batch, dict):
        return
    ids, labels = batch.get("input_ids"), batch.get("labels")
    if isinstance(ids, torch.Tensor) and isinstance(labels, torch.Tensor) and ids.shape == labels.shape \
            and ids.numel() > 1 and torch.equal(ids, labels):
        raise ValueError(
            "dataset: its 'labels' equal its 'input_ids' (unshifted, as Hugging Face models expect), but "
            "loss_fn=causal_lm_loss compares position t with labels[t], so labels must be the next tokens "
            "(labels[t] = input_ids[t+1]); a model would learn to copy its input. Shift them (the built-in text "
            "data and flops_fit.data collators do), or use a loss that shifts them itself"
        )


def make_run_fn(
    *,
    model_factory: Callable[..., torch.nn.Module],
    size_param: str,
    model_kwargs: dict[str, Any],
    dataset: Any,
    loss_fn: Callable[..., Any],
    train_config: TrainConfig,
    output_dir: str | Path,
    seed: int,
    val_dataset: Any = None,
    flops_accounting: str = FLOPS_6ND,
    units_per_sample: int | None = None,
    allow_repeat: bool = True,
    data_info: DataInfo | None = None,
    experiments: Sequence[Any] = (),
    callbacks: Sequence[Any] = (),
    design: dict[str, Any] | None = None,
) -> Callable[[Any], Any]:
    """A picklable ``run(experiment) -> RunRecord`` training real models (see module doc).

    Validation: `val_dataset` (its first ``val_units`` worth of samples, in
    order) or, when None, a seeded random subset of `dataset` held out from
    training. Either way every run of the sweep uses the same split.
    `data_info` (from :func:`check_data_contract`) fixes the loss signature;
    without it each run detects the signature on its first batch. With
    ``allow_repeat=False``, `experiments` that would need more than one pass over
    the training split are refused here, before anything trains.
    """
    if not isinstance(train_config, TrainConfig):
        raise TypeError(f"train_config: expected a TrainConfig, found {type(train_config).__name__}")
    if flops_accounting not in (FLOPS_6ND, FLOPS_MEASURED):
        raise ValueError(
            f"flops_accounting: expected {FLOPS_6ND!r} or {FLOPS_MEASURED!r}, found {flops_accounting!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an integer, found {type(seed).__name__} {seed!r}")
    from flops_fit.training.trainer import resolve_device

    resolve_device(train_config)  # device="cuda" without CUDA: one clear line now, not a failure per run
    source = DataSource(dataset, name="dataset")
    info = infer_data_info(source, units_per_sample, data_info.loss_signature if data_info else "auto")
    cfg = train_config
    ups = info.units_per_sample
    n_val = DEFAULT_VAL_SAMPLES if cfg.val_units is None else max(1, math.ceil(cfg.val_units / ups - 1e-9))
    if val_dataset is None:
        train_idx, skip, val_samples = split_validation(source, n_val, int(seed))
        n_train = len(train_idx) if train_idx is not None else (
            None if source.length is None else source.length - skip
        )
    else:
        vsrc = DataSource(val_dataset, name="val_dataset")
        val_samples = vsrc.first_samples(n_val)
        if not val_samples:
            raise ValueError("val_dataset: expected at least one sample, found an empty dataset")
        _probe_val(model_factory, size_param, model_kwargs, experiments, source, val_samples, loss_fn)
        train_idx, skip, n_train = None, 0, source.length
    vbs = cfg.val_batch_size or cfg.batch_size
    val_batches = [source.collate(val_samples[i:i + vbs]) for i in range(0, len(val_samples), vbs)]
    val_units = float(sum(float(units_per_item(b, info).sum()) for b in val_batches))
    train_units = None if n_train is None else n_train * ups
    if not allow_repeat:
        for exp in experiments:
            check_repeat(float(exp.num_tokens), train_units, allow_repeat=False, run=exp.experiment_id)
    inputs = RunInputs(
        model_factory=model_factory, size_param=size_param, model_kwargs=dict(model_kwargs), source=source,
        train_indices=train_idx, skip=skip, train_units=train_units, val_batches=val_batches, val_units=val_units,
        info=info, loss_fn=loss_fn, config=cfg, output_dir=Path(output_dir), seed=int(seed),
        flops_accounting=flops_accounting, allow_repeat=allow_repeat, callbacks=tuple(callbacks), design=design,
    )
    return functools.partial(train_run, inp=inputs)


def run_precision(run_fn: Any) -> str | None:
    """The precision real training with `run_fn` will use on this machine ("fp32" or "bf16-autocast"),
    or None for run functions that are not this module's (mock, a user's own)."""
    inp = getattr(run_fn, "keywords", {}).get("inp") if isinstance(run_fn, functools.partial) else None
    if not isinstance(inp, RunInputs):
        return None
    from flops_fit.training.trainer import resolve_device, resolve_dtype

    return "bf16-autocast" if resolve_dtype(inp.config, resolve_device(inp.config)) is not None else "fp32"


#: Measured FLOPs per data unit this far from 6·N, either way, is warned about when the plan is made.
FLOPS_GAP_WARN = 1.5


class FlopsProbe:
    """Measured training FLOPs per data unit at any size value (FlopCounterMode, one forward+backward of a
    2-sample probe batch on the CPU), cached per size. None where it cannot be measured: sizes above
    `max_params` (too big to build on the CPU just to count) or a model the counter cannot run."""

    def __init__(self, model_factory: Callable[..., torch.nn.Module], size_param: str, model_kwargs: dict[str, Any],
                 dataset: Any, loss_fn: Callable[..., Any], info: DataInfo, count_params: Callable[[int], int],
                 *, max_params: float = 5e8) -> None:
        source = DataSource(dataset, name="dataset")
        self.batch = source.collate(source.first_samples(2))
        self.units = float(units_per_item(self.batch, info).sum())
        self.factory, self.size_param, self.kwargs = model_factory, size_param, dict(model_kwargs)
        self.loss_fn, self.signature, self.count, self.max_params = loss_fn, info.loss_signature, count_params, max_params
        self.cache: dict[int, float | None] = {}
        self.unit_name = str(info.units).rstrip("s") or "unit"

    def __call__(self, value: int) -> float | None:
        if value not in self.cache:
            self.cache[value] = self._measure(int(value))
        return self.cache[value]

    def _measure(self, value: int) -> float | None:
        from flops_fit import flops as flops_mod
        from flops_fit.training.trainer import compute_loss

        if self.count(value) > self.max_params:
            return None
        try:
            with torch.random.fork_rng(devices=[]):  # building and counting leave the caller's RNG as it was
                model = self.factory(**{**self.kwargs, self.size_param: value})

                def step() -> None:
                    _, loss = compute_loss(self.loss_fn, call_model(model, self.batch), self.batch, self.signature)
                    loss.backward()

                return flops_mod.measured_flops_per_unit(step, self.units)
        except Exception:  # noqa: BLE001 - a size that cannot be counted is flagged, never a crash
            return None


def flops_gap(plan: Any, probe: FlopsProbe) -> list[dict[str, float]]:
    """Measured FLOPs per data unit against 6·N at the plan's smallest and largest runnable size. Small
    models, shared weights (convolutions, repeated layers) and samples of many positions are where 6·N·D
    is far off."""
    sizes = sorted({(e.num_params, e.size_value) for e in plan.runnable})
    out = []
    for n, value in dict.fromkeys([sizes[0], sizes[-1]]) if sizes else []:
        fpu = probe(value)
        if fpu is not None:
            out.append({"N": float(n), "size_value": float(value), "flops_per_unit": fpu,
                        "ratio_to_6N": fpu / (6.0 * n)})
    return out
