"""Default losses of the built-in architectures, all with the ``(outputs, batch)`` signature.

Batch formats (what each loss reads):

- ``causal_lm_loss``: dict with ``"input_ids"`` LongTensor [B, S] and ``"labels"``
  LongTensor [B, S] **already shifted by the data pipeline** (``labels[:, t]`` is
  token t+1; positions to skip hold -100), optional ``"attention_mask"`` (the loss
  relies on -100 labels for padding, not on the mask). The loss does *not* shift
  again: shifting twice would train the model to predict two tokens ahead.
- ``masked_lm_loss``: same dict; ``"labels"`` holds the original token at masked
  positions and -100 everywhere else (no shift: position t predicts its own token).
- ``classification_loss``: an ``(images, labels)`` tuple/list or a dict with
  ``"labels"``; ``outputs`` are logits [B, num_classes].
- ``gmm_centers_loss`` / ``gmm_assignments_loss``: dict with ``"points"`` [B, P, dim],
  ``"centers"`` [B, P, dim] (the true centre of each point's cluster) and
  ``"assignments"`` LongTensor [B, P] (its cluster index).

``outputs`` may be a tensor or any object with a ``.logits`` attribute (Hugging Face
model outputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "IGNORE_INDEX",
    "causal_lm_loss",
    "masked_lm_loss",
    "classification_loss",
    "gmm_centers_loss",
    "gmm_assignments_loss",
]

IGNORE_INDEX = -100


def _logits(outputs: Any, loss_name: str) -> torch.Tensor:
    if isinstance(outputs, torch.Tensor):
        return outputs
    logits = getattr(outputs, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    raise TypeError(
        f"{loss_name}: outputs must be a logits tensor or have a .logits tensor, "
        f"got {type(outputs).__name__}"
    )


def _field(batch: Any, key: str, loss_name: str) -> torch.Tensor:
    if not isinstance(batch, Mapping):
        raise TypeError(
            f"{loss_name}: batch must be a dict with key {key!r}, got {type(batch).__name__}"
        )
    if key not in batch:
        raise ValueError(f"{loss_name}: batch has no {key!r} key (keys: {sorted(batch)})")
    value = batch[key]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{loss_name}: batch[{key!r}] must be a tensor, got {type(value).__name__}")
    return value


def _token_ce(logits: torch.Tensor, labels: torch.Tensor, loss_name: str) -> torch.Tensor:
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"{loss_name}: expected logits [B, S, vocab] and labels [B, S], "
            f"got logits {tuple(logits.shape)} and labels {tuple(labels.shape)}"
        )
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        labels.reshape(-1).long(),
        ignore_index=IGNORE_INDEX,
    )


def causal_lm_loss(outputs: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy; ``batch["labels"]`` is already shifted (see module doc)."""
    return _token_ce(_logits(outputs, "causal_lm_loss"), _field(batch, "labels", "causal_lm_loss"), "causal_lm_loss")


def masked_lm_loss(outputs: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy at masked positions (labels != -100), no shift."""
    return _token_ce(_logits(outputs, "masked_lm_loss"), _field(batch, "labels", "masked_lm_loss"), "masked_lm_loss")


def classification_loss(outputs: Any, batch: Any) -> torch.Tensor:
    """Cross-entropy of logits [B, C] against integer labels [B]."""
    logits = _logits(outputs, "classification_loss")
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        labels = batch[1]
    elif isinstance(batch, Mapping):
        labels = _field(batch, "labels", "classification_loss")
    elif isinstance(batch, torch.Tensor):
        labels = batch  # the (outputs, labels) form
    else:
        raise TypeError(
            "classification_loss: batch must be an (inputs, labels) pair or a dict with 'labels', "
            f"got {type(batch).__name__}"
        )
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            "classification_loss: expected logits [B, num_classes] and labels [B], "
            f"got logits {tuple(logits.shape)} and labels {tuple(labels.shape)}"
        )
    return F.cross_entropy(logits.float(), labels.long())


def gmm_centers_loss(outputs: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean squared error between predicted and true cluster centres, [B, P, dim]."""
    pred = _logits(outputs, "gmm_centers_loss")
    target = _field(batch, "centers", "gmm_centers_loss")
    if pred.shape != target.shape:
        raise ValueError(
            f"gmm_centers_loss: predictions {tuple(pred.shape)} and batch['centers'] "
            f"{tuple(target.shape)} must have the same shape"
        )
    return F.mse_loss(pred.float(), target.float())


def gmm_assignments_loss(outputs: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of per-point cluster logits [B, P, K] against ``assignments`` [B, P].

    Cluster indices are arbitrary labels, but the generator draws them in a fixed
    order (clusters sorted by their first coordinate), so they are learnable.
    """
    logits = _logits(outputs, "gmm_assignments_loss")
    labels = _field(batch, "assignments", "gmm_assignments_loss")
    return _token_ce(logits, labels, "gmm_assignments_loss")
