"""Text corpora, tokenised once into a cached memory-mapped token file.

Why a cache: tokenising is the slow part and every run of a sweep needs the
same tokens. The cache key is a sha256 over the corpus *content* (every file's
bytes, in order), the tokenizer's fingerprint (kind, specials, trained model)
and, for the built-in ``"stdlib"`` corpus, the Python version; so a changed
file or tokenizer never reuses a stale cache, while an unchanged one reuses
the file as is. Cache files are written atomically (temp file + os.replace).

Token file layout: documents (files) in order, each followed by one separator
token (the tokenizer's eos id, else its sep id, else nothing). ids are stored
as uint16 when ``vocab_size <= 65536``, else int32. The last ``val_fraction``
of the tokens is the validation split, the rest the training split.

Data set items (see :class:`TokenWindowDataset`): non-overlapping windows.
``causal_lm``: ``{"input_ids": LongTensor[seq_len], "labels": LongTensor[seq_len]}``
with ``labels[t]`` = the token after ``input_ids[t]`` (already shifted; the loss
must not shift again). ``masked_lm``: ``{"input_ids": LongTensor[seq_len]}`` only;
:class:`~flops_fit.data.collators.MaskedLMCollator` (``corpus.collator("masked_lm")``)
draws the masks and the labels per batch.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from flops_fit.data.collators import LM_OBJECTIVES, CausalLMCollator, collator_for
from flops_fit.data.tokenizers import (
    _META_FILE,
    TOKENIZER_KINDS,
    Tokenizer,
    build_tokenizer,
    load_tokenizer,
    require_mask_token,
)
from flops_fit.io import atomic_open, atomic_write_bytes

__all__ = [
    "DEFAULT_STDLIB_MAX_BYTES",
    "SPLITS",
    "STDLIB_EXCLUDED_DIRS",
    "TextCorpus",
    "TokenCorpus",
    "TokenWindowDataset",
    "default_cache_dir",
    "load_corpus",
    "stdlib_files",
]

DEFAULT_STDLIB_MAX_BYTES = 16_000_000
STDLIB_EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
SPLITS = ("train", "validation")
_SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "valid": "validation"}
_CACHE_SCHEMA = 1
_GLOB_CHARS = set("*?[")


def default_cache_dir() -> Path:
    """``$FLOPS_FIT_CACHE`` if set, else ``~/.cache/flops_fit``."""
    env = os.environ.get("FLOPS_FIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "flops_fit"


# ---------------------------------------------------------------------------
# raw text
# ---------------------------------------------------------------------------
def _read_text_file(path: Path, argument: str) -> str:
    data = path.read_bytes()
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ValueError(f"{argument}: expected text files, found binary file {path} (NUL byte at offset {nul})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{argument}: expected UTF-8 text files, found {path} that is not UTF-8 "
            f"(byte {data[exc.start]:#04x} at offset {exc.start})"
        ) from None


def _expand_paths(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], argument: str = "paths"
) -> list[Path]:
    """Files named by paths, folders (recursive, hidden entries skipped) and globs; order kept, sorted within each."""
    if isinstance(paths, (str, os.PathLike)):
        entries: list[Any] = [paths]
    elif isinstance(paths, Iterable):
        entries = list(paths)
    else:
        raise TypeError(f"{argument}: expected a path, folder, glob or a list of them, found {type(paths).__name__}")
    if not entries:
        raise ValueError(f"{argument}: expected at least one path, folder or glob, found an empty list")
    files: list[Path] = []
    for entry in entries:
        if not isinstance(entry, (str, os.PathLike)):
            raise TypeError(f"{argument}: expected str or os.PathLike entries, found {type(entry).__name__}")
        text = os.fspath(entry)
        p = Path(text).expanduser()
        if p.is_file():
            found = [p]
        elif p.is_dir():
            found = sorted(
                (f for f in p.rglob("*") if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)),
                key=lambda f: f.relative_to(p).as_posix(),
            )
            if not found:
                raise ValueError(f"{argument}: expected text files in folder {p}, found an empty folder")
        elif _GLOB_CHARS & set(text):
            found = [Path(f) for f in sorted(glob.glob(os.path.expanduser(text), recursive=True)) if Path(f).is_file()]
            if not found:
                raise ValueError(f"{argument}: expected the glob {text!r} to match files, found no match")
        else:
            raise ValueError(
                f"{argument}: expected 'stdlib' or an existing file, folder or glob, found {text!r} (does not exist)"
                if argument == "name_or_paths"
                else f"{argument}: expected an existing file, folder or glob, found {text!r} (does not exist)"
            )
        files.extend(found)
    seen: set[Path] = set()
    unique = []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(f)
    return unique


def _check_max_bytes(max_bytes: Any) -> int | None:
    if max_bytes is None:
        return None
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes <= 0:
        raise ValueError(f"max_bytes: expected a positive int or None, found {max_bytes!r}")
    return int(max_bytes)


def stdlib_files(max_bytes: int | None = DEFAULT_STDLIB_MAX_BYTES) -> list[Path]:
    """The running Python's standard-library ``.py`` files, sorted by relative path.

    Skips site-packages and test folders (:data:`STDLIB_EXCLUDED_DIRS`) and files that
    are not UTF-8 text; stops before the first file that would exceed ``max_bytes``
    (so a smaller cap always gives a prefix of a larger one).
    """
    max_bytes = _check_max_bytes(max_bytes)
    root = Path(sysconfig.get_paths()["stdlib"])
    candidates: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in STDLIB_EXCLUDED_DIRS and not d.startswith(".")]
        candidates.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    candidates.sort(key=lambda f: f.relative_to(root).as_posix())
    chosen, total = [], 0
    for f in candidates:
        size = f.stat().st_size
        if max_bytes is not None and total + size > max_bytes:
            break
        chosen.append(f)
        total += size
    return chosen


@dataclass(frozen=True)
class TextCorpus:
    """Documents (one per file) in a fixed order, plus a content fingerprint."""

    texts: tuple[str, ...]
    sources: tuple[str, ...]
    name: str = "texts"
    key_extra: str = ""  # mixed into the fingerprint (the stdlib corpus puts the Python version here)
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.sources):
            raise ValueError(f"sources: expected one per text ({len(self.texts)}), found {len(self.sources)}")
        h = hashlib.sha256(self.key_extra.encode())
        for t in self.texts:
            b = t.encode("utf-8")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
        object.__setattr__(self, "fingerprint", h.hexdigest())

    @property
    def n_chars(self) -> int:
        return sum(len(t) for t in self.texts)

    @classmethod
    def from_paths(
        cls,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        max_bytes: int | None = None,
        _argument: str = "paths",
    ) -> TextCorpus:
        """Read UTF-8 text files named by paths, folders (recursive) or globs.

        Stops before the first file that would exceed ``max_bytes`` (None: no cap). A binary
        or non-UTF-8 file raises ValueError naming it.
        """
        max_bytes = _check_max_bytes(max_bytes)
        files = _expand_paths(paths, _argument)
        texts, sources, total = [], [], 0
        for f in files:
            size = f.stat().st_size
            if max_bytes is not None and total + size > max_bytes:
                if not texts:
                    raise ValueError(
                        f"max_bytes: expected at least the size of the first file {f} ({size} bytes), found {max_bytes}"
                    )
                break
            texts.append(_read_text_file(f, _argument))
            sources.append(str(f))
            total += size
        name = os.fspath(paths) if isinstance(paths, (str, os.PathLike)) else f"{len(files)} paths"
        corpus = cls(tuple(texts), tuple(sources), name=name)
        corpus._require_text(_argument)
        return corpus

    @classmethod
    def stdlib(cls, max_bytes: int | None = DEFAULT_STDLIB_MAX_BYTES) -> TextCorpus:
        """The built-in corpus: this Python's standard-library source (see :func:`stdlib_files`)."""
        texts, sources = [], []
        root = Path(sysconfig.get_paths()["stdlib"])
        for f in stdlib_files(max_bytes):
            try:
                texts.append(_read_text_file(f, "stdlib"))
            except ValueError:
                continue  # a non-UTF-8 or binary stdlib file is skipped, not fatal
            sources.append(f.relative_to(root).as_posix())
        corpus = cls(tuple(texts), tuple(sources), name="stdlib", key_extra=f"stdlib python {sys.version}")
        corpus._require_text("max_bytes")
        return corpus

    def _require_text(self, argument: str) -> None:
        if self.n_chars == 0:
            raise ValueError(
                f"{argument}: expected a non-empty corpus, found {len(self.texts)} document(s) with 0 characters"
            )


