"""Every built-in architecture: shapes, parameter counts, learning, gradients, save/load."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch

import flops_fit.models as M
from flops_fit.data.synthetic import GaussianMixtureSets, SyntheticImages

VOCAB = 32
SEQ = 16
BATCH = 8


@dataclass
class Case:
    name: str
    config: dict[str, Any]
    make_batch: Callable[[torch.Generator], Any]
    output_shape: tuple[int, ...]
    lr: float = 3e-3


def _lm_batch(g: torch.Generator) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = ids[:, 1:]  # what the causal collator produces: already shifted
    return {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)}


def _mlm_batch(g: torch.Generator) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, VOCAB - 1, (BATCH, SEQ), generator=g)
    masked = torch.rand(BATCH, SEQ, generator=g) < 0.3
    masked[:, 0] = True  # never an empty target
    inputs = torch.where(masked, torch.full_like(ids, VOCAB - 1), ids)  # VOCAB-1 is the mask id
    labels = torch.where(masked, ids, torch.full_like(ids, -100))
    return {"input_ids": inputs, "labels": labels, "attention_mask": torch.ones_like(ids)}


def _image_batch(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    data = SyntheticImages(num_classes=10, image_size=8, channels=1, seed=3, length=BATCH)
    items = [data[i] for i in range(BATCH)]
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def _gmm_batch(g: torch.Generator) -> dict[str, torch.Tensor]:
    data = GaussianMixtureSets(num_clusters=3, dim=2, points_per_set=12, snr=4.0, seed=5, length=BATCH)
    items = [data[i] for i in range(BATCH)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


LM = dict(vocab_size=VOCAB)
CASES = [
    Case("gpt", dict(architecture="gpt", d_model=32, n_layers=1, max_seq_len=SEQ, **LM), _lm_batch, (BATCH, SEQ, VOCAB)),
    Case("gpt_umup", dict(architecture="gpt", d_model=32, n_layers=1, max_seq_len=SEQ, umup=True, **LM), _lm_batch, (BATCH, SEQ, VOCAB), lr=0.1),
    Case("gpt2", dict(architecture="gpt2", d_model=32, n_layers=1, max_seq_len=SEQ, **LM), _lm_batch, (BATCH, SEQ, VOCAB)),
    Case("bert", dict(architecture="bert", d_model=32, n_layers=1, max_seq_len=SEQ, **LM), _mlm_batch, (BATCH, SEQ, VOCAB)),
    Case("lstm", dict(architecture="lstm", hidden_size=32, n_layers=2, dropout=0.1, **LM), _lm_batch, (BATCH, SEQ, VOCAB), lr=1e-2),
    Case("lstm_bidirectional", dict(architecture="lstm", hidden_size=32, n_layers=1, bidirectional=True, **LM), _mlm_batch, (BATCH, SEQ, VOCAB), lr=1e-2),
    Case("gru", dict(architecture="gru", hidden_size=32, n_layers=1, **LM), _lm_batch, (BATCH, SEQ, VOCAB), lr=1e-2),
    Case("rnn", dict(architecture="rnn", hidden_size=32, n_layers=1, **LM), _lm_batch, (BATCH, SEQ, VOCAB), lr=1e-2),
    Case("vit", dict(architecture="vit", d_model=32, n_layers=1), _image_batch, (BATCH, 10)),
    Case("gmm_centers", dict(architecture="gmm", d_model=32, n_layers=1, num_clusters=3), _gmm_batch, (BATCH, 12, 2)),
    Case("gmm_assignments", dict(architecture="gmm", d_model=32, n_layers=1, num_clusters=3, prediction_type="assignments"), _gmm_batch, (BATCH, 12, 3)),
]
IDS = [c.name for c in CASES]


def _build(case: Case, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return M.create_model(case.config)


def _loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    loss_fn = M.default_loss_for(model)
    return loss_fn(M.forward_batch(model, batch), batch)


def _optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    if hasattr(model, "optimizer_param_groups"):
        return torch.optim.AdamW(model.optimizer_param_groups(lr, 0.0))
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)


def test_every_builtin_has_a_case():
    assert {c.config["architecture"] for c in CASES} == set(M.list_models())


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_output_shape(case: Case):
    model = _build(case).eval()
    out = M.forward_batch(model, case.make_batch(torch.Generator().manual_seed(0)))
    assert tuple(out.shape) == case.output_shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_num_params_counts_unique_parameters(case: Case):
    model = _build(case)
    unique = {id(p): p.numel() for p in model.parameters()}
    assert model.num_params() == sum(unique.values())
    assert 0 < model.num_params(non_embedding=True) < model.num_params()
    # the same count on the meta device, where the planner counts
    meta = M.create_model(case.config, device="meta")
    assert next(meta.parameters()).device.type == "meta"
    assert meta.num_params() == model.num_params()
    assert meta.num_params(non_embedding=True) == model.num_params(non_embedding=True)


def _trunk(d: int, layers: int) -> int:
    """Pre-norm block with biases: qkv 3d²+3d, out d²+d, MLP 8d²+5d, two LayerNorms 4d."""
    return layers * (12 * d * d + 13 * d)


@pytest.mark.parametrize(
    "config, expected_non_embedding",
    [
        # compact GPT: bias-free linears (12d²) + 2 LayerNorms per block + final LayerNorm
        (dict(architecture="gpt", d_model=32, n_layers=3), 3 * (12 * 32 * 32 + 4 * 32) + 2 * 32),
        # u-μP GPT: bias-free linears, parameter-free norms, untied readout excluded
        (dict(architecture="gpt", d_model=32, n_layers=3, umup=True), 3 * 12 * 32 * 32),
        (dict(architecture="gpt2", d_model=32, n_layers=3), _trunk(32, 3) + 2 * 32),
        # BERT: encoder + embedding LayerNorm + MLM transform (dense + LayerNorm)
        (dict(architecture="bert", d_model=32, n_layers=3), _trunk(32, 3) + 2 * 32 + 32 * 32 + 32 + 2 * 32),
        (dict(architecture="vit", d_model=32, n_layers=3), _trunk(32, 3) + 2 * 32),
        (dict(architecture="gmm", d_model=32, n_layers=3), _trunk(32, 3) + 2 * 32),
        # LSTM: per layer 4 gates × (h·in + h·h + 2h); layer 1 input = embed_dim
        (dict(architecture="lstm", hidden_size=32, n_layers=2, embed_dim=8), 4 * (32 * 8 + 32 * 32 + 64) + 4 * (32 * 32 + 32 * 32 + 64)),
        (dict(architecture="gru", hidden_size=32, n_layers=1), 3 * (32 * 32 + 32 * 32 + 64)),
        (dict(architecture="rnn", hidden_size=32, n_layers=1, bidirectional=True), 2 * (32 * 32 + 32 * 32 + 64)),
    ],
)
def test_non_embedding_count_matches_formula(config, expected_non_embedding):
    model = M.create_model(config, device="meta")
    assert model.num_params(non_embedding=True) == expected_non_embedding


def test_gpt_total_counts_tied_embedding_once():
    model = M.create_model(dict(architecture="gpt", d_model=32, n_layers=3, vocab_size=100, max_seq_len=64), device="meta")
    assert model.lm_head.weight is model.tok_emb.weight
    assert model.num_params() == model.num_params(non_embedding=True) + 100 * 32 + 64 * 32


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_loss_decreases_over_50_steps(case: Case):
    model = _build(case).train()
    batch = case.make_batch(torch.Generator().manual_seed(1))
    opt = _optimizer(model, case.lr)
    losses = []
    for _ in range(50):
        loss = _loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0], f"{case.name}: loss {losses[0]:.3f} -> {losses[-1]:.3f}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients_reach_every_parameter(case: Case):
    model = _build(case).train()
    _loss(model, case.make_batch(torch.Generator().manual_seed(2))).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert dead == []


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_save_load_gives_identical_outputs(case: Case, tmp_path):
    model = _build(case, seed=7)
    # move weights away from their initial values so a fresh init cannot pass the check
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.eval()
    batch = case.make_batch(torch.Generator().manual_seed(3))
    expected = M.forward_batch(model, batch)
    M.save_model(model, case.config, tmp_path / "ckpt")
    torch.manual_seed(123)
    loaded = M.load_model(tmp_path / "ckpt")
    assert type(loaded) is type(model)
    assert loaded.ff_config == model.ff_config
    assert torch.equal(M.forward_batch(loaded, batch), expected)


@pytest.mark.parametrize("name", sorted(M.list_models()))
def test_config_fields_are_exactly_the_factory_arguments(name: str):
    """No field can be accepted and dropped: the validated fields are the constructor's."""
    spec = M.get_model_spec(name)
    factory_args = set(inspect.signature(spec.factory).parameters)
    config = {"architecture": name, spec.size_param: 32}
    _, fields = M.validate_config(config)
    assert set(fields) == factory_args
    assert spec.size_param in factory_args


