"""Tokenizers trained offline, behind one small interface.

Why one interface: a sweep saves its tokenizer once and every run reloads the
same one, whatever library trained it. Kinds:

``"byte"``
    ids 0..255 are the UTF-8 byte values; the special tokens follow from 256 in
    the style's order (GPT: ``<pad>``=256, ``<unk>``=257, ``<s>``=258,
    ``</s>``=259; BERT: ``[PAD]``=256, ``[UNK]``=257, ``[CLS]``=258,
    ``[SEP]``=259, ``[MASK]``=260). Exact round-trip for any text.
``"character"``
    special tokens first (ids 0..k-1, same order), then the corpus characters
    sorted by code point. Exact round-trip for text made of seen characters;
    an unseen character becomes unk. ``vocab_size`` below the natural size
    keeps the most frequent characters.
``"bpe"``
    byte-level BPE (Hugging Face ``tokenizers``): special tokens first, then
    the 256 byte symbols, then merges. Exact round-trip for any text.
``"wordpiece"``
    BERT-style WordPiece (``tokenizers``): the BERT normaliser keeps case and
    accents but turns control characters, tabs and newlines into spaces; text
    is split on whitespace and punctuation and decode joins the pieces with
    single spaces. So ``decode(encode(t))`` equals ``t`` once all whitespace
    is removed from both, for text whose characters were seen in the same
    place (word-initial or inside a word); a word with a character never seen
    in that place becomes ``[UNK]`` as a whole. Training is not bit-for-bit
    repeatable: HF's trainer breaks merge ties in hash-map order
    (huggingface/tokenizers#1794), so train once and reuse the saved tokenizer
    (``load_corpus`` caches it; a sweep saves it).
``"sentencepiece"`` (``sp_model_type="unigram"`` or ``"bpe"``), also spelt
``"sentencepiece-unigram"`` / ``"sentencepiece-bpe"``
    trained with ``sentencepiece`` using the identity normalisation, no dummy
    prefix, whitespace kept and ``"\\n"`` as a user symbol: exact round-trip
    for text made of seen characters.

Special tokens come in two styles: ``"gpt"`` (``<pad>``, ``<unk>``, ``<s>``,
``</s>``; no mask token) and ``"bert"`` (``[PAD]``, ``[UNK]``, ``[CLS]``,
``[SEP]``, ``[MASK]``). ``encode`` never adds special tokens; callers insert
them where they want (the corpus puts eos, or else sep, between documents).
``transformers`` is never needed; ``tokenizers`` and ``sentencepiece`` are
imported only when a kind needs them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flops_fit.io import atomic_write_bytes

__all__ = [
    "SPECIAL_TOKEN_STYLES",
    "TOKENIZER_KINDS",
    "ByteTokenizer",
    "CharacterTokenizer",
    "HFTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "build_tokenizer",
    "load_tokenizer",
    "require_mask_token",
]

TOKENIZER_KINDS: tuple[str, ...] = (
    "byte",
    "character",
    "bpe",
    "wordpiece",
    "sentencepiece",
    "sentencepiece-unigram",
    "sentencepiece-bpe",
)

#: role -> token text, in id order (roles absent from a style have id None).
SPECIAL_TOKEN_STYLES: dict[str, dict[str, str]] = {
    "gpt": {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>"},
    "bert": {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
}

_ROLES = ("pad", "unk", "bos", "eos", "mask", "cls", "sep")
_META_FILE = "flops_fit_tokenizer.json"
_SCHEMA = 1


class Tokenizer(ABC):
    """Common interface: encode/decode, vocabulary size, special-token ids, save."""

    kind: str
    special_tokens: dict[str, str]

    # ---- to implement -------------------------------------------------
    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids (the embedding table size a model needs)."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; never adds special tokens."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; special tokens are skipped."""

    @abstractmethod
    def token_to_id(self, token: str) -> int | None:
        """Id of a vocabulary entry, None when absent."""

    @abstractmethod
    def _backend_files(self) -> dict[str, bytes]:
        """File name -> content that fully describes the trained model."""

    def _meta_extra(self) -> dict[str, Any]:
        return {}

    # ---- shared -------------------------------------------------------
    def encode_array(self, text: str) -> np.ndarray:
        """Ids of ``text`` as an int64 array (fast path for big corpora)."""
        return np.asarray(self.encode(text), dtype=np.int64)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def encode_arrays(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One int64 id array per text; the corpus tokeniser calls this on batches of documents."""
        return [np.asarray(ids, dtype=np.int64) for ids in self.encode_batch(texts)]

    def _special_id(self, role: str) -> int | None:
        token = self.special_tokens.get(role)
        return None if token is None else self.token_to_id(token)

    @property
    def pad_id(self) -> int | None:
        return self._special_id("pad")

    @property
    def unk_id(self) -> int | None:
        return self._special_id("unk")

    @property
    def bos_id(self) -> int | None:
        return self._special_id("bos")

    @property
    def eos_id(self) -> int | None:
        return self._special_id("eos")

    @property
    def mask_id(self) -> int | None:
        return self._special_id("mask")

    @property
    def cls_id(self) -> int | None:
        return self._special_id("cls")

    @property
    def sep_id(self) -> int | None:
        return self._special_id("sep")

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids of every special token (never masked, never sampled as random tokens)."""
        ids = (self._special_id(r) for r in self.special_tokens)
        return frozenset(i for i in ids if i is not None)

    def _meta(self) -> dict[str, Any]:
        return {
            "schema": _SCHEMA,
            "kind": self.kind,
            "vocab_size": self.vocab_size,
            # a list of [role, token] pairs: the order sets the ids, and JSON objects get key-sorted
            "special_tokens": [[role, tok] for role, tok in self.special_tokens.items()],
            **self._meta_extra(),
        }

    def fingerprint(self) -> str:
        """sha256 of everything that decides the ids; keys the token caches."""
        h = hashlib.sha256(json.dumps(self._meta(), sort_keys=True).encode())
        for name, content in sorted(self._backend_files().items()):
            h.update(name.encode())
            h.update(hashlib.sha256(content).digest())
        return h.hexdigest()

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the tokenizer to ``directory`` (created); reload with :func:`load_tokenizer`."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        files = self._backend_files()
        for name, content in files.items():
            atomic_write_bytes(out / name, content)
        meta = {**self._meta(), "files": sorted(files)}
        atomic_write_bytes(out / _META_FILE, json.dumps(meta, indent=2, sort_keys=True).encode())
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, vocab_size={self.vocab_size})"


