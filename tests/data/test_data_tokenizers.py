"""Tokenizers: every kind trains offline, round-trips unseen text, has the documented special ids."""

from __future__ import annotations

import json
import sys

import pytest

from flops_fit.data import (
    TextCorpus,
    build_tokenizer,
    load_tokenizer,
    require_mask_token,
)
from flops_fit.data.tokenizers import SPECIAL_TOKEN_STYLES

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _corpus_text import UNSEEN, make_documents

DOCS = make_documents()
VOCAB = {
    "byte": None,
    "character": None,
    "bpe": 320,
    "wordpiece": 120,
    "sentencepiece-unigram": 100,
    "sentencepiece-bpe": 120,
}
EXACT = {"byte", "character", "bpe", "sentencepiece-unigram", "sentencepiece-bpe"}

_cache: dict[tuple[str, str], object] = {}


def _tok(kind: str, style: str):
    if (kind, style) not in _cache:
        _cache[(kind, style)] = build_tokenizer(kind, VOCAB[kind], DOCS, special_tokens=style)
    return _cache[(kind, style)]


def test_unseen_text_uses_only_seen_characters():
    seen = set("".join(DOCS))
    assert set(UNSEEN) <= seen
    assert UNSEEN not in "".join(DOCS)


@pytest.mark.parametrize("style", ["gpt", "bert"])
@pytest.mark.parametrize("kind", list(VOCAB))
def test_round_trip_on_unseen_text(kind, style):
    tok = _tok(kind, style)
    ids = tok.encode(UNSEEN)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.unk_id not in ids
    decoded = tok.decode(ids)
    if kind in EXACT:
        assert decoded == UNSEEN
    else:  # WordPiece: whitespace is normalised away, pieces are re-joined with single spaces
        assert "".join(decoded.split()) == "".join(UNSEEN.split())
        assert decoded == " ".join(decoded.split())
    if kind not in ("byte", "character"):
        assert len(ids) < len(UNSEEN.encode())  # a trained vocabulary actually merges


@pytest.mark.parametrize("kind", list(VOCAB))
def test_requested_vocab_size_is_met(kind):
    tok = _tok(kind, "gpt")
    if VOCAB[kind] is not None:
        assert tok.vocab_size == VOCAB[kind]
    elif kind == "byte":
        assert tok.vocab_size == 260
    else:
        assert tok.vocab_size == 4 + len(set("".join(DOCS)))


@pytest.mark.parametrize("kind", [k for k in VOCAB if k != "byte"])
def test_special_token_ids_come_first(kind):
    gpt, bert = _tok(kind, "gpt"), _tok(kind, "bert")
    assert (gpt.pad_id, gpt.unk_id, gpt.bos_id, gpt.eos_id) == (0, 1, 2, 3)
    assert (gpt.mask_id, gpt.cls_id, gpt.sep_id) == (None, None, None)
    assert (bert.pad_id, bert.unk_id, bert.cls_id, bert.sep_id, bert.mask_id) == (0, 1, 2, 3, 4)
    assert (bert.bos_id, bert.eos_id) == (None, None)
    assert gpt.special_ids == {0, 1, 2, 3} and bert.special_ids == {0, 1, 2, 3, 4}
    # text never encodes to a special token, and decode drops them
    assert not set(bert.encode(UNSEEN)) & bert.special_ids
    assert bert.decode([bert.cls_id] + bert.encode("dog") + [bert.sep_id]).strip() == "dog"


def test_byte_ids_are_bytes_then_specials():
    gpt, bert = _tok("byte", "gpt"), _tok("byte", "bert")
    assert gpt.encode("A é") == [65, 32, 0xC3, 0xA9]
    assert (gpt.pad_id, gpt.unk_id, gpt.bos_id, gpt.eos_id) == (256, 257, 258, 259)
    assert (bert.pad_id, bert.unk_id, bert.cls_id, bert.sep_id, bert.mask_id) == (256, 257, 258, 259, 260)
    text = "any text at all: 😀 \x00 ∑"
    assert gpt.decode(gpt.encode(text)) == text


def test_character_unseen_char_becomes_unk_and_vocab_cap_keeps_frequent():
    tok = _tok("character", "gpt")
    assert tok.encode("x😀") == [tok.token_to_id("x"), tok.unk_id]
    assert list(tok.encode_array("x😀")) == tok.encode("x😀")
    small = build_tokenizer("character", 10, DOCS)
    assert small.vocab_size == 10
    assert small.token_to_id(" ") is not None  # space is the most frequent character
    assert small.token_to_id("ñ") is None


