"""Recurrent language models: LSTM, GRU and Elman RNN over token ids.

Embedding → ``nn.LSTM``/``nn.GRU``/``nn.RNN`` stack → dropout → linear output
projection to the vocabulary. Size parameter for sweeps: ``hidden_size``.

Objectives
    A unidirectional model is causal: position t's logits predict token t+1, so it
    trains with :func:`~flops_fit.models.losses.causal_lm_loss` on labels the data
    pipeline has already shifted. A bidirectional model reads the whole sequence, so
    it may only be trained with the masked objective
    (:func:`~flops_fit.models.losses.masked_lm_loss`: the data replaces some inputs
    by a mask id and labels them); asking for a bidirectional causal model raises
    ``ValueError`` because it would see the token it must predict.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["RecurrentLM", "LSTMLM", "GRULM", "RNNLM"]

_CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class RecurrentLM(nn.Module):
    """Token-level recurrent LM; see the module docstring for the objective rules."""

    input_keys = ("input_ids",)
    #: the recurrent cell, set by each subclass (LSTMLM, GRULM, RNNLM): their fields are the same
    CELL: str | None = None

    def __init__(
        self,
        hidden_size: int,
        n_layers: int = 2,
        vocab_size: int = 256,
        embed_dim: int | None = None,
        dropout: float = 0.0,
        bidirectional: bool = False,
        objective: Literal["causal_lm", "masked_lm"] | None = None,
    ) -> None:
        super().__init__()
        cell = self.CELL
        if cell not in _CELLS:
            raise TypeError("RecurrentLM: build LSTMLM, GRULM or RNNLM (the subclass sets the cell)")
        for name, value in (("hidden_size", hidden_size), ("n_layers", n_layers), ("vocab_size", vocab_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RecurrentLM: {name} must be a positive int, got {value!r}")
        if embed_dim is not None and (isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 1):
            raise ValueError(f"RecurrentLM: embed_dim must be a positive int or None, got {embed_dim!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"RecurrentLM: dropout must be in [0, 1), got {dropout!r}")
        if objective is None:
            objective = "masked_lm" if bidirectional else "causal_lm"
        if objective not in ("causal_lm", "masked_lm"):
            raise ValueError(f"RecurrentLM: objective must be 'causal_lm', 'masked_lm' or None, got {objective!r}")
        if bidirectional and objective == "causal_lm":
            raise ValueError(
                "RecurrentLM: bidirectional=True cannot train with objective='causal_lm' "
                "(the backward direction sees the token to predict); use objective='masked_lm' "
                "or bidirectional=False"
            )
        self.cell = cell
        self.objective = objective
        self.bidirectional = bool(bidirectional)
        embed_dim = embed_dim or hidden_size
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.drop = nn.Dropout(float(dropout))
        self.rnn = _CELLS[cell](
            input_size=embed_dim,
            hidden_size=hidden_size,
            num_layers=n_layers,
            dropout=float(dropout) if n_layers > 1 else 0.0,
            bidirectional=self.bidirectional,
            batch_first=True,
        )
        self.lm_head = nn.Linear(hidden_size * (2 if self.bidirectional else 1), vocab_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits [B, S, vocab_size] for ``input_ids`` [B, S]."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
            raise ValueError(f"{type(self).__name__}.forward: input_ids must be a LongTensor [batch, seq], got {shape}")
        h, _ = self.rnn(self.drop(self.embedding(input_ids)))
        return self.lm_head(self.drop(h))

    def num_params(self, non_embedding: bool = False) -> int:
        """All trainable parameters (default), or with ``non_embedding=True`` only the
        recurrent stack: the embedding table and the output projection (weight and
        bias) are excluded."""
        total = sum(p.numel() for p in self.parameters())
        if not non_embedding:
            return total
        excluded = self.embedding.weight.numel() + sum(p.numel() for p in self.lm_head.parameters())
        return total - excluded


class LSTMLM(RecurrentLM):
    """LSTM language model (registry name ``lstm``)."""

    CELL = "lstm"


class GRULM(RecurrentLM):
    """GRU language model (registry name ``gru``)."""

    CELL = "gru"


class RNNLM(RecurrentLM):
    """Elman (tanh) RNN language model (registry name ``rnn``)."""

    CELL = "rnn"
