"""Seeded synthetic data sets: Gaussian-mixture point sets (for ``gmm``) and toy images.

Both are map-style datasets whose item ``i`` is a pure function of ``(seed, i)``:
every item is generated on demand from its own ``torch.Generator`` seeded with
``seed * 1_000_003 + i``. That gives random access, identical data with any number
of DataLoader workers or any shuffle, resumption at any index, and — with the
default ``length`` of 2**31 - 1 items, none stored — effectively infinite data.
(Use ``shuffle=False`` or a sampler that does not materialise a permutation of
``len(dataset)`` with such a length; the items are already i.i.d.) A validation
set is the same class with a different ``seed``.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ["GaussianMixtureSets", "SyntheticImages", "INFINITE_LENGTH"]

#: Default length: as many items as a 32-bit index can address, none stored.
INFINITE_LENGTH = 2**31 - 1


def _check_int(cls: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{cls}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{cls}: {name} must be >= {minimum}, got {value}")
    return value


def _check_float(cls: str, name: str, value: Any, minimum: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{cls}: {name} must be a finite float, got {type(value).__name__} {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"{cls}: {name} must be {'>' if strict else '>='} {minimum}, got {value}")
    return float(value)


def _check_index(cls: str, index: Any, length: int) -> int:
    if isinstance(index, bool):
        raise TypeError(f"{cls}: index must be an int, got bool")
    try:
        index = operator.index(index)
    except TypeError:
        raise TypeError(f"{cls}: index must be an int, got {type(index).__name__}") from None
    if not 0 <= index < length:
        raise IndexError(f"{cls}: index {index} out of range [0, {length})")
    return index


def _generator(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + index)


class GaussianMixtureSets(Dataset):
    """Sets of points drawn from a random Gaussian mixture, one mixture per item.

    Item ``i`` is ``dict(points=[P, dim] float32, centers=[P, dim] float32,
    assignments=[P] int64)`` where, for that item's own mixture:

    - the ``num_clusters`` centres are drawn i.i.d. N(0, I_dim) and numbered in
      ascending order of their first coordinate (a canonical order, so the cluster
      index is a learnable target, not an arbitrary label);
    - each point picks a cluster uniformly at random and is its centre plus
      N(0, sigma² I) noise with ``sigma = 1 / snr`` (``snr``: centre spread over
      within-cluster noise; larger is easier);
    - the whole set (points and centres alike) is then scaled by a factor drawn
      log-uniformly from ``scale_range`` and shifted by N(0, offset_std² I), so a
      model must be invariant to the frame (the ``gmm`` model normalises per set).
    """

    def __init__(
        self,
        num_clusters: int = 4,
        dim: int = 2,
        points_per_set: int = 64,
        snr: float = 4.0,
        seed: int = 0,
        length: int = INFINITE_LENGTH,
        offset_std: float = 0.0,
        scale_range: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        name = "GaussianMixtureSets"
        self.num_clusters = _check_int(name, "num_clusters", num_clusters, 1)
        self.dim = _check_int(name, "dim", dim, 1)
        self.points_per_set = _check_int(name, "points_per_set", points_per_set, 1)
        self.snr = _check_float(name, "snr", snr, 0.0, strict=True)
        self.seed = _check_int(name, "seed", seed, 0)
        self.length = _check_int(name, "length", length, 1)
        self.offset_std = _check_float(name, "offset_std", offset_std, 0.0, strict=False)
        if not isinstance(scale_range, (tuple, list)) or len(scale_range) != 2:
            raise TypeError(f"{name}: scale_range must be a (low, high) pair, got {scale_range!r}")
        low = _check_float(name, "scale_range[0]", scale_range[0], 0.0, strict=True)
        high = _check_float(name, "scale_range[1]", scale_range[1], 0.0, strict=True)
        if high < low:
            raise ValueError(f"{name}: scale_range must have low <= high, got {tuple(scale_range)}")
        self.scale_range = (low, high)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = _check_index("GaussianMixtureSets", index, self.length)
        g = _generator(self.seed, index)
        centres = torch.randn(self.num_clusters, self.dim, generator=g)
        centres = centres[torch.argsort(centres[:, 0])]
        assignments = torch.randint(0, self.num_clusters, (self.points_per_set,), generator=g)
        noise = torch.randn(self.points_per_set, self.dim, generator=g) / self.snr
        low, high = self.scale_range
        u = torch.rand((), generator=g).item()
        scale = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        offset = torch.randn(self.dim, generator=g) * self.offset_std
        centers = centres[assignments] * scale + offset
        points = centers + noise * scale
        return {"points": points, "centers": centers, "assignments": assignments}


class SyntheticImages(Dataset):
    """A learnable toy image-classification set for tests and demos.

    Each class has a fixed random prototype image (drawn from ``seed``); item ``i``
    is ``(prototype[label] + noise_std * N(0, 1), label)`` with ``label`` drawn
    uniformly, as ``(FloatTensor[channels, image_size, image_size], LongTensor[])``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 8,
        channels: int = 1,
        seed: int = 0,
        length: int = 1024,
        noise_std: float = 0.5,
    ) -> None:
        name = "SyntheticImages"
        self.num_classes = _check_int(name, "num_classes", num_classes, 2)
        self.image_size = _check_int(name, "image_size", image_size, 1)
        self.channels = _check_int(name, "channels", channels, 1)
        self.seed = _check_int(name, "seed", seed, 0)
        self.length = _check_int(name, "length", length, 1)
        self.noise_std = _check_float(name, "noise_std", noise_std, 0.0, strict=False)
        g = torch.Generator().manual_seed(self.seed)
        self.prototypes = torch.randn(num_classes, channels, image_size, image_size, generator=g)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = _check_index("SyntheticImages", index, self.length)
        g = _generator(self.seed + 1, index)
        label = torch.randint(0, self.num_classes, (), generator=g)
        image = self.prototypes[label] + self.noise_std * torch.randn(self.prototypes.shape[1:], generator=g)
        return image, label
