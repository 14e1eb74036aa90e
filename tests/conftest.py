"""Shared fixtures: tiny duck-typed models that satisfy (or break) the model contract."""

from __future__ import annotations

import pytest


class ToyModel:
    """N grows like a 4-layer transformer: 12·L·d² + vocab·d."""

    def __init__(self, d_model: int, n_layers: int = 4, vocab: int = 256) -> None:
        self.d_model, self.n_layers, self.vocab = d_model, n_layers, vocab

    def num_params(self) -> int:
        return 12 * self.n_layers * self.d_model**2 + self.vocab * self.d_model


@pytest.fixture
def toy_model() -> type[ToyModel]:
    return ToyModel


@pytest.fixture(autouse=True)
def _quiet_torch_threads():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    yield
