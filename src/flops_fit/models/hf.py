"""Hugging Face GPT-2 and BERT, built from config objects with random init.

Nothing is downloaded: the models are constructed from ``GPT2Config`` /
``BertConfig`` (never ``from_pretrained``). The wrappers take the batch tensors
(``input_ids``, optional ``attention_mask``) and return the logits tensor
[B, S, vocab_size], so the library's losses apply unchanged. Size parameter:
``d_model`` (GPT-2 ``n_embd``, BERT ``hidden_size``); heads = d_model // head_dim.

GPT-2 is causal (``causal_lm_loss``, labels shifted by the data pipeline — the HF
model's own label shifting is not used because labels are never passed to it).
BERT is bidirectional and trains only with ``masked_lm_loss``; the data must
replace some input ids by a mask id below ``vocab_size`` and label only those.
BERT uses ``type_vocab_size=1`` so every parameter receives gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from flops_fit.models._layers import check_heads

__all__ = ["HFGPT2", "HFBert"]


def _embedding_and_head_numel(model: nn.Module, head: nn.Module) -> int:
    """Elements of every embedding table plus the output head, each tensor once."""
    params = {id(m.weight): m.weight for m in model.modules() if isinstance(m, nn.Embedding)}
    params.update({id(p): p for p in head.parameters()})
    return sum(p.numel() for p in params.values())


class HFGPT2(nn.Module):
    """``transformers.GPT2LMHeadModel`` (tied embeddings) behind the library's interface."""

    input_keys = ("input_ids", "attention_mask")
    objective = "causal_lm"

    def __init__(
        self,
        d_model: int,
        n_layers: int = 4,
        head_dim: int = 16,
        vocab_size: int = 256,
        max_seq_len: int = 256,
        dropout: float = 0.0,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(
            vocab_size=vocab_size,
            n_positions=max_seq_len,
            n_embd=d_model,
            n_layer=n_layers,
            n_head=check_heads("gpt2", d_model, head_dim),
            n_inner=mlp_ratio * d_model,
            resid_pdrop=dropout,
            embd_pdrop=dropout,
            attn_pdrop=dropout,
            tie_word_embeddings=True,
            bos_token_id=0,
            eos_token_id=0,
        )
        self.hf = GPT2LMHeadModel(cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits [B, S, vocab_size]."""
        return self.hf(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    def num_params(self, non_embedding: bool = False) -> int:
        """Unique trainable parameters (tied embedding counted once); ``non_embedding=True``
        excludes the token and position embeddings (the output projection is the tied
        token embedding)."""
        total = sum(p.numel() for p in self.parameters())
        if not non_embedding:
            return total
        return total - _embedding_and_head_numel(self.hf, self.hf.lm_head)


class HFBert(nn.Module):
    """``transformers.BertForMaskedLM`` (tied decoder) behind the library's interface."""

    input_keys = ("input_ids", "attention_mask")
    objective = "masked_lm"

    def __init__(
        self,
        d_model: int,
        n_layers: int = 4,
        head_dim: int = 16,
        vocab_size: int = 256,
        max_seq_len: int = 256,
        dropout: float = 0.0,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        from transformers import BertConfig, BertForMaskedLM

        cfg = BertConfig(
            vocab_size=vocab_size,
            hidden_size=d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=check_heads("bert", d_model, head_dim),
            intermediate_size=mlp_ratio * d_model,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
            max_position_embeddings=max_seq_len,
            type_vocab_size=1,
            pad_token_id=0,
            tie_word_embeddings=True,
        )
        self.hf = BertForMaskedLM(cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-position token logits [B, S, vocab_size] (no shift)."""
        return self.hf(input_ids=input_ids, attention_mask=attention_mask).logits

    def num_params(self, non_embedding: bool = False) -> int:
        """Unique trainable parameters (tied decoder counted once); ``non_embedding=True``
        excludes the word/position/type embeddings and the output decoder (tied weight
        and its vocab-sized bias)."""
        total = sum(p.numel() for p in self.parameters())
        if not non_embedding:
            return total
        return total - _embedding_and_head_numel(self.hf, self.hf.cls.predictions.decoder)
