"""Data plumbing for real training: the batch/loss contract, unit counting, repeats, validation split.

Conventions (documented once here, used by the trainer and the cost estimate):

Batches
    A dataset yields samples; samples are collated (the DataLoader's
    ``collate_fn`` when a DataLoader is given, else torch's ``default_collate``)
    into one of three batch forms:

    - dict: ``model(batch["input_ids"])`` when that key exists, otherwise
      ``model(**{k: v for k, v in batch.items() if k != "labels"})``;
    - ``(inputs, labels)`` pair (tuple/list of length 2): ``model(inputs)``;
    - a tensor: ``model(tensor)``.

Loss
    ``loss_fn(outputs, batch)`` is the documented form. For pair batches a
    loss written as ``loss_fn(outputs, labels)`` is also accepted: the contract
    check calls ``loss_fn(outputs, batch)`` first and, only if that raises,
    ``loss_fn(outputs, labels)``; whichever works is used for the whole sweep
    and recorded as ``DataInfo.loss_signature``.

Units (what D counts)
    Tokens for sequence data -- a dict batch with ``input_ids``, or an integer
    model input of shape [B, S] -- counted as B·S, or as ``attention_mask.sum()``
    when the dict carries an ``attention_mask`` (padding excluded). Samples
    otherwise. ``units_per_sample`` overrides both (every sample counts that many).

DataLoaders
    Only the loader's ``dataset`` and ``collate_fn`` are used; batch size and
    order come from the :class:`TrainConfig` and the sweep seed, so every run
    sees the same data order and the run can resume mid-epoch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate

UNITS_TOKENS = "tokens"
UNITS_SAMPLES = "samples"
SIG_BATCH = "(outputs, batch)"
SIG_LABELS = "(outputs, labels)"


@dataclass
class DataInfo:
    """What the contract check learned from one probe batch."""

    units: str  # "tokens" or "samples"
    units_per_sample: float  # tokens per sequence (mean, when a mask is given), 1 for samples, or the override
    dataset_units: float | None  # units in the whole dataset (None: iterable of unknown length)
    loss_signature: str  # "(outputs, batch)" or "(outputs, labels)"
    seq_len: int | None  # sequence length of token data
    num_samples: int | None  # samples in the dataset (None: unknown)
    batch_format: str  # "dict", "pair" or "tensor"
    has_mask: bool = False
    units_override: bool = False


# ---------------------------------------------------------------------------
# dataset sources


class DataSource:
    """A dataset seen as: indexable (map-style) or iterable, plus the collate function.

    Pickles by value (the dataset object itself travels), so a run function
    that holds one can be shipped to a subprocess or a cluster worker.
    """

    def __init__(self, dataset: Any, *, name: str = "dataset") -> None:
        collate: Callable[[list[Any]], Any] = default_collate
        self.loader_batch_size: int | None = None  # a DataLoader's own batch size, checked against the config
        if isinstance(dataset, DataLoader):
            from torch.utils.data import default_convert

            # batch_size=None without a collate_fn gets torch's per-sample default_convert: not a collate of its own
            if dataset.collate_fn is not None and dataset.collate_fn is not default_convert:
                collate = dataset.collate_fn
            self.loader_batch_size = dataset.batch_size
            dataset = dataset.dataset
        kind_name = type(dataset).__name__
        if isinstance(dataset, tuple) or type(dataset).__module__.split(".")[0] in ("numpy", "pandas"):
            # they index like a dataset, but an array's rows or a tuple's members are not samples of one
            raise TypeError(
                f"{name}: expected a torch Dataset, IterableDataset or DataLoader, found {kind_name} — wrap arrays "
                "in a TensorDataset first, e.g. torch.utils.data.TensorDataset(torch.as_tensor(x), "
                "torch.as_tensor(y)) for an (inputs, labels) pair"
                + (" (a DataFrame: torch.as_tensor(df[cols].to_numpy()))" if kind_name == "DataFrame" else "")
            )
        if isinstance(dataset, IterableDataset):
            self.kind = "iterable"
        elif isinstance(dataset, Dataset) or (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            self.kind = "map"
        else:
            raise TypeError(f"{name}: expected a torch Dataset, IterableDataset or DataLoader, found {kind_name}")
        self.dataset = dataset
        self.collate = collate
        self.name = name
        # a data set that collates a whole batch in one call (the built-in token windows), used only where
        # it gives what the default collate would: map-style, no collate of the user's own
        self.batched = (self.kind == "map" and collate is default_collate
                        and callable(getattr(dataset, "_flops_fit_batch", None)))

    def __len__(self) -> int:
        if self.kind != "map":
            raise TypeError(f"{self.name}: an IterableDataset has no length")
        return len(self.dataset)

    @property
    def length(self) -> int | None:
        if self.kind == "map":
            return len(self.dataset)
        try:
            return len(self.dataset)  # some iterables define __len__
        except TypeError:
            return None

    def first_samples(self, k: int) -> list[Any]:
        if self.kind == "map":
            return [self.dataset[i] for i in range(min(k, len(self.dataset)))]
        out = []
        for item in self.dataset:
            out.append(item)
            if len(out) >= k:
                break
        return out


LARGE_DATASET = 1 << 24  # above this many samples, orders and splits are computed lazily


class HugeIndexSet:
    """range(n) minus `exclude`, for map-style data sets too large to list (the GMM sets have 2^31 items)."""

    def __init__(self, n: int, exclude: Any = ()) -> None:
        self.n = int(n)
        self.exclude = frozenset(int(i) for i in exclude)

    def __len__(self) -> int:
        return self.n - len(self.exclude)


class AffineOrder:
    """A seeded order of range(n), i -> (a·i + c) mod n with gcd(a, n) = 1, never materialised.

    Indexing by a slice of positions gives the data-set indices there, minus the excluded ones.
    """

    def __init__(self, n: int, seed_parts: list[int], exclude: frozenset[int] = frozenset(),
                 shuffle: bool = True) -> None:
        self.n, self.exclude = int(n), exclude
        self.a, self.c = 1, 0
        if shuffle and n > 1:
            rng = np.random.default_rng(seed_parts)
            self.c = int(rng.integers(0, n))
            while True:
                a = int(rng.integers(1, n))
                if math.gcd(a, n) == 1:
                    self.a = a
                    break

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, sl: slice) -> list[int]:
        stop = min(self.n, sl.stop if sl.stop is not None else self.n)
        idx = ((self.a * i + self.c) % self.n for i in range(sl.start or 0, stop))
        return [j for j in idx if j not in self.exclude]


class SampleStream:
    """Endless, resumable stream of samples over a source, repeating in epochs.

    Map-style: epoch e visits `indices` in the order of a permutation seeded
    by (seed, e). Iterable: the dataset's own order, skipping the first
    `skip` samples (held out for validation). Position = (epoch, offset).
    """

    def __init__(self, source: DataSource, *, seed: int, indices: np.ndarray | None = None, skip: int = 0,
                 shuffle: bool = True, allow_repeat: bool = True) -> None:
        self.source = source
        self.seed = int(seed)
        self.indices = indices
        self.skip = int(skip)
        self.shuffle = shuffle
        self.allow_repeat = allow_repeat
        self.learned_epoch_size: int | None = None  # iterables: known once an epoch has ended
        self.epoch = 0
        self.offset = 0
        self._order: np.ndarray | None = None
        self._iter: Iterator[Any] | None = None

    # -- position
    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state(self, state: Mapping[str, int]) -> None:
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
        self._order = None
        self._iter = None

    @property
    def epoch_size(self) -> int | None:
        if self.source.kind == "map":
            return len(self.indices) if self.indices is not None else len(self.source)
        n = self.source.length
        return self.learned_epoch_size if n is None else max(0, n - self.skip)

    @property
    def epochs_done(self) -> float | None:
        """Passes made so far (None while the size of an iterable is still unknown)."""
        size = self.epoch_size
        if not size:
            return None
        return self.epoch + self.offset / size

    def _epoch_order(self) -> Any:
        if self._order is None and (
            isinstance(self.indices, HugeIndexSet) or (self.indices is None and len(self.source) > LARGE_DATASET)
        ):
            excl = self.indices.exclude if isinstance(self.indices, HugeIndexSet) else frozenset()
            self._order = AffineOrder(len(self.source), [self.seed, self.epoch, 0x5EED], excl, self.shuffle)
        if self._order is None:
            base = self.indices if self.indices is not None else np.arange(len(self.source))
            if self.shuffle:
                rng = np.random.default_rng([self.seed, self.epoch, 0x5EED])
                base = base[rng.permutation(len(base))]
            self._order = base
        return self._order

    def _iter_epoch(self) -> Iterator[Any]:
        it = iter(self.source.dataset)
        for _ in range(self.skip + self.offset):
            next(it)
        return it

    def take_batch(self, k: int) -> Any:
        """The next k samples, collated: in one call on a batched map-style source, else sample by sample."""
        if not self.source.batched:
            return self.source.collate(self.take(k))
        return self.source.dataset._flops_fit_batch(self._take_indices(k))

    def _take_indices(self, k: int) -> np.ndarray:
        """Map-style: the indices of the next k samples, starting a new epoch whenever one runs out."""
        parts: list[np.ndarray] = []
        got = 0
        empty_epochs = 0
        while got < k:
            order = self._epoch_order()
            if self.offset >= len(order):
                self.epoch, self.offset, self._order = self.epoch + 1, 0, None
                empty_epochs += 1
                if empty_epochs > 1:
                    raise ValueError(f"{self.source.name}: no training samples left (empty dataset)")
                continue
            n = min(k - got, len(order) - self.offset)
            part = np.asarray(order[self.offset:self.offset + n], dtype=np.int64)  # a huge set skips held-out ones
            parts.append(part)
            self.offset += n
            got += part.size
            empty_epochs = 0
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def take(self, k: int) -> list[Any]:
        """The next k samples, starting a new epoch whenever one runs out."""
        if self.source.kind == "map":
            return [self.source.dataset[int(i)] for i in self._take_indices(k)]
        out: list[Any] = []  # an iterable: its own order, epoch after epoch
        empty_epochs = 0
        while len(out) < k:
            if self._iter is None:
                self._iter = self._iter_epoch()
            try:
                out.append(next(self._iter))
                self.offset += 1
                empty_epochs = 0
            except StopIteration:
                if self.offset > 0:
                    self.learned_epoch_size = self.offset
                if not self.allow_repeat and self.offset > 0:
                    raise ValueError(
                        f"{self.source.name}: the iterable ran out after {self.offset} training samples "
                        "and allow_repeat=False; use more data, smaller budgets, or allow_repeat=True"
                    ) from None
                self.epoch, self.offset, self._iter = self.epoch + 1, 0, None
                empty_epochs += 1
                if empty_epochs > 1:
                    raise ValueError(f"{self.source.name}: no training samples left (empty dataset)")
        return out


def split_validation(
    source: DataSource, val_samples: int, seed: int
) -> tuple[np.ndarray | None, int, list[Any]]:
    """A fixed, seeded held-out split: (train indices or None, samples to skip, validation samples).

    The split depends only on the sweep seed and `val_samples`, so every run of
    a sweep is evaluated on the same samples. Map-style: a seeded random
    subset; iterable: the first `val_samples` samples (skipped in training).
    """
    if source.kind == "map":
        n = len(source)
        if n <= val_samples:
            raise ValueError(
                f"dataset: expected more than {val_samples} samples to hold out a validation split "
                f"(TrainConfig.val_units), found {n}; pass val_dataset= or lower val_units"
            )
        if n > LARGE_DATASET:  # a permutation of n would not fit in memory
            rng = np.random.default_rng([int(seed), 0xFA1])
            val_idx = np.sort(rng.choice(n, size=val_samples, replace=False))
            return HugeIndexSet(n, val_idx), 0, [source.dataset[int(i)] for i in val_idx]  # type: ignore[return-value]
        perm = np.random.default_rng([int(seed), 0xFA1]).permutation(n)
        val_idx = np.sort(perm[:val_samples])
        train_idx = np.sort(perm[val_samples:])
        return train_idx, 0, [source.dataset[int(i)] for i in val_idx]
    val = source.first_samples(val_samples)
    if len(val) < val_samples:
        raise ValueError(
            f"dataset: expected more than {val_samples} samples to hold out a validation split, "
            f"found {len(val)}; pass val_dataset= or lower val_units"
        )
    return None, val_samples, val


# ---------------------------------------------------------------------------
# batches


def batch_format(batch: Any) -> str:
    if isinstance(batch, Mapping):
        return "dict"
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return "pair"
    if isinstance(batch, torch.Tensor):
        return "tensor"
    raise TypeError(
        "dataset: expected batches that are a dict, an (inputs, labels) pair or a tensor, "
        f"found {type(batch).__name__}"
        + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
    )


def model_input(batch: Any) -> Any:
    if isinstance(batch, Mapping):
        return batch["input_ids"] if "input_ids" in batch else None
    if isinstance(batch, (tuple, list)):
        return batch[0]
    return batch


def call_model(model: Callable[..., Any], batch: Any) -> Any:
    """Run the model on a batch (see the module docstring for the rule)."""
    if isinstance(batch, Mapping):
        keys = getattr(model, "input_keys", None)  # models may declare which batch keys they take
        if keys is not None:
            return model(**{k: batch[k] for k in keys if k in batch})
        if "input_ids" in batch:
            return model(batch["input_ids"])
        return model(**{k: v for k, v in batch.items() if k != "labels"})
    if isinstance(batch, (tuple, list)):
        return model(batch[0])
    return model(batch)


def call_loss(loss_fn: Callable[..., Any], outputs: Any, batch: Any, signature: str) -> Any:
    if signature == SIG_LABELS:
        return loss_fn(outputs, batch[1])
    return loss_fn(outputs, batch)


def to_device(batch: Any, device: torch.device | str) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def batch_size_of(batch: Any) -> int:
    x = model_input(batch)
    if x is None:  # dict without input_ids: first tensor value
        x = next(v for v in batch.values() if isinstance(v, torch.Tensor))
    return int(x.shape[0])


def slice_batch(batch: Any, n: int) -> Any:
    """The first n samples of a collated batch."""
    return slice_rows(batch, 0, n)


def slice_rows(batch: Any, lo: int, hi: int) -> Any:
    """Samples lo..hi-1 of a collated batch (one data-parallel rank's share)."""
    if isinstance(batch, torch.Tensor):
        return batch[lo:hi]
    if isinstance(batch, Mapping):
        return {k: (v[lo:hi] if isinstance(v, torch.Tensor) and v.dim() > 0 else v) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(slice_rows(v, lo, hi) for v in batch)
    return batch


def is_sequence_batch(batch: Any) -> bool:
    if isinstance(batch, Mapping) and "input_ids" in batch:
        return True
    x = model_input(batch)
    return isinstance(x, torch.Tensor) and x.dim() == 2 and not x.is_floating_point() and not x.is_complex()


def units_per_item(batch: Any, info: DataInfo) -> torch.Tensor:
    """Units of each sample of a collated batch, as a float tensor [B] (on the CPU)."""
    b = batch_size_of(batch)
    if info.units_override or info.units == UNITS_SAMPLES:
        return torch.full((b,), float(info.units_per_sample))
    if isinstance(batch, Mapping) and "attention_mask" in batch:
        return batch["attention_mask"].reshape(b, -1).sum(dim=1).float().cpu()
    x = model_input(batch)
    return torch.full((b,), float(x[0].numel()))


def describe_batch(batch: Any) -> str:
    """A short structural description for error messages, e.g. dict(input_ids: int64[2, 16])."""

    def one(v: Any) -> str:
        if isinstance(v, torch.Tensor):
            return f"{str(v.dtype).replace('torch.', '')}{list(v.shape)}"
        return type(v).__name__

    if isinstance(batch, Mapping):
        return "dict(" + ", ".join(f"{k}: {one(v)}" for k, v in batch.items()) + ")"
    if isinstance(batch, (tuple, list)):
        return f"{type(batch).__name__}(" + ", ".join(one(v) for v in batch) + ")"
    return one(batch)


# ---------------------------------------------------------------------------
# repeats

_REPEAT_WARNED: set[tuple[Any, ...]] = set()


def check_repeat(units: float, train_units: float | None, *, allow_repeat: bool, run: str = "") -> float:
    """Epochs a run needs; warns once per process when > 1, raises when repeats are not allowed."""
    if train_units is None:
        return 0.0
    epochs = float(units) / float(train_units)
    if epochs > 1.0:
        if not allow_repeat:
            raise ValueError(
                f"dataset: run {run} needs {units:.4g} units but the training split holds only "
                f"{train_units:.4g} ({epochs:.2f} epochs) and allow_repeat=False; "
                "use more data, smaller budgets, or allow_repeat=True"
            )
        key = (round(float(train_units)),)
        if key not in _REPEAT_WARNED:
            _REPEAT_WARNED.add(key)
            warnings.warn(
                f"dataset: the training split holds {train_units:.4g} units; runs that need more "
                f"(first: {run}, {epochs:.2f} epochs) repeat it. Each record's details['epochs'] "
                "says how many passes it made. (Warned once.)",
                UserWarning,
                stacklevel=3,
            )
    return epochs
