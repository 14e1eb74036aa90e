"""A user's own model, data set and loss, reached by the CLI through `_target_` import paths.

Importable in the CLI subprocesses because the tests put tests/cli on PYTHONPATH.
"""

from __future__ import annotations

import torch
from torch import nn

VOCAB = 16


class TinyLM(nn.Module):
    """Bigram-style LM: embedding of width `width`, one hidden layer, logits over VOCAB tokens."""

    def __init__(self, width: int, vocab: int = VOCAB) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.hidden = nn.Linear(width, width)
        self.out = nn.Linear(width, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(self.emb(ids))))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class NoCount(nn.Module):
    """Breaks the model contract: no num_params()."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.lin = nn.Linear(width, width)


class SequenceData(torch.utils.data.Dataset):
    """Sequences of a noisy cycle over VOCAB tokens: next token = (token + 1) % VOCAB, 10% noise."""

    def __init__(self, n: int = 512, seq_len: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, VOCAB, (n, 1), generator=g)
        seq = (start + torch.arange(seq_len + 1)) % VOCAB
        noise = torch.rand(n, seq_len + 1, generator=g) < 0.1
        seq = torch.where(noise, torch.randint(0, VOCAB, seq.shape, generator=g), seq)
        self.x, self.y = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def lm_loss(logits: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of the next-token logits against the (already shifted) labels."""
    _, labels = batch
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
