"""The built-in token windows collate a whole batch in one gather: the same batches, bit for bit, as the
per-sample path, across epoch boundaries and from any resumed position."""

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from flops_fit.data.corpus import TokenWindowDataset
from flops_fit.training.datautil import DataSource, SampleStream


def _windows(objective="causal_lm"):
    tokens = (np.arange(5000) * 7 % 251).astype(np.uint16)
    return TokenWindowDataset(tokens, 16, objective)


def test_one_gather_equals_collating_the_items():
    for objective in ("causal_lm", "masked_lm"):
        ds = _windows(objective)
        idx = np.array([3, 0, len(ds) - 1, 3])
        fast = ds._flops_fit_batch(idx)
        slow = default_collate([ds[int(i)] for i in idx])
        assert fast.keys() == slow.keys()
        assert all(torch.equal(fast[k], slow[k]) and fast[k].dtype == slow[k].dtype for k in slow)


def test_the_stream_gives_the_same_batches_either_way_across_epochs_and_resumes():
    ds = _windows()
    fast_src = DataSource(ds)
    assert fast_src.batched
    slow_src = DataSource(ds)
    slow_src.batched = False
    held_out = np.arange(10, len(ds))  # a stream over part of the data (validation held out), as the trainer uses
    fast = SampleStream(fast_src, seed=3, indices=held_out)
    slow = SampleStream(slow_src, seed=3, indices=held_out)
    for k in (7, 50, 300, 1, 301):  # crosses several epoch boundaries
        a, b = fast.take_batch(k), slow.take_batch(k)
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
        assert fast.state() == slow.state()
    again = SampleStream(fast_src, seed=3, indices=held_out)
    again.load_state(fast.state())  # resumed from a checkpoint's position
    assert torch.equal(again.take_batch(33)["input_ids"], slow.take_batch(33)["input_ids"])


def test_a_user_collate_or_a_dataset_without_the_fast_path_keeps_the_per_sample_path():
    ds = _windows()
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=lambda items: default_collate(items))
    assert not DataSource(loader).batched
    assert not DataSource(torch.utils.data.TensorDataset(torch.zeros(8, 3))).batched
    with pytest.raises(IndexError, match="expected 0 <= index <"):
        ds._flops_fit_batch(np.array([len(ds)]))
