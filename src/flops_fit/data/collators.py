"""Batch collators for the two language-model objectives.

Label convention (the one every flops-fit model and loss follows): labels are
aligned with positions, ``labels[t]`` is the target for the logits at position
``t``, and ``-100`` means "no loss here" (``torch.nn.functional.cross_entropy``'s
default ``ignore_index``). For causal LM the collator already shifted them:
``labels[t] = input_ids[t + 1]``, so the loss compares ``logits[:, t]`` with
``labels[:, t]`` and must NOT shift again (Hugging Face models shift internally;
do not feed them these labels).

Both collators accept a list of examples, each a sequence of ids (list, tuple,
1-D tensor or array) or a dict with ``"input_ids"`` (and, for causal LM,
optionally already-shifted ``"labels"`` of the same length, as the corpus
windows carry). They return :class:`LMBatch` (a dict subclass, so
``batch["input_ids"]`` works) with ``input_ids``, ``labels`` and
``attention_mask`` LongTensors of shape ``[batch, longest]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from flops_fit.data.tokenizers import Tokenizer, require_mask_token

__all__ = ["IGNORE_INDEX", "LM_OBJECTIVES", "CausalLMCollator", "MaskedLMCollator", "collator_for"]

IGNORE_INDEX = -100
LM_OBJECTIVES: tuple[str, ...] = ("causal_lm", "masked_lm")


def _as_ids(example: Any, key: str = "input_ids") -> torch.Tensor:
    if isinstance(example, dict):
        if key not in example:
            raise ValueError(f"examples: expected dicts with key {key!r}, found keys {sorted(example)}")
        example = example[key]
    if isinstance(example, torch.Tensor):
        t = example.to(torch.long)
    elif isinstance(example, (list, tuple, np.ndarray)):
        t = torch.as_tensor(np.asarray(example, dtype=np.int64))
    else:
        raise TypeError(
            f"examples: expected sequences of token ids or dicts with 'input_ids', found {type(example).__name__}"
        )
    if t.dim() != 1:
        raise ValueError(f"examples: expected 1-D token id sequences, found shape {tuple(t.shape)}")
    return t


def _pad(seqs: list[torch.Tensor], value: int) -> torch.Tensor:
    length = max((len(s) for s in seqs), default=0)
    if seqs and all(len(s) == length for s in seqs):  # equal windows (the corpus case): one copy
        return torch.stack(seqs)
    out = torch.full((len(seqs), length), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def _attention_mask(seqs: list[torch.Tensor], length: int) -> torch.Tensor:
    """1 on each example's own positions, 0 on padding: [batch, length] LongTensor."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    return (torch.arange(length) < lengths[:, None]).long()


def _check_examples(examples: Any) -> list[Any]:
    if not isinstance(examples, (list, tuple)) or len(examples) == 0:
        raise ValueError(f"examples: expected a non-empty list of examples, found {examples!r:.80}")
    return list(examples)


class LMBatch(dict):
    """dict(input_ids, labels, attention_mask), all LongTensor [batch, length]."""

    @property
    def input_ids(self) -> torch.Tensor:
        return self["input_ids"]

    @property
    def labels(self) -> torch.Tensor:
        return self["labels"]

    @property
    def attention_mask(self) -> torch.Tensor:
        return self["attention_mask"]


class CausalLMCollator:
    """Pad to the longest example; labels are the inputs shifted by one (last position and padding -100)."""

    def __init__(self, pad_id: int):
        if isinstance(pad_id, bool) or not isinstance(pad_id, (int, np.integer)) or pad_id < 0:
            raise ValueError(f"pad_id: expected a non-negative int, found {pad_id!r}")
        self.pad_id = int(pad_id)

    def __call__(self, examples: Sequence[Any]) -> LMBatch:
        examples = _check_examples(examples)
        seqs = [_as_ids(e) for e in examples]
        input_ids = _pad(seqs, self.pad_id)
        attention_mask = _attention_mask(seqs, input_ids.shape[1])
        given = [isinstance(e, dict) and "labels" in e for e in examples]
        if any(given) and not all(given):
            raise ValueError("examples: expected 'labels' in all examples or in none, found a mix")
        if all(given):
            labels_list = [_as_ids(e, "labels") for e in examples]
            for i, (s, lab) in enumerate(zip(seqs, labels_list)):
                if len(lab) != len(s):
                    raise ValueError(
                        f"examples[{i}]: expected 'labels' as long as 'input_ids' ({len(s)}), found {len(lab)}"
                    )
            labels = _pad(labels_list, IGNORE_INDEX)
        else:
            labels = torch.full_like(input_ids, IGNORE_INDEX)
            # position t predicts t + 1, wherever t + 1 is inside the example
            labels[:, :-1] = torch.where(attention_mask[:, 1:].bool(), input_ids[:, 1:], IGNORE_INDEX)
        return LMBatch(input_ids=input_ids, labels=labels, attention_mask=attention_mask)


