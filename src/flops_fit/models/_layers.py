"""Pieces shared by the built-ins: the pre-norm encoder block (ViT, GMM), N(0, std) init, head check."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu}


class EncoderBlock(nn.Module):
    """LayerNorm → bidirectional self-attention → residual, LayerNorm → MLP → residual.

    `dropout` is the residual dropout; `attn_dropout` (default: `dropout`) drops attention
    probabilities. `use_sdpa`: PyTorch's scaled_dot_product_attention, which takes the fused
    (flash / memory-efficient) kernel where the device has one; False: the plain
    softmax(QKᵀ/√d)V, the reference the fused kernel must match.
    """

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int = 4, dropout: float = 0.0, *,
                 attn_dropout: float | None = None, activation: str = "gelu", bias: bool = True,
                 norm_eps: float = 1e-5, use_sdpa: bool = True) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.attn_dropout = float(dropout if attn_dropout is None else attn_dropout)
        self.act = ACTIVATIONS[activation]
        self.use_sdpa = use_sdpa
        self.ln_1 = nn.LayerNorm(d_model, eps=norm_eps, bias=bias)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.attn_proj = nn.Linear(d_model, d_model, bias=bias)
        self.ln_2 = nn.LayerNorm(d_model, eps=norm_eps, bias=bias)
        self.fc = nn.Linear(d_model, mlp_ratio * d_model, bias=bias)
        self.mlp_proj = nn.Linear(mlp_ratio * d_model, d_model, bias=bias)
        self.drop = nn.Dropout(float(dropout))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        p = self.attn_dropout if self.training else 0.0
        if self.use_sdpa:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        w = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
        return F.dropout(w, p) @ v if p else w @ v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(d, dim=2)
        q, k, v = (t.view(b, s, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = self.attend(q, k, v)
        x = x + self.drop(self.attn_proj(y.transpose(1, 2).reshape(b, s, d)))
        return x + self.drop(self.mlp_proj(self.act(self.fc(self.ln_2(x)))))


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """N(0, std) for linear/embedding weights, zero biases; works on the meta device."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding, nn.Conv2d)):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


def check_heads(arch: str, d_model: int, head_dim: int) -> int:
    """n_heads = d_model // head_dim, with a clear error when it does not divide."""
    if d_model % head_dim != 0:
        raise ValueError(
            f"{arch}: d_model must be a multiple of head_dim={head_dim}, got d_model={d_model}"
        )
    return d_model // head_dim
