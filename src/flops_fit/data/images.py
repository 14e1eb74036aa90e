"""The handwritten-digits image set shipped inside scikit-learn (no download), for the vit model.

1,797 grey 8x8 images of the digits 0-9 (``sklearn.datasets.load_digits``). Pixels
(0..16) are standardised with the mean and standard deviation of the *training*
split, so both splits share one transform. The split is stratified by class and
fixed by ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["DIGITS_SPLITS", "DigitsDataset", "load_digits_dataset"]

DIGITS_SPLITS = ("train", "validation")


@dataclass(frozen=True)
class DigitsStats:
    """The normalisation applied: ``(pixel - mean) / std`` with the train split's values."""

    mean: float
    std: float


class DigitsDataset(Dataset):
    """Items are ``(image FloatTensor[1, 8, 8], label LongTensor[])``."""

    num_classes = 10
    image_size = 8
    channels = 1

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, split: str, stats: DigitsStats):
        self.images = images
        self.labels = labels
        self.split = split
        self.stats = stats

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


def load_digits_dataset(split: str, val_fraction: float = 0.2, seed: int = 0) -> DigitsDataset:
    """The ``split`` ("train" or "validation") of scikit-learn's digits, standardised."""
    if split not in DIGITS_SPLITS and split != "val":
        raise ValueError(f"split: expected one of {list(DIGITS_SPLITS)}, found {split!r}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction: expected a float in (0, 1), found {val_fraction!r}")
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("load_digits_dataset needs scikit-learn: pip install 'flops-fit[vision]'") from exc
    data = load_digits()
    x = data.images.astype(np.float32)  # (1797, 8, 8), values 0..16
    y = data.target.astype(np.int64)
    idx = np.arange(len(y))
    train_idx, val_idx = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=y)
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    stats = DigitsStats(mean=float(x[train_idx].mean()), std=float(x[train_idx].std()))
    chosen = train_idx if split == "train" else val_idx
    images = torch.from_numpy((x[chosen] - stats.mean) / stats.std).unsqueeze(1).contiguous()
    labels = torch.from_numpy(y[chosen])
    return DigitsDataset(images, labels, "train" if split == "train" else "validation", stats)