class MaskedLMCollator:
    """BERT masking: choose ``mlm_probability`` of the non-special tokens; of those 80% become
    the mask token, 10% a random non-special token, 10% stay; labels hold the original id at
    chosen positions and -100 elsewhere. Seeded with its own generator; in DataLoader workers
    the seed is mixed with the worker id so workers do not repeat each other's masks.
    """

    def __init__(self, tokenizer: Tokenizer, mlm_probability: float = 0.15, seed: int = 0):
        self.mask_id = require_mask_token(tokenizer)
        if not isinstance(mlm_probability, (int, float)) or not 0.0 < float(mlm_probability) < 1.0:
            raise ValueError(f"mlm_probability: expected a float in (0, 1), found {mlm_probability!r}")
        if tokenizer.pad_id is None:
            raise ValueError(f"tokenizer: expected a pad token for masked LM batches, found none in {tokenizer!r}")
        self.pad_id = int(tokenizer.pad_id)
        self.mlm_probability = float(mlm_probability)
        self.seed = int(seed)
        self.vocab_size = tokenizer.vocab_size
        # numpy, not tensors: pickling a tensor to a spawned DataLoader worker needs shared memory
        self._special = np.array(sorted(tokenizer.special_ids), dtype=np.int64)
        self._normal_ids = np.setdiff1d(np.arange(self.vocab_size, dtype=np.int64), self._special)
        if len(self._normal_ids) == 0:
            raise ValueError(f"tokenizer: expected some non-special tokens, found only special ones in {tokenizer!r}")
        self._generator: torch.Generator | None = torch.Generator().manual_seed(self.seed)
        self._worker: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_generator"] = None  # rebuilt (and re-seeded per worker) on first use
        state["_worker"] = -1
        return state

    def _gen(self) -> torch.Generator:
        info = torch.utils.data.get_worker_info()
        worker = None if info is None else info.id
        if worker != self._worker or self._generator is None:
            self._worker = worker
            self._generator = torch.Generator().manual_seed(self.seed + 1_000_003 * (0 if worker is None else worker + 1))
        return self._generator

    def __call__(self, examples: Sequence[Any]) -> LMBatch:
        examples = _check_examples(examples)
        seqs = [_as_ids(e) for e in examples]
        originals = _pad(seqs, self.pad_id)
        attention_mask = _attention_mask(seqs, originals.shape[1])
        g = self._gen()

        special = torch.from_numpy(self._special)
        normal_ids = torch.from_numpy(self._normal_ids)
        maskable = ~torch.isin(originals, special) & attention_mask.bool()
        chosen = (torch.rand(originals.shape, generator=g) < self.mlm_probability) & maskable
        action = torch.rand(originals.shape, generator=g)
        to_mask = chosen & (action < 0.8)
        to_random = chosen & (action >= 0.8) & (action < 0.9)
        random_ids = normal_ids[torch.randint(len(normal_ids), originals.shape, generator=g)]

        input_ids = originals.clone()
        input_ids[to_mask] = self.mask_id
        input_ids[to_random] = random_ids[to_random]
        labels = torch.where(chosen, originals, torch.full_like(originals, IGNORE_INDEX))
        return LMBatch(input_ids=input_ids, labels=labels, attention_mask=attention_mask)


def collator_for(objective: str, tokenizer: Tokenizer, *, mlm_probability: float = 0.15, seed: int = 0):
    """The collator a model's objective needs ("causal_lm" or "masked_lm")."""
    if objective == "causal_lm":
        if tokenizer.pad_id is None:
            raise ValueError(f"tokenizer: expected a pad token for causal LM batches, found none in {tokenizer!r}")
        return CausalLMCollator(tokenizer.pad_id)
    if objective == "masked_lm":
        return MaskedLMCollator(tokenizer, mlm_probability=mlm_probability, seed=seed)
    raise ValueError(f"objective: expected one of {list(LM_OBJECTIVES)}, found {objective!r}")
