"""Every field of the Gaussian-mixture design's model config does what its docs say; each test fails when its
flag is ignored (#19)."""

from __future__ import annotations

import warnings

import pytest
import torch

import flops_fit as ff
from flops_fit import flops as flops_mod
from flops_fit.models import create_model, create_model_from_config, losses, save_model
from flops_fit.models import gmm as gmm_mod

BASE = {"architecture": "gmm", "d_model": 32, "n_layers": 2, "head_dim": 16, "dim": 2, "num_clusters": 3,
        "use_flash_attn": False}
POINTS = torch.randn(4, 24, 2)


def _model(**fields):
    torch.manual_seed(0)
    return create_model({**BASE, **fields})


def _stochastic_in_training(model) -> bool:
    model.train()
    torch.manual_seed(1)
    a = model(POINTS)
    torch.manual_seed(2)
    b = model(POINTS)
    return not torch.allclose(a, b)


@pytest.mark.parametrize("site", ["dropout_attention", "dropout_residual", "dropout_embedding"])
def test_each_dropout_site_drops_on_its_own(site):
    assert not _stochastic_in_training(_model())
    assert _stochastic_in_training(_model(**{site: 0.5}))
    m = _model(**{site: 0.5})
    m.eval()
    assert torch.equal(m(POINTS), m(POINTS))  # dropout is off at evaluation


def test_each_dropout_site_defaults_to_dropout():
    m = _model(dropout=0.3)
    assert m.drop_emb.p == 0.3
    assert all(b.drop.p == 0.3 and b.attn_dropout == 0.3 for b in m.blocks)
    m = _model(dropout=0.3, dropout_attention=0.0)
    assert all(b.attn_dropout == 0.0 and b.drop.p == 0.3 for b in m.blocks)


def test_activation_changes_the_function():
    a, b = _model(activation="gelu").eval(), _model(activation="relu").eval()
    assert a.num_params() == b.num_params()
    assert not torch.allclose(a(POINTS), b(POINTS))


def test_bias_false_removes_every_bias():
    with_b, without = _model(), _model(bias=False)
    assert without.num_params() < with_b.num_params()
    assert all(getattr(m, "bias", None) is None for m in without.modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.LayerNorm)))


def test_norm_eps_reaches_every_layer_norm():
    m = _model(norm_eps=1e-3)
    norms = [x for x in m.modules() if isinstance(x, torch.nn.LayerNorm)]
    assert len(norms) == 2 * BASE["n_layers"] + 1 and all(x.eps == 1e-3 for x in norms)


def test_use_flash_attn_selects_the_fused_kernel_and_matches_plain_attention(monkeypatch):
    plain, fused = _model(use_flash_attn=False).eval(), _model(use_flash_attn=True).eval()
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(gmm_mod, "_NOTICED", [])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out_fused = fused(POINTS)
        fused(POINTS)
    assert len(calls) == 2 * BASE["n_layers"]  # two forwards, one fused call per block
    assert sum("use_flash_attn" in str(w.message) for w in seen) == 1  # one notice on a CPU, not one per call
    calls.clear()
    out_plain = plain(POINTS)
    assert not calls, "use_flash_attn=False computes attention itself"
    assert torch.allclose(out_plain, out_fused, atol=1e-5)


def test_layer_repetition_shares_weights_and_doubles_the_measured_flops():
    one, two = _model(layer_repetition=1), _model(layer_repetition=2)
    assert one.num_params() == two.num_params()
    assert one.state_dict().keys() == two.state_dict().keys()
    assert not torch.allclose(one.eval()(POINTS), two.eval()(POINTS))
    batch = {"points": POINTS, "centers": torch.zeros_like(POINTS)}

    def fpu(model):
        def step():
            losses.gmm_centers_loss(model(POINTS), batch).backward()
        return flops_mod.measured_flops_per_unit(step, float(POINTS.shape[0] * POINTS.shape[1]))

    ratio = fpu(two) / fpu(one)
    assert 1.8 < ratio < 2.05, ratio  # the blocks twice; the input and output maps once


