"""Map-style data sets too large to list (e.g. the 2^31 Gaussian-mixture sets) stream lazily."""

import numpy as np
import torch

from flops_fit.training.datautil import AffineOrder, DataSource, HugeIndexSet, SampleStream, split_validation


class Huge(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2**31 - 1

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([i], dtype=torch.long)


def test_affine_order_is_a_seeded_permutation():
    n = 1000
    order = AffineOrder(n, [0, 0, 1])
    assert sorted(order[0:n]) == list(range(n))
    assert order[0:n] != list(range(n))  # shuffled
    assert AffineOrder(n, [0, 0, 1])[0:50] == order[0:50]  # deterministic
    assert AffineOrder(n, [0, 1, 1])[0:50] != order[0:50]  # a new order each epoch
    assert set(AffineOrder(n, [0, 0, 1], frozenset({3, 5}))[0:n]) == set(range(n)) - {3, 5}


def test_huge_map_dataset_splits_and_streams_without_materialising():
    src = DataSource(Huge())
    train_idx, skip, val = split_validation(src, 64, seed=0)
    assert isinstance(train_idx, HugeIndexSet) and len(train_idx) == 2**31 - 1 - 64
    val_ids = {int(v) for v in val}
    stream = SampleStream(src, seed=0, indices=train_idx)
    seen = [int(x) for x in stream.take(5000)]
    assert len(set(seen)) == 5000 and not (set(seen) & val_ids)
    # resuming from the stream position continues the same order
    state = stream.state()
    nxt = [int(x) for x in stream.take(10)]
    again = SampleStream(src, seed=0, indices=train_idx)
    again.load_state(state)
    assert [int(x) for x in again.take(10)] == nxt
    assert np.ptp(seen) > 2**28  # spread over the whole range, not the first few thousand