@pytest.mark.parametrize("kind", list(VOCAB))
def test_save_and_reload_give_the_same_tokenizer(kind, tmp_path):
    tok = _tok(kind, "bert")
    tok.save(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert type(again) is type(tok) and again.kind == tok.kind
    assert again.fingerprint() == tok.fingerprint()
    assert again.encode(UNSEEN) == tok.encode(UNSEEN)
    assert (again.pad_id, again.mask_id, again.sep_id) == (tok.pad_id, tok.mask_id, tok.sep_id)


def test_fingerprint_depends_on_specials_and_vocab():
    assert _tok("byte", "gpt").fingerprint() != _tok("byte", "bert").fingerprint()
    assert _tok("bpe", "gpt").fingerprint() != build_tokenizer("bpe", 300, DOCS).fingerprint()


def test_sentencepiece_kind_with_model_type_equals_alias():
    a = build_tokenizer("sentencepiece", 120, DOCS, sp_model_type="bpe")
    assert a.kind == "sentencepiece-bpe"
    assert a.fingerprint() == _tok("sentencepiece-bpe", "gpt").fingerprint()


def test_training_is_deterministic():
    # not "wordpiece": HF's WordPieceTrainer breaks merge ties in hash order
    # (huggingface/tokenizers#1794); sweeps reuse the saved/cached tokenizer instead.
    for kind in ("bpe", "sentencepiece-unigram", "sentencepiece-bpe"):
        a = build_tokenizer(kind, VOCAB[kind], DOCS)
        assert a.fingerprint() == _tok(kind, "gpt").fingerprint(), kind


def test_text_corpus_is_accepted(tmp_path):
    for i, doc in enumerate(DOCS):
        (tmp_path / f"{i:03d}.txt").write_text(doc)
    tok = build_tokenizer("bpe", 320, TextCorpus.from_paths(tmp_path))
    assert tok.fingerprint() == _tok("bpe", "gpt").fingerprint()


def test_mask_token_required_for_masked_lm():
    assert require_mask_token(_tok("wordpiece", "bert")) == 4
    with pytest.raises(ValueError, match=r"tokenizer: the masked_lm objective needs a mask token, found none"):
        require_mask_token(_tok("bpe", "gpt"))


# ---- errors ---------------------------------------------------------------
def test_unknown_kind():
    with pytest.raises(ValueError, match=r"kind: expected one of \[.*'wordpiece'.*\], found 'wordpeice'"):
        build_tokenizer("wordpeice", 100, DOCS)


def test_bad_sp_model_type():
    with pytest.raises(ValueError, match=r"sp_model_type: expected 'unigram' or 'bpe', found 'char'"):
        build_tokenizer("sentencepiece", 100, DOCS, sp_model_type="char")


def test_bad_special_style():
    with pytest.raises(ValueError, match=r"special_tokens: expected one of \['gpt', 'bert'\].*found 't5'"):
        build_tokenizer("byte", None, DOCS, special_tokens="t5")


def test_byte_vocab_size_must_match():
    with pytest.raises(ValueError, match=r"vocab_size: expected None or 260 for kind 'byte'.*found 1000"):
        build_tokenizer("byte", 1000, DOCS)


def test_trained_kind_needs_vocab_size():
    with pytest.raises(TypeError, match=r"vocab_size: expected an int for kind 'bpe', found None"):
        build_tokenizer("bpe", None, DOCS)


def test_bpe_vocab_below_byte_alphabet():
    with pytest.raises(ValueError, match=r"vocab_size: expected at least 260 .*found 100"):
        build_tokenizer("bpe", 100, DOCS)


@pytest.mark.parametrize(
    "kind,vocab",
    [("wordpiece", 5000), ("bpe", 20000), ("sentencepiece-unigram", 5000), ("sentencepiece-bpe", 5000), ("character", 500)],
)
def test_vocab_larger_than_corpus_supports(kind, vocab):
    with pytest.raises(ValueError, match=rf"vocab_size: expected at most \d+ for a '{kind}' tokenizer on this corpus.*found {vocab}"):
        build_tokenizer(kind, vocab, DOCS[:20])


def test_corpus_as_plain_string_is_rejected():
    with pytest.raises(TypeError, match=r"corpus: expected a TextCorpus or a list of text documents, found a single str"):
        build_tokenizer("bpe", 300, "some text")


def test_empty_corpus():
    with pytest.raises(ValueError, match=r"corpus: expected non-empty text to train a tokenizer, found 2 empty documents"):
        build_tokenizer("wordpiece", 100, ["", ""])


def test_load_rejects_missing_and_malformed(tmp_path):
    with pytest.raises(ValueError, match=r"directory: expected a saved tokenizer with flops_fit_tokenizer.json"):
        load_tokenizer(tmp_path)
    _tok("byte", "gpt").save(tmp_path)
    meta = json.loads((tmp_path / "flops_fit_tokenizer.json").read_text())
    meta["schema"] = 99
    (tmp_path / "flops_fit_tokenizer.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"field 'schema': expected 1, found 99"):
        load_tokenizer(tmp_path)
    (tmp_path / "flops_fit_tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"flops_fit_tokenizer.json: not valid JSON .* the file is corrupt"):
        load_tokenizer(tmp_path)


def test_styles_are_documented_tokens():
    assert list(SPECIAL_TOKEN_STYLES["gpt"].values()) == ["<pad>", "<unk>", "<s>", "</s>"]
    assert list(SPECIAL_TOKEN_STYLES["bert"].values()) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