def test_a_sweep_over_a_repeated_model_warns_that_6nd_undercounts_it(tmp_path):
    common = dict(model_kwargs={"n_layers": 2, "use_flash_attn": False}, dataset="gmm",
                  data_options={"points_per_set": 16}, compute_budgets=[1e9, 3e9], train=False,
                  estimate_cost=False, num_model_sizes=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = ff.find_optimal("gmm", **common, output_dir=tmp_path / "one")
    rep = {**common, "model_kwargs": {**common["model_kwargs"], "layer_repetition": 2}}
    with pytest.warns(UserWarning, match=r"measured FLOPs per \w+ .*×2.*6·N·D misstates"):
        twice = ff.find_optimal("gmm", **rep, output_dir=tmp_path / "two")
    r1 = {c["size_value"]: c["ratio_to_6N"] for c in plain.flops_check}
    r2 = {c["size_value"]: c["ratio_to_6N"] for c in twice.flops_check}
    shared = sorted(set(r1) & set(r2))
    assert shared and all(1.6 < r2[v] / r1[v] < 2.05 for v in shared)


def test_flow_speed_is_a_learned_step_per_block_application():
    m = _model(flow_speed=True, layer_repetition=2)
    assert m.num_params() == _model(layer_repetition=2).num_params() + BASE["n_layers"] * 2
    m.eval()
    torch.manual_seed(0)
    plain = _model(layer_repetition=2).eval()
    assert torch.allclose(m(POINTS), plain(POINTS), atol=1e-6)  # alpha = 1 at init: the plain blocks
    with torch.no_grad():
        m.flow.zero_()  # alpha = 0: every block skipped, only in_proj -> ln_f -> head
        h = m.ln_f(m.in_proj(m.normalise(POINTS)[0]))
        x, mean, scale = m.normalise(POINTS)
        assert torch.allclose(m(POINTS), m.head(h) * scale + mean, atol=1e-6)
    m.train()
    with torch.no_grad():
        m.flow.fill_(1.0)
    losses.gmm_centers_loss(m(POINTS), {"points": POINTS, "centers": torch.zeros_like(POINTS)}).backward()
    assert m.flow.grad is not None and m.flow.grad.abs().sum() > 0  # it trains


def test_the_design_s_nested_config_and_its_factory(tmp_path):
    nested = {"architecture": "gmm", "prediction_type": "assignments", "num_clusters": 3,
              "transformer": {"input_dim": 2, "hidden_dim": 32, "num_layers": 2, "num_heads": 2, "dropout": 0.1,
                              "dropout_attention": 0.0, "activation": "silu", "ff_expansion": 2, "bias": False,
                              "norm_eps": 1e-4, "use_flash_attn": False, "layer_repetition": 2, "flow_speed": True}}
    m = create_model_from_config(nested)
    flat = {"architecture": "gmm", "prediction_type": "assignments", "num_clusters": 3, "dim": 2, "d_model": 32,
            "n_layers": 2, "head_dim": 16, "dropout": 0.1, "dropout_attention": 0.0, "activation": "silu",
            "mlp_ratio": 2, "bias": False, "norm_eps": 1e-4, "use_flash_attn": False, "layer_repetition": 2,
            "flow_speed": True}
    assert m.ff_config == create_model(flat).ff_config
    assert m.objective == "gmm_assignments"
    save_model(m, m.ff_config, tmp_path / "ckpt")
    back = create_model_from_config(tmp_path / "ckpt")  # the same factory loads a checkpoint
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), back.state_dict().values()))


def test_a_sweep_over_a_repeated_model_plans_with_measured_flops(tmp_path):
    """Planned by measured FLOPs, the twice-applied blocks cost twice per point, so at the same size each run
    gets about half the points of the plain model, and each run's planned compute is its budget."""
    common = dict(model_kwargs={"n_layers": 2, "use_flash_attn": False}, dataset="gmm",
                  data_options={"points_per_set": 16}, compute_budgets=[1e9, 3e9], train=False,
                  estimate_cost=False, num_model_sizes=5, flops_accounting="measured")
    plain = ff.find_optimal("gmm", **common, output_dir=tmp_path / "one")
    rep = {**common, "model_kwargs": {**common["model_kwargs"], "layer_repetition": 2}}
    twice = ff.find_optimal("gmm", **rep, output_dir=tmp_path / "two")
    d1 = {(e.compute_budget, e.size_value): e.num_tokens for e in plain.runnable}
    d2 = {(e.compute_budget, e.size_value): e.num_tokens for e in twice.runnable}
    shared = sorted(set(d1) & set(d2))
    assert shared and all(1.6 < d1[k] / d2[k] < 2.05 for k in shared)
    assert all(e.flops == pytest.approx(e.compute_budget, rel=1e-12) for e in twice.runnable)
    assert ff.SweepPlan.load(str(tmp_path / "two" / "sweep.json")).flops_accounting == "measured"
