"""A compact nanoGPT-style causal language model, with an optional u-μP parametrisation.

One readable file: `GPTConfig` holds every number that matters, `GPT` builds the
network from it. Size parameter for sweeps: ``d_model``.

Standard model (``umup=False``)
    Pre-norm transformer blocks (LayerNorm → causal self-attention via
    ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)`` → residual,
    LayerNorm → GELU MLP → residual), learned position embeddings, a final LayerNorm
    and an output projection whose weight is *tied* to the token embedding.
    Initialisation follows nanoGPT/GPT-2: N(0, 0.02), residual output projections
    N(0, 0.02/sqrt(2·n_layers)), zero biases.

u-μP model (``umup=True``)
    The same topology built from the ``unit-scaling`` package (Graphcore's reference
    implementation of u-μP, Blake et al. 2024): unit-scaled embeddings, linears,
    attention and residual branches (``residual_split``/``residual_add`` with the
    package's ``transformer_residual_scaling_rule``), non-trainable LayerNorms and a
    ``LinearReadout`` output layer. Two deliberate differences, both required by u-μP:
    the output layer is **not tied** to the embedding (the two carry different μP
    types, "weight" vs "output", and hence different learning-rate scales), and the
    learning rate of each parameter must be scaled by its μP rule. Train it with
    ``model.optimizer_param_groups(lr, weight_decay)`` (which wraps
    ``unit_scaling.optim.scaled_parameters``) or with ``unit_scaling.optim.AdamW``;
    a plain AdamW over ``model.parameters()`` silently loses the width transfer.

Both variants construct under ``with torch.device("meta"):`` (no data-dependent
initialisation), so a planner can count parameters of large models for free.

Input: ``input_ids`` LongTensor [B, S] with S <= max_seq_len.
Output: logits FloatTensor [B, S, vocab_size], position t predicting token t+1
(pair it with :func:`flops_fit.models.losses.causal_lm_loss`, whose labels are
already shifted by the data pipeline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from flops_fit.models._layers import init_weights

__all__ = ["GPTConfig", "GPT"]


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"GPT: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"GPT: {name} must be >= {minimum}, got {value}")


@dataclass
class GPTConfig:
    """Every hyper-parameter of :class:`GPT`, with its default.

    d_model:      residual stream width (the size parameter of sweeps); must be a
                  multiple of head_dim, n_heads = d_model // head_dim.
    n_layers:     number of transformer blocks (held fixed across a width sweep).
    head_dim:     width of one attention head (fixed, so heads grow with d_model).
    vocab_size:   number of token ids (256 = bytes).
    max_seq_len:  longest sequence the learned position table covers.
    dropout:      dropout on embeddings, attention probabilities and residual branches.
    mlp_ratio:    MLP hidden width = mlp_ratio * d_model.
    umup:         build the u-μP (unit-scaled maximal update) variant; see module doc.
    """

    d_model: int
    n_layers: int = 4
    head_dim: int = 16
    vocab_size: int = 256
    max_seq_len: int = 256
    dropout: float = 0.0
    mlp_ratio: int = 4
    umup: bool = False

    def __post_init__(self) -> None:
        _check_int("d_model", self.d_model, 1)
        _check_int("n_layers", self.n_layers, 1)
        _check_int("head_dim", self.head_dim, 1)
        _check_int("vocab_size", self.vocab_size, 1)
        _check_int("max_seq_len", self.max_seq_len, 1)
        _check_int("mlp_ratio", self.mlp_ratio, 1)
        if self.d_model % self.head_dim != 0:
            raise ValueError(
                f"GPT: d_model must be a multiple of head_dim={self.head_dim} "
                f"(n_heads = d_model // head_dim), got d_model={self.d_model}"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise TypeError(f"GPT: dropout must be a float, got {type(self.dropout).__name__}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"GPT: dropout must be in [0, 1), got {self.dropout}")
        if not isinstance(self.umup, bool):
            raise TypeError(f"GPT: umup must be a bool, got {type(self.umup).__name__} {self.umup!r}")

    @property
    def n_heads(self) -> int:
        return self.d_model // self.head_dim


# --------------------------------------------------------------------------- standard


class _CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.dropout = float(cfg.dropout)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.resid_drop = nn.Dropout(self.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (t.view(b, s, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).contiguous().view(b, s, d)
        return self.resid_drop(self.proj(y))


class _MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, bias=False)
        self.drop = nn.Dropout(float(cfg.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class _Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.attn = _CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.mlp = _MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


# --------------------------------------------------------------------------- u-μP


class _UMuPMLP(nn.Module):
    """GELU MLP from unit-scaled linears.

    constraint=None on both linears is safe for the same reason as in
    ``unit_scaling.MLP``: the forward/backward scale constraints of the up and down
    projections mirror each other.
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        import unit_scaling as uu

        hidden = cfg.mlp_ratio * cfg.d_model
        self.fc = uu.Linear(cfg.d_model, hidden, constraint=None)
        self.proj = uu.Linear(hidden, cfg.d_model, constraint=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import unit_scaling.functional as U

        return self.proj(U.gelu(self.fc(x), constraint=None))


class _UMuPBlock(nn.Module):
    def __init__(self, cfg: GPTConfig, attn_tau: float, mlp_tau: float) -> None:
        super().__init__()
        import unit_scaling as uu

        self.attn_tau = attn_tau
        self.mlp_tau = mlp_tau
        self.dropout = float(cfg.dropout)
        self.ln_1 = uu.LayerNorm(cfg.d_model)
        self.attn = uu.MHSA(cfg.d_model, cfg.n_heads, is_causal=True, dropout_p=self.dropout)
        self.ln_2 = uu.LayerNorm(cfg.d_model)
        self.mlp = _UMuPMLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import unit_scaling.functional as U

        h, skip = U.residual_split(x, tau=self.attn_tau)
        h = U.dropout(self.attn(self.ln_1(h)), self.dropout, self.training)
        x = U.residual_add(h, skip, tau=self.attn_tau)
        h, skip = U.residual_split(x, tau=self.mlp_tau)
        h = U.dropout(self.mlp(self.ln_2(h)), self.dropout, self.training)
        return U.residual_add(h, skip, tau=self.mlp_tau)


# --------------------------------------------------------------------------- model


class GPT(nn.Module):
    """Compact causal transformer LM; see the module docstring for the two variants."""

    #: batch keys passed to forward (see flops_fit.models.registry.forward_batch)
    input_keys = ("input_ids",)
    #: default objective (loss: flops_fit.models.losses.causal_lm_loss)
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
        umup: bool = False,
    ) -> None:
        super().__init__()
        cfg = GPTConfig(
            d_model=d_model,
            n_layers=n_layers,
            head_dim=head_dim,
            vocab_size=vocab_size,
            max_seq_len=max_seq_len,
            dropout=dropout,
            mlp_ratio=mlp_ratio,
            umup=umup,
        )
        self.config = cfg
        if cfg.umup:
            self._build_umup(cfg)
        else:
            self._build_standard(cfg)

    # -- construction

    def _build_standard(self, cfg: GPTConfig) -> None:
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_seq_len, cfg.d_model)
        self.drop = nn.Dropout(float(cfg.dropout))
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # tied: one matrix, counted once
        # nanoGPT / GPT-2 initialisation. nn.init works on the meta device (no-op).
        init_weights(self, std=0.02)
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    def _build_umup(self, cfg: GPTConfig) -> None:
        try:
            import unit_scaling as uu
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "GPT(umup=True) needs the 'unit-scaling' package: pip install 'flops-fit[umup]'"
            ) from exc
        rule = uu.transformer_residual_scaling_rule()
        self.tok_emb = uu.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = uu.Embedding(cfg.max_seq_len, cfg.d_model)
        self.blocks = uu.DepthModuleList(
            _UMuPBlock(cfg, rule(2 * i, 2 * cfg.n_layers), rule(2 * i + 1, 2 * cfg.n_layers))
            for i in range(cfg.n_layers)
        )
        self.ln_f = uu.LayerNorm(cfg.d_model)
        self.lm_head = uu.LinearReadout(cfg.d_model, cfg.vocab_size)

    # -- forward

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Return next-token logits [B, S, vocab_size] for ``input_ids`` [B, S]."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
            raise ValueError(f"GPT.forward: input_ids must be a LongTensor [batch, seq], got {shape}")
        seq = input_ids.shape[1]
        if seq > self.config.max_seq_len:
            raise ValueError(
                f"GPT.forward: sequence length {seq} exceeds max_seq_len={self.config.max_seq_len}"
            )
        pos = torch.arange(seq, device=input_ids.device)
        if self.config.umup:
            import unit_scaling.functional as U

            # Sum of two unit-variance embeddings, rescaled back to unit variance.
            x = (self.tok_emb(input_ids) + self.pos_emb(pos)) * (2.0**-0.5)
            x = U.dropout(x, float(self.config.dropout), self.training)
        else:
            x = self.drop(self.tok_emb(input_ids) + self.pos_emb(pos))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    # -- accounting

    def num_params(self, non_embedding: bool = False) -> int:
        """Number of trainable parameters.

        Default (``non_embedding=False``): every unique parameter, the Chinchilla
        convention; the tied token-embedding/output matrix is counted once.
        ``non_embedding=True``: the Kaplan convention, excluding the token-embedding
        table, the position-embedding table and (u-μP only, where it is untied) the
        output projection — every vocab- or position-sized matrix.
        """
        total = sum(p.numel() for p in self.parameters())
        if not non_embedding:
            return total
        excluded = {id(self.tok_emb.weight), id(self.pos_emb.weight), id(self.lm_head.weight)}
        return total - sum(p.numel() for p in self.parameters() if id(p) in excluded)

    def optimizer_param_groups(self, lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """Parameter groups for AdamW.

        Standard model: weight decay on matrices (dim >= 2) only, none on norms/biases.
        u-μP model: ``unit_scaling.optim.scaled_parameters`` with the Adam rule, which
        multiplies ``lr`` per parameter by its u-μP scale (1/sqrt(fan_in) for hidden
        weights, depth scaling for residual blocks) and makes weight decay independent
        of the learning rate. Pass the groups to ``torch.optim.AdamW`` unchanged.
        """
        if self.config.umup:
            from unit_scaling.optim import lr_scale_func_adam, scaled_parameters

            return list(
                scaled_parameters(
                    self.parameters(), lr_scale_func_adam, lr=lr, weight_decay=weight_decay
                )
            )
        decay = [p for p in self.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.dim() < 2]
        return [
            {"params": decay, "lr": lr, "weight_decay": weight_decay},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0},
        ]
