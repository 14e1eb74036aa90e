"""Pieces shared by the built-ins: the pre-norm encoder block (ViT, GMM), N(0, std) init, head check."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EncoderBlock(nn.Module):
    """LayerNorm → bidirectional self-attention (SDPA) → residual, LayerNorm → GELU MLP → residual."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = float(dropout)
        self.ln_1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.attn_proj = nn.Linear(d_model, d_model)
        self.ln_2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, mlp_ratio * d_model)
        self.mlp_proj = nn.Linear(mlp_ratio * d_model, d_model)
        self.drop = nn.Dropout(self.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(d, dim=2)
        q, k, v = (t.view(b, s, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.attn_proj(y.transpose(1, 2).reshape(b, s, d)))
        return x + self.drop(self.mlp_proj(F.gelu(self.fc(self.ln_2(x)))))


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
