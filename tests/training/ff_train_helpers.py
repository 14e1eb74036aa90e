"""Tiny models, datasets and run functions shared by the training tests (module-level: picklable)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, IterableDataset


class TokenData(Dataset):
    """Learnable byte-like sequences: each token is the previous one plus 1 (mod vocab), random starts.

    Items are dict(input_ids [S], labels [S]) with labels already shifted.
    """

    def __init__(self, n: int = 512, seq_len: int = 8, vocab: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, vocab, (n, 1), generator=g)
        seq = (starts + torch.arange(seq_len + 1)) % vocab
        noise = torch.rand(seq.shape, generator=g) < 0.1
        seq = torch.where(noise, torch.randint(0, vocab, seq.shape, generator=g), seq)
        self.x, self.y = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.x[i], "labels": self.y[i]}


class CountingTokenData(TokenData):
    """TokenData that counts how often each item is read (in this process)."""

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.reads = 0

    def __getitem__(self, i: int) -> dict:
        self.reads += 1
        return super().__getitem__(i)


class StreamData(IterableDataset):
    def __init__(self, n: int = 256, seq_len: int = 8, vocab: int = 16) -> None:
        self.inner = TokenData(n, seq_len, vocab)

    def __iter__(self):
        for i in range(len(self.inner)):
            yield self.inner[i]


class PairData(Dataset):
    """(x, y) classification pairs: y = argmax of the first 4 features."""

    def __init__(self, n: int = 256, dim: int = 8, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        self.y = self.x[:, :4].argmax(dim=1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


class TinyLM(nn.Module):
    """Embedding -> MLP -> logits; size parameter d_model."""

    def __init__(self, d_model: int, vocab: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d_model)
        self.fc = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, vocab)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(self.emb(input_ids))))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class TinyMLP(nn.Module):
    def __init__(self, width: int, dim: int = 8, classes: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, width), nn.ReLU(), nn.Linear(width, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def lm_loss(outputs: torch.Tensor, batch: dict) -> torch.Tensor:
    return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), batch["labels"].reshape(-1))


def labels_loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The (outputs, labels) form."""
    return F.cross_entropy(outputs, labels)


# a loss that raises once a global step counter passes FAIL_AT (to simulate a crash mid-run)
FAIL_AT = {"step": None, "calls": 0}


def crashing_lm_loss(outputs, batch):
    FAIL_AT["calls"] += 1
    if FAIL_AT["step"] is not None and FAIL_AT["calls"] > FAIL_AT["step"]:
        raise RuntimeError("simulated crash")
    return lm_loss(outputs, batch)


def slow_lm_loss(outputs, batch):
    """lm_loss that takes ~4 ms more, so a subprocess sweep lasts long enough to be killed mid-run."""
    import time

    time.sleep(0.004)
    return lm_loss(outputs, batch)


def plain_train(model, experiment, context):
    """A user's own training loop (the train_fn contract): AdamW on the exact token budget, then validation."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loader = torch.utils.data.DataLoader(context.dataset, batch_size=8, shuffle=True,
                                         generator=torch.Generator().manual_seed(context.seed))
    seen = 0
    while seen < experiment.num_tokens:
        for batch in loader:
            loss = lm_loss(model(batch["input_ids"]), batch)
            loss.backward()
            opt.step()
            opt.zero_grad()
            seen += batch["input_ids"].numel()
            if seen >= experiment.num_tokens:
                break
    with torch.no_grad():
        val = context.val_dataset[:]
        final = lm_loss(model(val["input_ids"]), val)
    (context.checkpoint_dir / "done.txt").write_text(str(seen))
    return {"loss": float(final), "details": {"tokens_seen": seen, "checkpoint_dir": str(context.checkpoint_dir)}}


class ValSlice(TokenData):
    """TokenData whose [:] gives the whole split as one batch (for plain_train's validation)."""

    def __getitem__(self, i):
        if isinstance(i, slice):
            return {"input_ids": self.x[i], "labels": self.y[i]}
        return super().__getitem__(i)


def nan_train(model, experiment, context):
    return float("nan")


def wrong_train(model, experiment, context):
    return "low"
