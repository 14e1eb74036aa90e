"""Corpora: paths/folders/globs, the stdlib corpus, the token cache, windows and errors."""

from __future__ import annotations

import pickle
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

from flops_fit.data import (
    BUILTIN_DATASETS,
    TextCorpus,
    TokenWindowDataset,
    build_tokenizer,
    load_corpus,
    stdlib_files,
)
from flops_fit.data.corpus import STDLIB_EXCLUDED_DIRS, default_cache_dir

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _corpus_text import make_documents


@pytest.fixture
def text_dir(tmp_path: Path) -> Path:
    d = tmp_path / "texts"
    (d / "sub").mkdir(parents=True)
    for i, doc in enumerate(make_documents(30)):
        (d / ("sub" if i % 3 == 0 else ".") / f"doc{i:02d}.txt").write_text(doc)
    (d / ".hidden").mkdir()
    (d / ".hidden" / "skip.bin").write_bytes(b"\x00\x01")  # hidden entries are skipped
    return d


# ---- text corpora -----------------------------------------------------------
def test_folder_glob_and_file_lists_agree(text_dir):
    folder = TextCorpus.from_paths(text_dir)
    assert len(folder.texts) == 30
    assert folder.sources == tuple(sorted(folder.sources, key=lambda s: Path(s).relative_to(text_dir).as_posix()))
    globbed = TextCorpus.from_paths(str(text_dir / "**" / "*.txt"))
    assert sorted(globbed.sources) == sorted(folder.sources)
    listed = TextCorpus.from_paths([text_dir / "doc01.txt", str(text_dir / "sub" / "doc00.txt")])
    assert listed.texts == ((text_dir / "doc01.txt").read_text(), (text_dir / "sub" / "doc00.txt").read_text())


def test_max_bytes_caps_files(text_dir):
    full = TextCorpus.from_paths(text_dir)
    first_two = sum(len(t.encode()) for t in full.texts[:2])
    capped = TextCorpus.from_paths(text_dir, max_bytes=first_two)
    assert capped.texts == full.texts[:2]


def test_stdlib_files_are_deterministic_and_exclude_tests():
    root = Path(sysconfig.get_paths()["stdlib"])
    a = stdlib_files(max_bytes=300_000)
    b = stdlib_files(max_bytes=300_000)
    assert a == b and len(a) > 3
    rel = [f.relative_to(root).as_posix() for f in a]
    assert rel == sorted(rel)
    assert all(f.suffix == ".py" for f in a)
    assert sum(f.stat().st_size for f in a) <= 300_000
    bigger = stdlib_files(max_bytes=600_000)
    assert bigger[: len(a)] == a and len(bigger) > len(a)  # a smaller cap gives a prefix
    everything = stdlib_files(max_bytes=None)
    assert not any(set(f.relative_to(root).parts) & STDLIB_EXCLUDED_DIRS for f in everything)
    assert any(f.name == "os.py" for f in everything)


def test_stdlib_corpus_loads(tmp_path):
    corpus = load_corpus("stdlib", tokenizer="byte", cache_dir=tmp_path, max_bytes=200_000)
    assert corpus.name == "stdlib" and corpus.vocab_size == 260
    files = stdlib_files(max_bytes=200_000)
    total = sum(f.stat().st_size for f in files)
    assert corpus.n_tokens == total + len(files)  # bytes + one </s> per file
    assert corpus.train_tokens.dtype == np.uint16
    assert bytes(corpus.train_tokens[:20].astype(np.uint8)) == files[0].read_bytes()[:20]
    assert "stdlib" in BUILTIN_DATASETS and "digits" in BUILTIN_DATASETS


# ---- token file and split ------------------------------------------------------
def test_tokens_split_and_document_separators(text_dir, tmp_path):
    corpus = load_corpus(text_dir, tokenizer="byte", cache_dir=tmp_path / "c", val_fraction=0.1)
    text = TextCorpus.from_paths(text_dir)
    expected = []
    for t in text.texts:
        expected += list(t.encode()) + [corpus.tokenizer.eos_id]
    tokens = np.concatenate([corpus.train_tokens, corpus.val_tokens])
    assert tokens.tolist() == expected
    assert len(corpus.val_tokens) == round(0.1 * len(expected))
    assert isinstance(corpus.train_tokens, np.memmap)