# ---------------------------------------------------------------------------
# windows
# ---------------------------------------------------------------------------
class TokenWindowDataset(Dataset):
    """Map-style data set of non-overlapping ``seq_len`` windows over a 1-D token array.

    ``causal_lm`` items are ``{"input_ids", "labels"}`` with labels shifted by one (window i
    reads tokens ``[i*seq_len, (i+1)*seq_len + 1)``); ``masked_lm`` items are ``{"input_ids"}``.
    Pickles without copying the tokens when they come from a token file (spawned workers).
    """

    def __init__(
        self,
        tokens: np.ndarray,
        seq_len: int,
        objective: str = "causal_lm",
        *,
        split: str = "tokens",
        _file: tuple[str, str, int, int] | None = None,
    ):
        if objective not in LM_OBJECTIVES:
            raise ValueError(f"objective: expected one of {list(LM_OBJECTIVES)}, found {objective!r}")
        if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
            raise ValueError(f"seq_len: expected a positive int, found {seq_len!r}")
        n = len(tokens)
        causal = objective == "causal_lm"
        longest = n - 1 if causal else n
        if seq_len > longest:
            raise ValueError(
                f"seq_len: expected at most {max(longest, 0)} for the {split} split ({n} tokens"
                f"{', one more is needed for the shifted labels' if causal else ''}), found {seq_len}"
            )
        self.seq_len = int(seq_len)
        self.objective = objective
        self.split = split
        self.n_tokens = n
        self._causal = causal
        self._tokens: np.ndarray | None = tokens
        self._file = _file  # (path, dtype, start, stop) to reopen the memmap after pickling

    @property
    def tokens(self) -> np.ndarray:
        if self._tokens is None:
            assert self._file is not None
            path, dtype, start, stop = self._file
            self._tokens = np.memmap(path, dtype=np.dtype(dtype), mode="r")[start:stop]
        return self._tokens

    def __len__(self) -> int:
        return (self.n_tokens - 1) // self.seq_len if self._causal else self.n_tokens // self.seq_len

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index: expected 0 <= index < {n}, found {index}")
        start = index * self.seq_len
        if self._causal:
            w = torch.from_numpy(np.asarray(self.tokens[start : start + self.seq_len + 1], dtype=np.int64))
            return {"input_ids": w[:-1], "labels": w[1:]}
        w = torch.from_numpy(np.asarray(self.tokens[start : start + self.seq_len], dtype=np.int64))
        return {"input_ids": w}

    def _flops_fit_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """The collated batch of these items in one gather (what default_collate of the items gives, bit for
        bit, without a Python call per item): the trainer's fast path for small models."""
        idx = np.asarray(indices, dtype=np.int64)
        n = len(self)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"index: expected 0 <= index < {n}, found {int(idx.min() if idx.min() < 0 else idx.max())}")
        width = self.seq_len + 1 if self._causal else self.seq_len
        w = torch.from_numpy(np.asarray(self.tokens[(idx * self.seq_len)[:, None] + np.arange(width)], dtype=np.int64))
        if self._causal:
            return {"input_ids": w[:, :-1].contiguous(), "labels": w[:, 1:].contiguous()}
        return {"input_ids": w}

    @property
    def tokens_per_item(self) -> int:
        """Tokens one item trains on (for token-budget accounting)."""
        return self.seq_len

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._file is not None:
            state["_tokens"] = None
        return state


