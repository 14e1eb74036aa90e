"""The scikit-learn digits image set (no download)."""

from __future__ import annotations

import pytest
import torch

from flops_fit.data import load_digits_dataset

pytest.importorskip("sklearn")


def test_digits_splits_shapes_and_normalisation():
    train = load_digits_dataset("train")
    val = load_digits_dataset("validation")
    assert len(train) + len(val) == 1797
    assert len(val) == pytest.approx(0.2 * 1797, abs=1)
    image, label = train[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32
    assert label.dtype == torch.long and 0 <= int(label) <= 9
    assert train.images.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert train.images.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    assert val.stats == train.stats  # one transform for both splits
    assert set(train.labels.tolist()) == set(range(10)) == set(val.labels.tolist())
    assert train.num_classes == 10


def test_digits_split_is_seeded_and_disjoint():
    a = load_digits_dataset("validation", seed=0)
    b = load_digits_dataset("validation", seed=0)
    c = load_digits_dataset("validation", seed=1)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    train = load_digits_dataset("train", seed=0)
    # no validation image appears in train (compare exact pixel rows; 0 measured for seed 0)
    train_rows = {tuple(x.flatten().tolist()) for x in train.images}
    overlap = sum(tuple(x.flatten().tolist()) in train_rows for x in a.images)
    assert overlap == 0


def test_digits_batches_through_a_dataloader():
    loader = torch.utils.data.DataLoader(load_digits_dataset("train"), batch_size=16)
    images, labels = next(iter(loader))
    assert images.shape == (16, 1, 8, 8) and labels.shape == (16,)


def test_digits_errors():
    with pytest.raises(ValueError, match=r"split: expected one of \['train', 'validation'\], found 'test'"):
        load_digits_dataset("test")
    with pytest.raises(ValueError, match=r"val_fraction: expected a float in \(0, 1\), found 0"):
        load_digits_dataset("train", val_fraction=0)