# ---------------------------------------------------------------------------
# byte
# ---------------------------------------------------------------------------
class ByteTokenizer(Tokenizer):
    """UTF-8 bytes 0..255, special tokens from 256 on."""

    kind = "byte"

    def __init__(self, special_tokens: dict[str, str]):
        self.special_tokens = dict(special_tokens)
        self._special_to_id = {tok: 256 + i for i, tok in enumerate(self.special_tokens.values())}

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.special_tokens)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_array(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def encode_arrays(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self.encode_array(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")

    def token_to_id(self, token: str) -> int | None:
        return self._special_to_id.get(token)

    def _backend_files(self) -> dict[str, bytes]:
        return {}


# ---------------------------------------------------------------------------
# character
# ---------------------------------------------------------------------------
class CharacterTokenizer(Tokenizer):
    """Special tokens first, then characters sorted by code point."""

    kind = "character"

    def __init__(self, special_tokens: dict[str, str], characters: Sequence[str]):
        self.special_tokens = dict(special_tokens)
        self.characters = sorted(set(characters))
        k = len(self.special_tokens)
        self._special_to_id = {tok: i for i, tok in enumerate(self.special_tokens.values())}
        self._char_to_id = {c: k + i for i, c in enumerate(self.characters)}
        self._codepoints = np.array([ord(c) for c in self.characters], dtype=np.int64)
        self._unk = self._special_to_id[self.special_tokens["unk"]]

    @property
    def vocab_size(self) -> int:
        return len(self.special_tokens) + len(self.characters)

    def encode(self, text: str) -> list[int]:
        get = self._char_to_id.get
        return [get(c, self._unk) for c in text]

    def encode_array(self, text: str) -> np.ndarray:
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        if len(self._codepoints) == 0:
            return np.full(len(cps), self._unk, dtype=np.int64)
        pos = np.searchsorted(self._codepoints, cps)
        pos_c = np.minimum(pos, len(self._codepoints) - 1)
        found = self._codepoints[pos_c] == cps
        return np.where(found, pos_c + len(self.special_tokens), self._unk).astype(np.int64)

    def encode_arrays(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self.encode_array(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        k = len(self.special_tokens)
        n = len(self.characters)
        return "".join(self.characters[int(i) - k] for i in ids if k <= int(i) < k + n)

    def token_to_id(self, token: str) -> int | None:
        if token in self._special_to_id:
            return self._special_to_id[token]
        return self._char_to_id.get(token)

    def _backend_files(self) -> dict[str, bytes]:
        return {"characters.json": json.dumps(self.characters, ensure_ascii=True).encode()}


# ---------------------------------------------------------------------------
# Hugging Face tokenizers (byte-level BPE, WordPiece)
# ---------------------------------------------------------------------------
class HFTokenizer(Tokenizer):
    """Wraps a ``tokenizers.Tokenizer`` (kinds "bpe" and "wordpiece")."""

    def __init__(self, kind: str, special_tokens: dict[str, str], backend: Any):
        self.kind = kind
        self.special_tokens = dict(special_tokens)
        self.backend = backend

    @property
    def vocab_size(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        return list(self.backend.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(e.ids) for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def _backend_files(self) -> dict[str, bytes]:
        return {"tokenizer.json": self.backend.to_str().encode()}


# ---------------------------------------------------------------------------
# sentencepiece (unigram, BPE)
# ---------------------------------------------------------------------------
class SentencePieceTokenizer(Tokenizer):
    """Wraps a ``sentencepiece`` model (kinds "sentencepiece-unigram" / "-bpe")."""

    def __init__(self, kind: str, special_tokens: dict[str, str], model_proto: bytes):
        import sentencepiece as spm

        self.kind = kind
        self.special_tokens = dict(special_tokens)
        self.model_proto = bytes(model_proto)
        self.backend = spm.SentencePieceProcessor(model_proto=self.model_proto)

    @property
    def vocab_size(self) -> int:
        return int(self.backend.get_piece_size())

    def encode(self, text: str) -> list[int]:
        return list(self.backend.encode(text))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(x) for x in self.backend.encode(list(texts))]

    def decode(self, ids: Sequence[int]) -> str:
        special = self.special_ids
        return self.backend.decode([int(i) for i in ids if int(i) not in special])

    def token_to_id(self, token: str) -> int | None:
        i = self.backend.piece_to_id(token)
        if self.backend.id_to_piece(i) != token:  # piece_to_id answers unk for unknown pieces
            return None
        return int(i)

    def _backend_files(self) -> dict[str, bytes]:
        return {"spm.model": self.model_proto}


# ---------------------------------------------------------------------------
# building and loading
# ---------------------------------------------------------------------------
def _normalise_kind(kind: str, sp_model_type: str | None) -> str:
    if not isinstance(kind, str) or kind not in TOKENIZER_KINDS:
        raise ValueError(f"kind: expected one of {list(TOKENIZER_KINDS)}, found {kind!r}")
    if kind == "sentencepiece":
        mt = sp_model_type or "unigram"
        if mt not in ("unigram", "bpe"):
            raise ValueError(f"sp_model_type: expected 'unigram' or 'bpe', found {sp_model_type!r}")
        return f"sentencepiece-{mt}"
    if sp_model_type is not None and not kind.startswith("sentencepiece"):
        raise ValueError(f"sp_model_type: only used with kind='sentencepiece', found kind={kind!r}")
    if sp_model_type is not None and kind != f"sentencepiece-{sp_model_type}":
        raise ValueError(f"sp_model_type: {sp_model_type!r} contradicts kind={kind!r}")
    return kind


def _special_style(special_tokens: str | dict[str, str]) -> dict[str, str]:
    if isinstance(special_tokens, str):
        if special_tokens not in SPECIAL_TOKEN_STYLES:
            raise ValueError(
                f"special_tokens: expected one of {list(SPECIAL_TOKEN_STYLES)} or a dict role->token, "
                f"found {special_tokens!r}"
            )
        return dict(SPECIAL_TOKEN_STYLES[special_tokens])
    if isinstance(special_tokens, dict):
        bad = [r for r in special_tokens if r not in _ROLES]
        if bad or "unk" not in special_tokens or "pad" not in special_tokens:
            raise ValueError(
                f"special_tokens: expected a dict with roles from {list(_ROLES)} including 'pad' and 'unk', "
                f"found {special_tokens!r}"
            )
        return dict(special_tokens)
    raise TypeError(f"special_tokens: expected 'gpt', 'bert' or a dict, found {type(special_tokens).__name__}")


def _corpus_texts(corpus: Any) -> list[str]:
    """Training text from a TextCorpus or an iterable of strings (documents)."""
    texts = getattr(corpus, "texts", None)
    if texts is not None:
        texts = list(texts)
    elif isinstance(corpus, (str, bytes)):
        raise TypeError(
            "corpus: expected a TextCorpus or a list of text documents, found a single "
            f"{type(corpus).__name__}; use TextCorpus.from_paths(path) for files or [text] for one document"
        )
    elif isinstance(corpus, Iterable):
        texts = list(corpus)
        bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
        if bad:
            raise TypeError(f"corpus: expected documents of type str, found {bad[0]}")
    else:
        raise TypeError(f"corpus: expected a TextCorpus or a list of str, found {type(corpus).__name__}")
    if sum(len(t) for t in texts) == 0:
        raise ValueError(f"corpus: expected non-empty text to train a tokenizer, found {len(texts)} empty documents")
    return texts


def _too_large(kind: str, requested: int, supported: int) -> ValueError:
    return ValueError(
        f"vocab_size: expected at most {supported} for a {kind!r} tokenizer on this corpus "
        f"(the corpus supports no more), found {requested}"
    )


def _check_vocab_size(vocab_size: Any, minimum: int, kind: str) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
        raise TypeError(f"vocab_size: expected an int for kind {kind!r}, found {vocab_size!r}")
    if vocab_size < minimum:
        raise ValueError(f"vocab_size: expected at least {minimum} for kind {kind!r}, found {vocab_size}")
    return int(vocab_size)


def _lines_for_training(texts: list[str], chunk: int = 1 << 14) -> Iterator[str]:
    for t in texts:
        for i in range(0, len(t), chunk):
            yield t[i : i + chunk]


def build_tokenizer(
    kind: str,
    vocab_size: int | None,
    corpus: Any,
    *,
    special_tokens: str | dict[str, str] = "gpt",
    sp_model_type: str | None = None,
    min_frequency: int = 2,
    seed: int = 0,
) -> Tokenizer:
    """Train a tokenizer of ``kind`` on ``corpus`` (TextCorpus or list of documents), offline.

    ``vocab_size`` is required for the trained kinds; for ``"byte"`` it must be None or
    256 + number of special tokens; for ``"character"`` None means every corpus character.
    ``min_frequency`` applies to the HF trainers (pairs seen fewer times are not merged).
    A requested vocabulary the corpus cannot fill raises ValueError naming the maximum.
    """
    kind = _normalise_kind(kind, sp_model_type)
    specials = _special_style(special_tokens)
    if kind == "byte":
        natural = 256 + len(specials)
        if vocab_size is not None and vocab_size != natural:
            raise ValueError(
                f"vocab_size: expected None or {natural} for kind 'byte' (256 bytes + {len(specials)} special "
                f"tokens), found {vocab_size!r}"
            )
        return ByteTokenizer(specials)
    texts = _corpus_texts(corpus)
    if kind == "character":
        return _train_character(texts, vocab_size, specials)
    if vocab_size is None:
        raise TypeError(f"vocab_size: expected an int for kind {kind!r}, found None")
    if kind in ("bpe", "wordpiece"):
        return _train_hf(kind, texts, vocab_size, specials, min_frequency)
    return _train_sentencepiece(kind, texts, vocab_size, specials, seed)


def _train_character(texts: list[str], vocab_size: int | None, specials: dict[str, str]) -> Tokenizer:
    """Every corpus character (vocab_size None), else the most frequent ones."""
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(t)
    counts = Counter({c: n for c, n in counts.items() if c not in set(specials.values())})
    natural = len(specials) + len(counts)
    if vocab_size is None:
        return CharacterTokenizer(specials, list(counts))
    vs = _check_vocab_size(vocab_size, len(specials) + 1, "character")
    if vs > natural:
        raise _too_large("character", vs, natural)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], ord(kv[0])))
    return CharacterTokenizer(specials, [c for c, _ in ranked[: vs - len(specials)]])


def _train_hf(kind: str, texts: list[str], vocab_size: int, specials: dict[str, str],
              min_frequency: int) -> Tokenizer:
    """Byte-level BPE or WordPiece with Hugging Face ``tokenizers``' trainers."""
    from tokenizers import Tokenizer as HFBackend
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

    tokens = list(specials.values())
    if kind == "bpe":
        vs = _check_vocab_size(vocab_size, 256 + len(specials), "bpe (256 byte symbols + special tokens)")
        backend = HFBackend(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vs, min_frequency=min_frequency, special_tokens=tokens,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    else:
        vs = _check_vocab_size(vocab_size, len(specials) + 1, kind)
        backend = HFBackend(models.WordPiece(unk_token=specials["unk"]))
        backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                        strip_accents=False, lowercase=False)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
        trainer = trainers.WordPieceTrainer(vocab_size=vs, min_frequency=min_frequency, special_tokens=tokens,
                                            show_progress=False)
    backend.train_from_iterator(_lines_for_training(texts), trainer=trainer)
    tok = HFTokenizer(kind, specials, backend)
    if tok.vocab_size < vs:
        raise _too_large(kind, vs, tok.vocab_size)
    return tok


def _train_sentencepiece(kind: str, texts: list[str], vocab_size: int, specials: dict[str, str],
                         seed: int) -> Tokenizer:
    """Unigram or BPE with sentencepiece, in memory, special tokens at the ids of their roles."""
    vs = _check_vocab_size(vocab_size, len(specials) + 2, kind)
    import sentencepiece as spm

    ids: dict[str, Any] = {"pad_id": -1, "unk_id": -1, "bos_id": -1, "eos_id": -1}
    pieces: dict[str, str] = {}
    control: list[str] = []
    for i, (role, token) in enumerate(specials.items()):
        if role in ("pad", "unk", "bos", "eos"):
            ids[f"{role}_id"] = i
            pieces[f"{role}_piece"] = token
        else:
            control.append(token)
    # sentencepiece places control symbols right after the fixed ids; keep our role order.
    if not all(r in ("pad", "unk", "bos", "eos") for r in list(specials)[: len(specials) - len(control)]):
        raise ValueError(
            f"special_tokens: for sentencepiece the roles pad/unk/bos/eos must come before the others, "
            f"found order {list(specials)}"
        )
    writer = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_lines_for_training(texts, chunk=2048), model_writer=writer, vocab_size=vs,
            model_type=kind.split("-", 1)[1], normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=False, allow_whitespace_only_pieces=True, character_coverage=1.0,
            user_defined_symbols=["\n", "\t"], control_symbols=control, max_sentence_length=1 << 16,
            input_sentence_size=0, num_threads=1, minloglevel=2, **ids, **pieces,
        )
    except RuntimeError as exc:
        m = re.search(r"value <= (\d+)", str(exc))
        if m:
            raise _too_large(kind, vs, int(m.group(1))) from None
        raise ValueError(f"corpus: sentencepiece could not train a {kind!r} tokenizer: {exc}") from exc
    return SentencePieceTokenizer(kind, specials, writer.getvalue())


def load_tokenizer(directory: str | os.PathLike[str]) -> Tokenizer:
    """Reload a tokenizer written by :meth:`Tokenizer.save`."""
    d = Path(directory)
    meta_path = d / _META_FILE
    if not meta_path.is_file():
        raise ValueError(f"directory: expected a saved tokenizer with {_META_FILE}, found none in {d}")
    from flops_fit.io import read_json

    meta = read_json(meta_path)  # a corrupt file is an error naming it
    if not isinstance(meta, dict) or meta.get("schema") != _SCHEMA:
        found = meta.get("schema") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{meta_path}: field 'schema': expected {_SCHEMA}, found {found!r}")
    kind = meta.get("kind")
    try:
        specials = {str(r): str(t) for r, t in meta["special_tokens"]}
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"{meta_path}: field 'special_tokens': expected a list of [role, token] pairs, "
            f"found {meta.get('special_tokens')!r}"
        ) from None
    if kind == "byte":
        tok: Tokenizer = ByteTokenizer(specials)
    elif kind == "character":
        tok = CharacterTokenizer(specials, json.loads((d / "characters.json").read_text()))
    elif kind in ("bpe", "wordpiece"):
        from tokenizers import Tokenizer as HFBackend

        tok = HFTokenizer(kind, specials, HFBackend.from_file(str(d / "tokenizer.json")))
    elif kind in ("sentencepiece-unigram", "sentencepiece-bpe"):
        tok = SentencePieceTokenizer(kind, specials, (d / "spm.model").read_bytes())
    else:
        raise ValueError(f"{meta_path}: field 'kind': expected one of {list(TOKENIZER_KINDS)}, found {kind!r}")
    if tok.vocab_size != meta.get("vocab_size"):
        raise ValueError(
            f"{meta_path}: field 'vocab_size': file says {meta.get('vocab_size')}, loaded model has {tok.vocab_size}"
        )
    return tok


def require_mask_token(tokenizer: Tokenizer) -> int:
    """Return the mask id, or raise: a masked-LM objective needs a mask token."""
    mask = tokenizer.mask_id
    if mask is None:
        raise ValueError(
            f"tokenizer: the masked_lm objective needs a mask token, found none in {tokenizer!r} "
            f"with special tokens {tokenizer.special_tokens}; build it with special_tokens='bert'"
        )
    return mask
