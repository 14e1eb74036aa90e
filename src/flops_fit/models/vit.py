"""A small Vision Transformer for image classification.

Non-overlapping patches (a strided convolution) → prepended learned [CLS] token →
learned position embeddings → pre-norm encoder blocks → LayerNorm → linear head on
the [CLS] token. Size parameter for sweeps: ``d_model`` (heads = d_model // head_dim). The defaults
(8x8 grey images, 2x2 patches, 10 classes) fit the built-in "digits" data set.

Input: images [B, channels, image_size, image_size] (float). Output: logits
[B, num_classes]. Batches are ``(images, labels)`` pairs; default loss
:func:`~flops_fit.models.losses.classification_loss`.
"""

from __future__ import annotations

import torch
from torch import nn

from flops_fit.models._layers import EncoderBlock, check_heads, init_weights

__all__ = ["ViT"]


class ViT(nn.Module):
    """Vision Transformer classifier (registry name ``vit``)."""

    input_keys = ("images",)
    objective = "classification"

    def __init__(
        self,
        d_model: int,
        n_layers: int = 4,
        head_dim: int = 16,
        image_size: int = 8,
        patch_size: int = 2,
        channels: int = 1,
        num_classes: int = 10,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        n_heads = check_heads("vit", d_model, head_dim)
        if image_size % patch_size != 0:
            raise ValueError(
                f"vit: image_size must be a multiple of patch_size={patch_size}, got image_size={image_size}"
            )
        self.image_size = image_size
        self.channels = channels
        n_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(channels, d_model, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.pos_emb = nn.Parameter(torch.zeros(1, n_patches + 1, d_model))
        self.drop = nn.Dropout(float(dropout))
        self.blocks = nn.ModuleList(EncoderBlock(d_model, n_heads, mlp_ratio, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)
        init_weights(self)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.pos_emb, std=0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits [B, num_classes] for images [B, C, H, W]."""
        expected = (self.channels, self.image_size, self.image_size)
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != expected:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"ViT.forward: images must be [batch, {', '.join(map(str, expected))}], got {shape}")
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # [B, n_patches, d]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_emb
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x[:, 0]))

    def num_params(self, non_embedding: bool = False) -> int:
        """All trainable parameters (default); ``non_embedding=True`` excludes the patch
        embedding, the [CLS] token, the position table and the classification head."""
        total = sum(p.numel() for p in self.parameters())
        if not non_embedding:
            return total
        excluded = (
            sum(p.numel() for p in self.patch_embed.parameters())
            + self.cls_token.numel()
            + self.pos_emb.numel()
            + sum(p.numel() for p in self.head.parameters())
        )
        return total - excluded