def test_unchanged_corpus_reuses_cache_and_changed_file_invalidates_it(text_dir, tmp_path):
    cache = tmp_path / "cache"
    first = load_corpus(text_dir, tokenizer="byte", cache_dir=cache)
    assert not first.from_cache
    stat1 = first.token_path.stat()

    again = load_corpus(text_dir, tokenizer="byte", cache_dir=cache)
    assert again.from_cache and again.token_path == first.token_path
    stat2 = again.token_path.stat()
    assert (stat2.st_ino, stat2.st_mtime_ns) == (stat1.st_ino, stat1.st_mtime_ns)  # file not rewritten

    victim = text_dir / "doc01.txt"
    content = victim.read_text()
    i = next(i for i, c in enumerate(content) if c.isascii() and c.islower())
    victim.write_text(content[:i] + content[i].upper() + content[i + 1 :])  # same size, new content
    changed = load_corpus(text_dir, tokenizer="byte", cache_dir=cache)
    assert not changed.from_cache and changed.token_path != first.token_path
    assert changed.n_tokens == first.n_tokens
    assert not np.array_equal(np.asarray(changed.train_tokens), np.asarray(first.train_tokens))
    assert sorted(p.name for p in (cache / "tokens").iterdir()) == sorted(
        [first.token_path.name, first.token_path.with_suffix(".json").name,
         changed.token_path.name, changed.token_path.with_suffix(".json").name]
    )  # no temp files left behind


def test_changed_tokenizer_uses_another_cache(text_dir, tmp_path):
    gpt = load_corpus(text_dir, tokenizer="byte", cache_dir=tmp_path)
    bert = load_corpus(text_dir, tokenizer=build_tokenizer("byte", None, None, special_tokens="bert"), cache_dir=tmp_path)
    char = load_corpus(text_dir, tokenizer="character", cache_dir=tmp_path)
    assert len({gpt.token_path, bert.token_path, char.token_path}) == 3
    assert bert.tokenizer.sep_id in np.asarray(bert.train_tokens)  # BERT style separates documents with [SEP]


def test_trained_tokenizer_is_cached_with_the_corpus(text_dir, tmp_path):
    a = load_corpus(text_dir, tokenizer="wordpiece", vocab_size=150, special_tokens="bert", cache_dir=tmp_path)
    b = load_corpus(text_dir, tokenizer="wordpiece", vocab_size=150, special_tokens="bert", cache_dir=tmp_path)
    assert a.tokenizer.fingerprint() == b.tokenizer.fingerprint()
    assert b.from_cache and a.vocab_size == 150
    assert len(list((tmp_path / "tokenizers").iterdir())) == 1


def test_corrupt_cache_entry_is_rebuilt(text_dir, tmp_path):
    first = load_corpus(text_dir, tokenizer="byte", cache_dir=tmp_path)
    with open(first.token_path, "r+b") as fh:
        fh.truncate(10)
    again = load_corpus(text_dir, tokenizer="byte", cache_dir=tmp_path)
    assert not again.from_cache and again.token_path.stat().st_size == 2 * first.n_tokens


def test_default_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOPS_FIT_CACHE", str(tmp_path / "ffc"))
    assert default_cache_dir() == tmp_path / "ffc"
    monkeypatch.delenv("FLOPS_FIT_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "flops_fit"


# ---- windows ------------------------------------------------------------------
def test_causal_windows_are_shifted_and_non_overlapping(text_dir, tmp_path):
    corpus = load_corpus(text_dir, tokenizer="byte", cache_dir=tmp_path)
    ds = corpus.dataset("train", 32)
    tokens = np.asarray(corpus.train_tokens, dtype=np.int64)
    assert len(ds) == (len(tokens) - 1) // 32
    for i in (0, 1, len(ds) - 1):
        item = ds[i]
        assert item["input_ids"].dtype == torch.long and item["input_ids"].shape == (32,)
        assert item["input_ids"].tolist() == tokens[i * 32 : i * 32 + 32].tolist()
        assert item["labels"].tolist() == tokens[i * 32 + 1 : i * 32 + 33].tolist()
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=corpus.collator("causal_lm"))
    batch = next(iter(loader))
    assert torch.equal(batch["labels"][:, :-1], batch["input_ids"][:, 1:])
    assert batch["attention_mask"].all()
    val = corpus.dataset("validation", 16)
    assert len(val) == (len(corpus.val_tokens) - 1) // 16


def test_masked_windows_and_collator(text_dir, tmp_path):
    corpus = load_corpus(text_dir, tokenizer="byte", special_tokens="bert", cache_dir=tmp_path)
    ds = corpus.dataset("train", 64, "masked_lm")
    assert set(ds[0]) == {"input_ids"} and len(ds) == len(corpus.train_tokens) // 64
    batch = corpus.collator("masked_lm")([ds[i] for i in range(8)])
    chosen = batch["labels"] != -100
    assert 0 < chosen.float().mean() < 0.3
    assert (batch["input_ids"][chosen] == corpus.tokenizer.mask_id).any()


def test_dataset_pickles_without_the_tokens(text_dir, tmp_path):
    corpus = load_corpus(text_dir, tokenizer="byte", cache_dir=tmp_path)
    ds = corpus.dataset("validation", 8)
    blob = pickle.dumps(ds)
    assert len(blob) < 2_000
    again = pickle.loads(blob)
    assert torch.equal(again[3]["labels"], ds[3]["labels"])