# ---------------------------------------------------------------------------
# tokenised corpus
# ---------------------------------------------------------------------------
@dataclass
class TokenCorpus:
    """A tokenised corpus: memory-mapped token file split into train and validation."""

    name: str
    tokenizer: Tokenizer
    token_path: Path
    dtype: np.dtype
    n_tokens: int
    val_fraction: float
    n_documents: int
    from_cache: bool  # True when an existing token file was reused
    tokens: np.ndarray = field(repr=False)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def n_val_tokens(self) -> int:
        if self.val_fraction == 0:
            return 0
        return min(self.n_tokens, max(1, round(self.n_tokens * self.val_fraction)))

    @property
    def n_train_tokens(self) -> int:
        return self.n_tokens - self.n_val_tokens

    @property
    def train_tokens(self) -> np.ndarray:
        return self.tokens[: self.n_train_tokens]

    @property
    def val_tokens(self) -> np.ndarray:
        return self.tokens[self.n_train_tokens :]

    def dataset(self, split: str, seq_len: int, objective: str = "causal_lm") -> TokenWindowDataset:
        """Non-overlapping windows of ``split`` ("train" or "validation"); see the module doc for items."""
        if split not in _SPLIT_ALIASES:
            raise ValueError(f"split: expected one of {list(SPLITS)}, found {split!r}")
        split = _SPLIT_ALIASES[split]
        if objective == "masked_lm":
            require_mask_token(self.tokenizer)
        start, stop = (0, self.n_train_tokens) if split == "train" else (self.n_train_tokens, self.n_tokens)
        return TokenWindowDataset(
            self.tokens[start:stop],
            seq_len,
            objective,
            split=split,
            _file=(str(self.token_path), self.dtype.str, start, stop),
        )

    def collator(self, objective: str = "causal_lm", *, mlm_probability: float = 0.15, seed: int = 0):
        """collate_fn for a DataLoader over :meth:`dataset` items of ``objective``.

        causal_lm: a :class:`CausalLMCollator` that keeps the already-shifted labels and adds
        ``attention_mask`` (the default collate would also work); masked_lm: a seeded
        :class:`MaskedLMCollator`.
        """
        if objective == "causal_lm":
            pad = self.tokenizer.pad_id
            return CausalLMCollator(0 if pad is None else pad)
        return collator_for(objective, self.tokenizer, mlm_probability=mlm_probability, seed=seed)


