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

Configuration (every field of the Gaussian-mixture design; flat here, nested in
:mod:`flops_fit.models.nested`): per-site dropouts ``dropout_attention``,
``dropout_residual``, ``dropout_embedding`` (each None: ``dropout``), ``activation``
(gelu, relu, silu), ``mlp_ratio`` (the design's ``ff_expansion``), ``bias`` (every
linear and LayerNorm), ``norm_eps``, ``use_flash_attn`` (PyTorch's fused SDPA kernel
where the device has one — one notice when it has none — else the plain softmax
attention), and:

- ``layer_repetition = r``: each block is applied r times in a row with the same
  weights: the parameters of r = 1, about r× the compute. 6·N·D undercounts such a
  model by about r; the plan's measured-FLOPs check says so with the factor.
- ``flow_speed``: the design leaves it undefined; here it is a learned step size per
  block application, α (initialised to 1), on the block's residual update:
  h ← h + α·(block(h) − h). With α = 1 it is the plain block; α = 0 skips it. It adds
  one parameter per block and lets training slow or speed each step of the flow.

Size parameter for sweeps: ``d_model``.
"""

from __future__ import annotations

import warnings
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
        dropout_attention: float | None = None,
        dropout_residual: float | None = None,
        dropout_embedding: float | None = None,
        activation: Literal["gelu", "relu", "silu"] = "gelu",
        bias: bool = True,
        norm_eps: float = 1e-5,
        use_flash_attn: bool = True,
        layer_repetition: int = 1,
        flow_speed: bool = False,
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
        self.layer_repetition = int(layer_repetition)
        self.use_flash_attn = bool(use_flash_attn)
        self.in_proj = nn.Linear(dim, d_model, bias=bias)
        self.drop_emb = nn.Dropout(dropout if dropout_embedding is None else dropout_embedding)
        self.blocks = nn.ModuleList(
            EncoderBlock(d_model, n_heads, mlp_ratio, dropout if dropout_residual is None else dropout_residual,
                         attn_dropout=dropout if dropout_attention is None else dropout_attention,
                         activation=activation, bias=bias, norm_eps=norm_eps, use_sdpa=use_flash_attn)
            for _ in range(n_layers)
        )
        # one step size per block application (see the module doc); None without flow_speed
        self.flow = nn.Parameter(torch.ones(n_layers, self.layer_repetition)) if flow_speed else None
        self.ln_f = nn.LayerNorm(d_model, eps=norm_eps, bias=bias)
        self.head = nn.Linear(d_model, dim if prediction_type == "centers" else num_clusters, bias=bias)
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
        if self.use_flash_attn and not points.is_cuda:
            _notice_no_flash()
        h = self.drop_emb(self.in_proj(x))
        for i, block in enumerate(self.blocks):
            for r in range(self.layer_repetition):  # the same weights, applied again
                h = block(h) if self.flow is None else h + self.flow[i, r] * (block(h) - h)
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


_NOTICED: list[bool] = []


def _notice_no_flash() -> None:
    """use_flash_attn on a device without the fused kernel: say so once, then use SDPA's own fallback."""
    if not _NOTICED:
        _NOTICED.append(True)
        warnings.warn("gmm: use_flash_attn=True, but the flash-attention kernel needs a CUDA device; "
                      "scaled_dot_product_attention uses its CPU kernel instead (this notice is shown once)",
                      UserWarning, stacklevel=3)
