"""A set transformer for Gaussian-mixture data: per point, its cluster centre or cluster.

Input: ``points`` [B, P, dim], a set of P points drawn from a mixture of
``num_clusters`` Gaussians (see :class:`flops_fit.data.synthetic.GaussianMixtureSets`).
Each set is normalised on its own — centred on its mean and divided by its RMS
radius — so the encoder sees scale-free inputs whatever the mixture's spread; a
linear map embeds each point, pre-norm encoder blocks without position embeddings
(the model is permutation-equivariant over points) mix information across the set,
and a linear head reads out per point:

- ``prediction_type="centers"``: the centre of the point's cluster [B, P, dim],
  mapped back to the input frame (× scale + mean); loss ``gmm_centers_loss`` (MSE).
- ``prediction_type="assignments"``: logits over clusters [B, P, num_clusters];
  loss ``gmm_assignments_loss`` (cross-entropy). The generator numbers clusters in
  a canonical order so the labels are learnable.

Size parameter for sweeps: ``d_model``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from flops_fit.models._layers import EncoderBlock, check_heads, init_weights

__all__ = ["GMMTransformer"]


class GMMTransformer(nn.Module):
    """Permutation-equivariant transformer over point sets (registry name ``gmm``)."""

    input_keys = ("points",)

    def __init__(
        self,
        d_model: int,
        n_layers: int = 4,
        head_dim: int = 16,
        dim: int = 2,
        num_clusters: int = 4,
        prediction_type: Literal["centers", "assignments"] = "centers",
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        n_heads = check_heads("gmm", d_model, head_dim)
        if prediction_type not in ("centers", "assignments"):
            raise ValueError(
                f"gmm: prediction_type must be 'centers' or 'assignments', got {prediction_type!r}"
            )
        self.dim = dim
        self.num_clusters = num_clusters
        self.prediction_type = prediction_type
        self.objective = "gmm_centers" if prediction_type == "centers" else "gmm_assignments"
        self.eps = float(eps)
        self.in_proj = nn.Linear(dim, d_model)
        self.blocks = nn.ModuleList(EncoderBlock(d_model, n_heads, mlp_ratio, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, dim if prediction_type == "centers" else num_clusters)
        init_weights(self)

    def normalise(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalised points, per-set mean [B,1,dim], per-set RMS radius [B,1,1])."""
        mean = points.mean(dim=1, keepdim=True)
        centred = points - mean
        scale = centred.pow(2).sum(dim=-1, keepdim=True).mean(dim=1, keepdim=True).sqrt().clamp_min(self.eps)
        return centred / scale, mean, scale

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Centres [B, P, dim] or cluster logits [B, P, num_clusters] for points [B, P, dim]."""
        if not isinstance(points, torch.Tensor) or points.dim() != 3 or points.shape[-1] != self.dim:
            shape = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
            raise ValueError(f"GMMTransformer.forward: points must be [batch, n_points, {self.dim}], got {shape}")
        x, mean, scale = self.normalise(points.float())
        h = self.in_proj(x)
        for block in self.blocks:
            h = block(h)
        out = self.head(self.ln_f(h))
        if self.prediction_type == "centers":
            return out * scale + mean
        return out

    def num_params(self, non_embedding: bool = False) -> int:
        """All trainable parameters (default); ``non_embedding=True`` excludes the input
        projection and the output head (the dim-/cluster-sized maps)."""
        total = sum(p.numel() for p in self.parameters())
        if not non_embedding:
            return total
        return total - sum(p.numel() for p in self.in_proj.parameters()) - sum(
            p.numel() for p in self.head.parameters()
        )
