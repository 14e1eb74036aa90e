"""Causal and masked LM collators: shift, padding, masking statistics, seeding."""

from __future__ import annotations

import pickle
import sys

import pytest
import torch

from flops_fit.data import (
    CausalLMCollator,
    MaskedLMCollator,
    build_tokenizer,
    collator_for,
)

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _corpus_text import make_documents

BERT_BYTE = build_tokenizer("byte", None, None, special_tokens="bert")  # [PAD]=256 .. [MASK]=260
GPT_BYTE = build_tokenizer("byte", None, None, special_tokens="gpt")


def test_causal_labels_are_next_tokens_and_padding_is_ignored():
    batch = CausalLMCollator(pad_id=9)([[1, 2, 3, 4], [5, 6]])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4], [5, 6, 9, 9]]
    assert batch["labels"].tolist() == [[2, 3, 4, -100], [6, -100, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch.input_ids.dtype == torch.long


def test_causal_shift_matches_a_next_token_loss():
    ids = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(0))
    batch = CausalLMCollator(0)(list(ids))
    # a "model" that predicts exactly the next token gets zero loss with these labels, and not with unshifted ones
    logits = torch.full((3, 7, 50), -1e4)
    logits[:, :-1].scatter_(2, ids[:, 1:].unsqueeze(-1), 1e4)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 50), batch["labels"].reshape(-1))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    wrong = torch.nn.functional.cross_entropy(logits.reshape(-1, 50), ids.reshape(-1))
    assert wrong.item() > 100


def test_causal_keeps_given_shifted_labels():
    batch = CausalLMCollator(0)(
        [{"input_ids": torch.tensor([1, 2, 3]), "labels": torch.tensor([2, 3, 4])}, {"input_ids": [7], "labels": [8]}]
    )
    assert batch["labels"].tolist() == [[2, 3, 4], [8, -100, -100]]
    assert batch["input_ids"].tolist() == [[1, 2, 3], [7, 0, 0]]


def test_causal_errors():
    with pytest.raises(ValueError, match=r"pad_id: expected a non-negative int, found None"):
        CausalLMCollator(None)
    with pytest.raises(ValueError, match=r"examples: expected a non-empty list of examples"):
        CausalLMCollator(0)([])
    with pytest.raises(ValueError, match=r"examples: expected 'labels' in all examples or in none, found a mix"):
        CausalLMCollator(0)([{"input_ids": [1], "labels": [2]}, {"input_ids": [1]}])
    with pytest.raises(TypeError, match=r"examples: expected sequences of token ids.*found str"):
        CausalLMCollator(0)(["abc"])


def _masked_batches(collator, n_batches=60, batch=16, length=256):
    docs = "".join(make_documents(400)).encode()
    step = length - 2
    for b in range(n_batches):
        rows = []
        for r in range(batch):
            start = ((b * batch + r) * step) % (len(docs) - step)
            # a [CLS] ... [SEP] frame and some rows shorter (padding) so specials are present
            body = list(docs[start : start + step - (r % 4) * 10])
            rows.append([BERT_BYTE.cls_id] + body + [BERT_BYTE.sep_id])
        yield rows, collator(rows)


def test_masked_fraction_and_80_10_10_split():
    collator = MaskedLMCollator(BERT_BYTE, mlm_probability=0.15, seed=0)
    special = torch.tensor(sorted(BERT_BYTE.special_ids))
    n_candidates = n_chosen = n_mask = n_random = n_same = 0
    for rows, out in _masked_batches(collator):
        originals = CausalLMCollator(BERT_BYTE.pad_id)(rows)["input_ids"]
        labels, inputs = out["labels"], out["input_ids"]
        chosen = labels != -100
        is_special = torch.isin(originals, special)
        assert not (chosen & is_special).any(), "a special token (or padding) was chosen for masking"
        assert (inputs[is_special] == originals[is_special]).all(), "a special token was changed"
        assert (labels[chosen] == originals[chosen]).all()
        assert (inputs[~chosen] == originals[~chosen]).all()
        assert not torch.isin(inputs[chosen & (inputs != BERT_BYTE.mask_id)], special).any()
        n_candidates += int((~is_special).sum())
        n_chosen += int(chosen.sum())
        n_mask += int((chosen & (inputs == BERT_BYTE.mask_id)).sum())
        n_same += int((chosen & (inputs == originals)).sum())
        n_random += int((chosen & (inputs != BERT_BYTE.mask_id) & (inputs != originals)).sum())
    assert n_candidates > 200_000
    assert abs(n_chosen / n_candidates - 0.15) < 0.01
    assert abs(n_mask / n_chosen - 0.80) < 0.02
    assert abs(n_random / n_chosen - 0.10) < 0.02
    assert abs(n_same / n_chosen - 0.10) < 0.02


def test_masked_is_seeded():
    rows = [list(range(10, 90))] * 4
    a = MaskedLMCollator(BERT_BYTE, seed=3)(rows)
    b = MaskedLMCollator(BERT_BYTE, seed=3)(rows)
    c = MaskedLMCollator(BERT_BYTE, seed=4)(rows)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    assert not torch.equal(a["labels"], c["labels"])
    # a pickled copy (what a DataLoader worker gets) restarts from the seed, mixed with the worker id
    assert pickle.loads(pickle.dumps(MaskedLMCollator(BERT_BYTE, seed=3)))(rows)["labels"].shape == (4, 80)


def test_masked_lm_needs_mask_token():
    with pytest.raises(ValueError, match=r"tokenizer: the masked_lm objective needs a mask token, found none"):
        MaskedLMCollator(GPT_BYTE)
    with pytest.raises(ValueError, match=r"mlm_probability: expected a float in \(0, 1\), found 1.5"):
        MaskedLMCollator(BERT_BYTE, mlm_probability=1.5)


def test_collator_for_objective():
    assert isinstance(collator_for("causal_lm", GPT_BYTE), CausalLMCollator)
    assert collator_for("causal_lm", GPT_BYTE).pad_id == 256
    assert isinstance(collator_for("masked_lm", BERT_BYTE), MaskedLMCollator)
    with pytest.raises(ValueError, match=r"objective: expected one of \['causal_lm', 'masked_lm'\], found 'seq2seq'"):
        collator_for("seq2seq", GPT_BYTE)
    with pytest.raises(ValueError, match=r"needs a mask token"):
        collator_for("masked_lm", GPT_BYTE)