def _token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


def _separator(tokenizer: Tokenizer) -> int | None:
    return tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.sep_id


def tokenize_to_cache(text: TextCorpus, tokenizer: Tokenizer, cache_dir: Path) -> tuple[Path, dict[str, Any], bool]:
    """Token file for (text, tokenizer) under ``cache_dir/tokens``; built once, then reused.

    Returns (token file path, its metadata, whether it was reused).
    """
    sep = _separator(tokenizer)
    key_src = {
        "schema": _CACHE_SCHEMA,
        "corpus": text.fingerprint,
        "tokenizer": tokenizer.fingerprint(),
        "separator": sep,
    }
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:32]
    folder = cache_dir / "tokens"
    folder.mkdir(parents=True, exist_ok=True)
    bin_path, meta_path = folder / f"{key}.bin", folder / f"{key}.json"
    dtype = _token_dtype(tokenizer.vocab_size)
    if meta_path.is_file() and bin_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if (
                meta.get("key") == key
                and meta.get("dtype") == dtype.str
                and bin_path.stat().st_size == meta["n_tokens"] * dtype.itemsize
            ):
                return bin_path, meta, True
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # a damaged cache entry is rebuilt below

    sep_arr = np.array([] if sep is None else [sep], dtype=np.int64)
    n_tokens = 0
    with atomic_open(bin_path, "wb") as fh:
        batch = 256
        for i in range(0, len(text.texts), batch):
            for ids in tokenizer.encode_arrays(text.texts[i : i + batch]):
                arr = np.concatenate([ids, sep_arr]).astype(dtype)
                arr.tofile(fh)
                n_tokens += len(arr)
    meta = {
        "schema": _CACHE_SCHEMA,
        "key": key,
        "key_source": key_src,
        "corpus_name": text.name,
        "n_documents": len(text.texts),
        "n_tokens": n_tokens,
        "dtype": dtype.str,
        "tokenizer_kind": tokenizer.kind,
        "vocab_size": tokenizer.vocab_size,
        "python": sys.version if text.name == "stdlib" else None,
    }
    atomic_write_bytes(meta_path, json.dumps(meta, indent=2, sort_keys=True).encode())
    return bin_path, meta, False