def test_window_dataset_over_a_plain_array():
    ds = TokenWindowDataset(np.arange(10), 3)
    assert len(ds) == 3 and ds[-1]["labels"].tolist() == [7, 8, 9]
    with pytest.raises(IndexError, match=r"index: expected 0 <= index < 3, found 3"):
        ds[3]


# ---- errors -------------------------------------------------------------------
def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match=r"name_or_paths: expected a non-empty corpus, found 1 document\(s\) with 0 characters"):
        load_corpus(tmp_path / "empty.txt", cache_dir=tmp_path)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match=r"name_or_paths: expected text files in folder .*nothing, found an empty folder"):
        load_corpus(tmp_path / "nothing", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"name_or_paths: expected the glob '.*\*.md' to match files, found no match"):
        load_corpus(str(tmp_path / "*.md"), cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"name_or_paths: expected 'stdlib' or an existing file, folder or glob, found '.*missing.txt'"):
        load_corpus(tmp_path / "missing.txt", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"name_or_paths: expected at least one path, folder or glob, found an empty list"):
        load_corpus([], cache_dir=tmp_path)


def test_digits_is_not_a_text_corpus(tmp_path):
    with pytest.raises(ValueError, match=r"name_or_paths: expected a text corpus, found 'digits'.*load_digits_dataset"):
        load_corpus("digits", cache_dir=tmp_path)


def test_file_that_is_not_text(tmp_path):
    (tmp_path / "a.txt").write_text("fine\n")
    (tmp_path / "b.bin").write_bytes(b"PK\x03\x04\x00\x00binary")
    with pytest.raises(ValueError, match=r"paths: expected text files, found binary file .*b.bin \(NUL byte at offset 4\)"):
        TextCorpus.from_paths(tmp_path)
    (tmp_path / "b.bin").write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match=r"paths: expected UTF-8 text files, found .*b.bin that is not UTF-8 \(byte 0xe9 at offset 3\)"):
        TextCorpus.from_paths(tmp_path)


def test_vocab_larger_than_corpus(text_dir, tmp_path):
    with pytest.raises(ValueError, match=r"vocab_size: expected at most \d+ for a 'wordpiece' tokenizer on this corpus.*found 100000"):
        load_corpus(text_dir, tokenizer="wordpiece", vocab_size=100_000, cache_dir=tmp_path)


def test_seq_len_longer_than_data(tmp_path):
    (tmp_path / "tiny.txt").write_text("x" * 99)
    corpus = load_corpus(tmp_path / "tiny.txt", cache_dir=tmp_path, val_fraction=0.1)  # 100 tokens: 90 + 10
    assert len(corpus.dataset("train", 89)) == 1
    with pytest.raises(ValueError, match=r"seq_len: expected at most 89 for the train split \(90 tokens, one more is needed"):
        corpus.dataset("train", 90)
    with pytest.raises(ValueError, match=r"seq_len: expected at most 9 for the validation split \(10 tokens"):
        corpus.dataset("validation", 64)


def test_argument_errors(text_dir, tmp_path):
    corpus = load_corpus(text_dir, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"split: expected one of \['train', 'validation'\], found 'test'"):
        corpus.dataset("test", 8)
    with pytest.raises(ValueError, match=r"objective: expected one of \['causal_lm', 'masked_lm'\], found 'mlm'"):
        corpus.dataset("train", 8, "mlm")
    with pytest.raises(ValueError, match=r"seq_len: expected a positive int, found 0"):
        corpus.dataset("train", 0)
    with pytest.raises(ValueError, match=r"tokenizer: the masked_lm objective needs a mask token"):
        corpus.dataset("train", 8, "masked_lm")  # default GPT-style specials have no [MASK]
    with pytest.raises(ValueError, match=r"val_fraction: expected a float in \[0, 1\), found 1.0"):
        load_corpus(text_dir, cache_dir=tmp_path, val_fraction=1.0)
    with pytest.raises(ValueError, match=r"max_bytes: expected a positive int or None, found -5"):
        load_corpus(text_dir, cache_dir=tmp_path, max_bytes=-5)
    with pytest.raises(ValueError, match=r"max_bytes: expected at least the size of the first file"):
        load_corpus(text_dir, cache_dir=tmp_path, max_bytes=3)
    with pytest.raises(TypeError, match=r"tokenizer: expected a kind name or a Tokenizer, found int"):
        load_corpus(text_dir, cache_dir=tmp_path, tokenizer=5)
    with pytest.raises(ValueError, match=r"tokenizer: expected a Tokenizer or one of \[.*'bpe'.*\], found 'gpt2'"):
        load_corpus(text_dir, cache_dir=tmp_path, tokenizer="gpt2")
    with pytest.raises(ValueError, match=r"vocab_size: expected None or the given tokenizer's 260, found 512"):
        load_corpus(text_dir, cache_dir=tmp_path, tokenizer=corpus.tokenizer, vocab_size=512)