@pytest.mark.parametrize(
    "config, attribute, expected",
    [
        (dict(architecture="gpt", d_model=48, n_layers=2, head_dim=8, vocab_size=40, max_seq_len=12, dropout=0.1, mlp_ratio=2), "config",
         M.GPTConfig(d_model=48, n_layers=2, head_dim=8, vocab_size=40, max_seq_len=12, dropout=0.1, mlp_ratio=2)),
        (dict(architecture="gpt2", d_model=48, n_layers=2, head_dim=8, vocab_size=40, max_seq_len=12, dropout=0.1, mlp_ratio=2), "hf.config",
         dict(n_embd=48, n_layer=2, n_head=6, vocab_size=40, n_positions=12, resid_pdrop=0.1, attn_pdrop=0.1, embd_pdrop=0.1, n_inner=96)),
        (dict(architecture="bert", d_model=48, n_layers=2, head_dim=8, vocab_size=40, max_seq_len=12, dropout=0.1, mlp_ratio=2), "hf.config",
         dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=6, vocab_size=40, max_position_embeddings=12,
              hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, intermediate_size=96)),
        (dict(architecture="gru", hidden_size=24, n_layers=3, vocab_size=40, embed_dim=8, dropout=0.2, bidirectional=True, objective="masked_lm"), "rnn",
         dict(hidden_size=24, num_layers=3, input_size=8, dropout=0.2, bidirectional=True)),
    ],
)
def test_every_field_reaches_the_model(config, attribute, expected):
    model = M.create_model(config, device="meta")
    obj = model
    for part in attribute.split("."):
        obj = getattr(obj, part)
    if isinstance(expected, dict):
        for key, value in expected.items():
            assert getattr(obj, key) == value, key
    else:
        assert obj == expected