def _resolve_tokenizer(
    tokenizer: Any, text: TextCorpus, cache_dir: Path, vocab_size: int | None, special_tokens: Any
) -> Tokenizer:
    if isinstance(tokenizer, Tokenizer):
        if vocab_size is not None and vocab_size != tokenizer.vocab_size:
            raise ValueError(
                f"vocab_size: expected None or the given tokenizer's {tokenizer.vocab_size}, found {vocab_size!r}"
            )
        return tokenizer
    if not isinstance(tokenizer, str):
        raise TypeError(f"tokenizer: expected a kind name or a Tokenizer, found {type(tokenizer).__name__}")
    if tokenizer not in TOKENIZER_KINDS:
        raise ValueError(f"tokenizer: expected a Tokenizer or one of {list(TOKENIZER_KINDS)}, found {tokenizer!r}")
    if tokenizer == "byte":
        return build_tokenizer("byte", vocab_size, None, special_tokens=special_tokens)
    # A trained tokenizer is cached too, so every run of a sweep gets the very same one.
    key_src = {"corpus": text.fingerprint, "kind": tokenizer, "vocab_size": vocab_size, "special": special_tokens}
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True, default=str).encode()).hexdigest()[:32]
    folder = cache_dir / "tokenizers" / key
    if (folder / _META_FILE).is_file():
        return load_tokenizer(folder)
    tok = build_tokenizer(tokenizer, vocab_size, text, special_tokens=special_tokens)
    tok.save(folder)
    return tok


def load_corpus(
    name_or_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    tokenizer: str | Tokenizer = "byte",
    val_fraction: float = 0.05,
    cache_dir: str | os.PathLike[str] | None = None,
    max_bytes: int | None = None,
    vocab_size: int | None = None,
    special_tokens: str | dict[str, str] = "gpt",
) -> TokenCorpus:
    """Load and tokenise a corpus (cached): ``"stdlib"`` or a path/folder/glob (or a list of them).

    ``tokenizer``: a built :class:`Tokenizer`, or a kind name; a trained kind is trained on this
    corpus with ``vocab_size`` and ``special_tokens`` ("gpt", or "bert" for masked LM) and cached.
    ``max_bytes`` caps the text read (stdlib default: 16 MB; paths: no cap).
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction: expected a float in [0, 1), found {val_fraction!r}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if isinstance(name_or_paths, str) and name_or_paths == "stdlib":
        text = TextCorpus.stdlib(DEFAULT_STDLIB_MAX_BYTES if max_bytes is None else max_bytes)
    elif isinstance(name_or_paths, str) and name_or_paths == "digits":
        raise ValueError(
            "name_or_paths: expected a text corpus, found 'digits' (an image data set: use load_digits_dataset)"
        )
    else:
        text = TextCorpus.from_paths(name_or_paths, max_bytes=max_bytes, _argument="name_or_paths")
    tok = _resolve_tokenizer(tokenizer, text, cache, vocab_size, special_tokens)
    path, meta, reused = tokenize_to_cache(text, tok, cache)
    dtype = np.dtype(meta["dtype"])
    n = int(meta["n_tokens"])
    tokens = np.memmap(path, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype=dtype)
    return TokenCorpus(
        name=text.name,
        tokenizer=tok,
        token_path=path,
        dtype=dtype,
        n_tokens=n,
        val_fraction=float(val_fraction),
        n_documents=len(text.texts),
        from_cache=reused,
        tokens=tokens,
    )
