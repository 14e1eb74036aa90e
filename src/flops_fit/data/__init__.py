"""Data for flops-fit: tokenizers, LM collators, cached token corpora, built-in data sets.

Nothing here imports ``transformers``, ``tokenizers`` or ``sentencepiece`` at import
time; each is imported by the tokenizer kind that needs it.
"""

from flops_fit.data import synthetic as synthetic
from flops_fit.data.collators import (
    IGNORE_INDEX,
    LM_OBJECTIVES,
    CausalLMCollator,
    LMBatch,
    MaskedLMCollator,
    collator_for,
)
from flops_fit.data.corpus import (
    DEFAULT_STDLIB_MAX_BYTES,
    TextCorpus,
    TokenCorpus,
    TokenWindowDataset,
    default_cache_dir,
    load_corpus,
    stdlib_files,
)
from flops_fit.data.images import DigitsDataset, load_digits_dataset
from flops_fit.data.tokenizers import (
    SPECIAL_TOKEN_STYLES,
    TOKENIZER_KINDS,
    Tokenizer,
    build_tokenizer,
    load_tokenizer,
    require_mask_token,
)

#: Names usable as ``dataset=`` without any file: "stdlib" (text, :func:`load_corpus`) and
#: "digits" (images, :func:`load_digits_dataset`). Other built-ins append themselves.
BUILTIN_DATASETS: list[str] = ["stdlib", "digits"]

__all__ = [
    "BUILTIN_DATASETS",
    "DEFAULT_STDLIB_MAX_BYTES",
    "IGNORE_INDEX",
    "LM_OBJECTIVES",
    "SPECIAL_TOKEN_STYLES",
    "TOKENIZER_KINDS",
    "CausalLMCollator",
    "DigitsDataset",
    "LMBatch",
    "MaskedLMCollator",
    "TextCorpus",
    "TokenCorpus",
    "TokenWindowDataset",
    "Tokenizer",
    "build_tokenizer",
    "collator_for",
    "default_cache_dir",
    "load_corpus",
    "load_digits_dataset",
    "load_tokenizer",
    "require_mask_token",
    "stdlib_files",
]
