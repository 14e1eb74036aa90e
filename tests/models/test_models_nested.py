"""The multi-architecture framework's nested model configs: each builds the same model as its flat twin, trains,
and a value the model cannot honour is refused by name (#19)."""

from __future__ import annotations

import pytest
import torch

import flops_fit as ff
from flops_fit.models import ModelConfigError, create_model, losses

BERT = {"architecture": "bert",
        "transformer": {"layers": 2, "embedding_size": 64, "hidden_size": 64, "intermediate_hidden_size": 128,
                        "attention_heads": 2, "activation_function": "gelu", "dropout": 0.1, "attention_dropout": 0.1},
        "bert": {"type_vocab_size": 2}}
BERT_FLAT = {"architecture": "bert", "d_model": 64, "n_layers": 2, "head_dim": 32, "mlp_ratio": 2, "dropout": 0.1,
             "type_vocab_size": 2}
LSTM = {"architecture": "lstm", "rnn": {"embedding_size": 48, "hidden_size": 64, "num_layers": 2,
                                        "bidirectional": False, "dropout": 0.1, "rnn_type": "lstm"}}
LSTM_FLAT = {"architecture": "lstm", "hidden_size": 64, "embed_dim": 48, "n_layers": 2, "dropout": 0.1}
GPT2 = {"architecture": "gpt2", "transformer": {"layers": 1, "hidden_size": 32, "attention_heads": 4,
                                                "intermediate_hidden_size": 128, "activation_function": "gelu_new"}}
GPT2_FLAT = {"architecture": "gpt2", "d_model": 32, "n_layers": 1, "head_dim": 8, "mlp_ratio": 4}
GRU_BI = {"architecture": "gru", "rnn": {"hidden_size": 32, "num_layers": 1, "bidirectional": True, "rnn_type": "gru"}}
GRU_BI_FLAT = {"architecture": "gru", "hidden_size": 32, "n_layers": 1, "bidirectional": True}
PAIRS = [(BERT, BERT_FLAT), (LSTM, LSTM_FLAT), (GPT2, GPT2_FLAT), (GRU_BI, GRU_BI_FLAT)]


@pytest.mark.parametrize("nested, flat", PAIRS, ids=["bert", "lstm", "gpt2", "gru-bidirectional"])
def test_a_nested_config_builds_its_flat_twin(nested, flat):
    torch.manual_seed(0)
    a = create_model(nested)
    torch.manual_seed(0)
    b = create_model(flat)
    assert a.ff_config == b.ff_config
    assert a.num_params() == b.num_params()
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("nested", [BERT, LSTM, GPT2, GRU_BI], ids=["bert", "lstm", "gpt2", "gru-bidirectional"])
def test_a_nested_config_model_trains(nested):
    """A fixed batch, 40 AdamW steps with the model's own objective: the loss falls (the model learns)."""
    torch.manual_seed(0)
    model = create_model(nested)
    ids = torch.randint(4, 64, (8, 16))
    if getattr(model, "objective", None) == "masked_lm" or nested.get("rnn", {}).get("bidirectional"):
        labels = torch.full_like(ids, -100)
        mask = torch.rand(ids.shape) < 0.3
        labels[mask] = ids[mask]
        inputs = ids.masked_fill(mask, 3)
        batch, loss_fn = {"input_ids": inputs, "labels": labels}, losses.masked_lm_loss
    else:
        batch, loss_fn = {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}, losses.causal_lm_loss
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    first = None
    for _ in range(40):
        loss = loss_fn(model(batch["input_ids"]), batch)
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.7 * first


def test_bert_type_vocab_size_reaches_the_model():
    assert create_model(BERT).hf.bert.embeddings.token_type_embeddings.num_embeddings == 2
    assert create_model({**BERT, "bert": {}}).hf.bert.embeddings.token_type_embeddings.num_embeddings == 1


def test_a_config_without_architecture_names_every_registered_one():
    with pytest.raises(ModelConfigError, match=r"^Missing required field 'architecture' in model config\. Must be "
                                               r"one of: bert, gmm, gpt, gpt2, gru, lstm, rnn, vit$"):
        create_model({"transformer": {"layers": 2}})


@pytest.mark.parametrize("change, message", [
    ({"transformer": {**BERT["transformer"], "embedding_size": 32}}, r"embedding_size: bert embeds at the model width"),
    ({"transformer": {**BERT["transformer"], "activation_function": "relu"}}, r"activation_function: bert computes gelu, found 'relu'"),
    ({"transformer": {**BERT["transformer"], "attention_dropout": 0.0}}, r"attention_dropout: bert has one dropout rate"),
    ({"transformer": {**BERT["transformer"], "attention_heads": 3}}, r"attention_heads: expected a positive divisor of hidden_size=64, found 3"),
    ({"transformer": {**BERT["transformer"], "intermediate_hidden_size": 100}}, r"intermediate_hidden_size: expected a multiple of hidden_size=64"),
    ({"transformer": {**BERT["transformer"], "heads": 2}}, r"model.transformer.heads: unknown field"),
    ({"rnn": {"hidden_size": 8}}, r"model.rnn: architecture 'bert' takes no 'rnn' block"),
    ({"n_layers": 3}, r"model.n_layers: given both flat and in model.transformer"),
])
def test_a_value_the_model_cannot_honour_is_refused_by_name(change, message):
    with pytest.raises(ModelConfigError, match=message):
        create_model({**BERT, **change})


def test_rnn_type_must_match_the_architecture():
    with pytest.raises(ModelConfigError, match=r"model.rnn.rnn_type: 'gru' does not match architecture 'lstm'"):
        create_model({"architecture": "lstm", "rnn": {**LSTM["rnn"], "rnn_type": "gru"}})


def test_a_sweep_names_its_size_parameter_in_the_nested_form(tmp_path):
    plan = ff.find_optimal("bert", "transformer.hidden_size",
                           {"transformer": {"layers": 1, "hidden_size": 64, "attention_heads": 4,
                                            "intermediate_hidden_size": 128}},
                           compute_budgets=[1e12, 1e13], mode="mock", train=False, output_dir=tmp_path)
    assert plan.size_param == "d_model"
    assert {k: plan.model_kwargs[k] for k in ("n_layers", "head_dim", "mlp_ratio")} == \
        {"n_layers": 1, "head_dim": 16, "mlp_ratio": 2}
    assert all(e.size_value % 16 == 0 for e in plan.runnable)  # the head size holds as the width grows
    with pytest.raises(ValueError, match=r"model_size_param: architecture 'lstm' is sized by 'hidden_size', "
                                         r"found 'd_model'"):
        ff.find_optimal("lstm", "transformer.hidden_size", compute_budgets=[1e12, 1e13], mode="mock", train=False,
                        output_dir=tmp_path / "x")
