"""Named data sets for `find_optimal(dataset=...)`: built-in corpora, text folders, synthetic sets.

Resolving a name gives train and validation sets that match the model: the
vocabulary size comes from the tokenizer, and masked-LM data carries the
masking collator, so a built-in architecture needs no glue.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SEQ_LEN = 128
_OPTION_KEYS = {
    "tokenizer", "vocab_size", "seq_len", "max_bytes", "cache_dir", "val_fraction", "special_tokens",
    "num_clusters", "dim", "points_per_set", "snr", "seed", "val_sets", "mlm_probability",
}


@dataclass
class ResolvedData:
    """Train/validation data for a sweep plus what the model must agree with."""

    train: Any
    val: Any
    description: str
    model_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. vocab_size from the tokenizer
    units_per_sample: int | None = None  # what D counts per item when not tokens (e.g. points per set)


def is_builtin_name(dataset: Any) -> bool:
    if not isinstance(dataset, str):
        return False
    if dataset in ("stdlib", "gmm", "digits"):
        return True
    return os.path.exists(dataset) or bool(glob.glob(dataset))


def resolve_dataset(
    dataset: str,
    *,
    objective: str | None = None,
    options: dict[str, Any] | None = None,
    model_fields: dict[str, Any] | None = None,
) -> ResolvedData:
    """Train/val sets for a built-in name ("stdlib", "gmm", "digits") or a text file/folder/glob."""
    opts = dict(options or {})
    unknown = sorted(set(opts) - _OPTION_KEYS)
    if unknown:
        raise ValueError(f"data_options: unknown option {unknown[0]!r}; known options: {sorted(_OPTION_KEYS)}")
    fields = dict(model_fields or {})
    if dataset == "gmm":
        return _gmm(opts, fields)
    if dataset == "digits":
        from flops_fit.data.images import load_digits_dataset

        seed = int(opts.get("seed", 0))
        return ResolvedData(
            load_digits_dataset("train", seed=seed),
            load_digits_dataset("validation", seed=seed),
            "scikit-learn handwritten digits (8x8, 10 classes)",
            {"image_size": 8, "channels": 1, "num_classes": 10},
        )
    if not is_builtin_name(dataset):
        raise ValueError(
            f"dataset: expected a torch Dataset/DataLoader, a built-in name ('stdlib', 'gmm', 'digits') "
            f"or an existing text file, folder or glob; found {dataset!r}"
        )
    return _text(dataset, objective or "causal_lm", opts, fields)


def _gmm(opts: dict[str, Any], fields: dict[str, Any]) -> ResolvedData:
    from flops_fit.data.synthetic import GaussianMixtureSets

    seed = int(opts.get("seed", 0))
    kw = {
        "num_clusters": opts.get("num_clusters", fields.get("num_clusters", 4)),
        "dim": opts.get("dim", fields.get("dim", 2)),
        "points_per_set": opts.get("points_per_set", 64),
        "snr": opts.get("snr", 4.0),
    }
    train = GaussianMixtureSets(seed=seed, **kw)
    val = GaussianMixtureSets(seed=seed + 1_000_003, length=int(opts.get("val_sets", 256)), **kw)
    overrides = {"num_clusters": kw["num_clusters"], "dim": kw["dim"]}
    # D counts points (the set transformer's tokens), not sets
    return ResolvedData(train, val, f"Gaussian-mixture sets {kw}", overrides, units_per_sample=int(kw["points_per_set"]))


def _text(dataset: str, objective: str, opts: dict[str, Any], fields: dict[str, Any]) -> ResolvedData:
    """A tokenised corpus cut into windows of seq_len; masked-LM data carries its masking collator."""
    from torch.utils.data import DataLoader

    from flops_fit.data import load_corpus

    seed = int(opts.get("seed", 0))
    special = opts.get("special_tokens", "bert" if objective == "masked_lm" else "gpt")
    seq_len = int(opts.get("seq_len", min(DEFAULT_SEQ_LEN, int(fields.get("max_seq_len", DEFAULT_SEQ_LEN)))))
    if "max_seq_len" in fields and seq_len > int(fields["max_seq_len"]):
        raise ValueError(
            f"data_options: seq_len={seq_len} is longer than the model's max_seq_len={fields['max_seq_len']}"
        )
    corpus = load_corpus(dataset, tokenizer=opts.get("tokenizer", "byte"), vocab_size=opts.get("vocab_size"),
                         special_tokens=special, cache_dir=opts.get("cache_dir"), max_bytes=opts.get("max_bytes"),
                         val_fraction=opts.get("val_fraction", 0.05))
    train = corpus.dataset("train", seq_len, objective)
    val = corpus.dataset("validation", seq_len, objective)
    if objective == "masked_lm":
        mlm = float(opts.get("mlm_probability", 0.15))
        # carriers of the masking collate_fn only (batch_size=None: the trainer batches, at its own batch size)
        train = DataLoader(train, batch_size=None,
                           collate_fn=corpus.collator("masked_lm", mlm_probability=mlm, seed=seed))
        val = DataLoader(val, batch_size=None, collate_fn=corpus.collator("masked_lm", mlm_probability=mlm, seed=seed + 1))
    overrides: dict[str, Any] = {"vocab_size": corpus.vocab_size}
    overrides["max_seq_len"] = max(seq_len, int(fields.get("max_seq_len", seq_len)))  # applied if the model has it
    desc = (
        f"{'Python standard library sources' if dataset == 'stdlib' else dataset}: "
        f"{corpus.n_tokens:,} tokens ({type(corpus.tokenizer).__name__}, vocab {corpus.vocab_size}), "
        f"seq_len {seq_len}, {objective}"
    )
    return ResolvedData(train, val, desc, overrides)
