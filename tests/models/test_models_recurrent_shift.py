"""The causal objective is shifted exactly once.

Task: every sequence alternates two random distinct tokens, ``a b a b a b ...``, so
the next token always *repeats the previous token* (x[t+1] = x[t-1]) and never
equals the current one (x[t+1] != x[t]). With labels shifted by one
(labels[t] = x[t+1]):

- a unidirectional LSTM can learn it to ~zero loss (it needs one step of memory);
- an oracle that copies the *current* token — what a model learns from unshifted
  labels (labels[t] = x[t]) or doubly shifted ones (labels[t] = x[t+2] = x[t]) — gets
  a huge loss, so the convention cannot reward copying.

Position 0's target (b) cannot be inferred from a alone, so it is labelled -100.
"""

from __future__ import annotations

import pytest
import torch

import flops_fit.models as M
from flops_fit.models.losses import causal_lm_loss

VOCAB = 12
SEQ = 12


def _alternating(n: int, g: torch.Generator) -> torch.Tensor:
    a = torch.randint(0, VOCAB, (n,), generator=g)
    b = (a + torch.randint(1, VOCAB, (n,), generator=g)) % VOCAB  # b != a
    seq = torch.empty(n, SEQ, dtype=torch.long)
    seq[:, 0::2] = a[:, None]
    seq[:, 1::2] = b[:, None]
    return seq


def _shifted_batch(ids: torch.Tensor) -> dict[str, torch.Tensor]:
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = ids[:, 1:]
    labels[:, 0] = -100  # unpredictable from the first token alone
    return {"input_ids": ids, "labels": labels}


def _oracle_logits(ids: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(predicted, VOCAB).float() * 20.0


def test_alternating_data_has_the_intended_structure():
    ids = _alternating(64, torch.Generator().manual_seed(0))
    assert (ids[:, 2:] == ids[:, :-2]).all()  # next repeats the previous token
    assert (ids[:, 1:] != ids[:, :-1]).all()  # ... and never the current one


def test_copying_the_current_token_is_not_rewarded_but_the_previous_is():
    ids = _alternating(64, torch.Generator().manual_seed(1))
    batch = _shifted_batch(ids)
    copy_current = causal_lm_loss(_oracle_logits(ids, ids), batch)
    previous = torch.cat([ids[:, :1], ids[:, :-1]], dim=1)
    repeat_previous = causal_lm_loss(_oracle_logits(ids, previous), batch)
    assert copy_current.item() > 15.0
    assert repeat_previous.item() < 1e-6


def test_pipeline_collator_produces_the_same_shifted_labels():
    collators = pytest.importorskip("flops_fit.data.collators")
    ids = _alternating(4, torch.Generator().manual_seed(2))
    batch = collators.CausalLMCollator(pad_id=0)([{"input_ids": row} for row in ids])
    expected = torch.full_like(ids, -100)
    expected[:, :-1] = ids[:, 1:]
    assert torch.equal(batch["labels"], expected)


def test_unidirectional_lstm_learns_repeat_previous_to_near_zero():
    torch.manual_seed(0)
    model = M.create_model(dict(architecture="lstm", hidden_size=48, n_layers=1, vocab_size=VOCAB))
    assert M.default_loss_for(model) is causal_lm_loss
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    g = torch.Generator().manual_seed(3)
    for _ in range(250):
        batch = _shifted_batch(_alternating(32, g))
        loss = causal_lm_loss(M.forward_batch(model, batch), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test = _shifted_batch(_alternating(256, torch.Generator().manual_seed(99)))
    with torch.no_grad():
        logits = M.forward_batch(model, test)
        final = causal_lm_loss(logits, test).item()
    assert final < 0.05, final
    predicted = logits.argmax(-1)[:, 1:-1]
    ids = test["input_ids"]
    assert (predicted == ids[:, 2:]).float().mean().item() > 0.99  # predicts the next token
    assert (predicted == ids[:, 1:-1]).float().mean().item() < 0.01  # never the current one


def test_bidirectional_causal_lstm_is_a_config_error():
    with pytest.raises(ValueError, match="bidirectional=True cannot use objective='causal_lm'"):
        M.create_model(dict(architecture="lstm", hidden_size=8, bidirectional=True, objective="causal_lm"))
    with pytest.raises(ValueError, match="bidirectional=True cannot train with objective='causal_lm'"):
        from flops_fit.models.rnn import LSTMLM

        LSTMLM(8, bidirectional=True, objective="causal_lm")


def test_bidirectional_defaults_to_masked_objective():
    model = M.create_model(dict(architecture="gru", hidden_size=8, bidirectional=True), device="meta")
    assert model.objective == "masked_lm"
    assert M.default_loss_for(model) is M.masked_lm_loss
    uni = M.create_model(dict(architecture="gru", hidden_size=8), device="meta")
    assert M.default_loss_for(uni) is causal_lm_loss


def test_unidirectional_lstm_is_causal():
    torch.manual_seed(0)
    model = M.create_model(dict(architecture="lstm", hidden_size=16, n_layers=2, vocab_size=VOCAB)).eval()
    ids = torch.randint(0, VOCAB, (2, SEQ))
    changed = ids.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.equal(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])
