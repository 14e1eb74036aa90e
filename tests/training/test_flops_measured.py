"""Measured FLOPs: exact counts for linear layers and CPU scaled_dot_product_attention; gap to 6ND."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from flops_fit.flops import count_flops, measured_flops_per_unit


def test_two_linear_layers_forward_backward_exact():
    a, b, c, B = 8, 16, 4, 5
    model = torch.nn.Sequential(torch.nn.Linear(a, b, bias=False), torch.nn.Linear(b, c, bias=False))
    x = torch.randn(B, a)

    def step():
        model(x).sum().backward()

    per_sample = measured_flops_per_unit(step, B)
    # forward 2·(ab + bc); backward: weight grads 2·(ab + bc) + input grad of layer 2 only, 2·bc
    assert per_sample == 6 * b * c + 4 * a * b
    n = a * b + b * c
    assert per_sample / (6 * n) == pytest.approx((6 * b * c + 4 * a * b) / (6 * n))  # 6N overcounts layer 1


@pytest.mark.parametrize("causal", [False, True])
def test_cpu_sdpa_formula(causal):
    B, H, S, d = 2, 3, 16, 8
    q, k, v = (torch.randn(B, H, S, d, requires_grad=True) for _ in range(3))
    fwd = count_flops(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
    assert fwd == 4 * B * H * S * S * d  # QK^T and AV, 2 FLOPs per multiply-add; no causal discount
    both = count_flops(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal).sum().backward())
    assert both * 2 == 7 * fwd  # torch's convention: backward = 2.5 x forward (recomputes QK^T)


def test_measured_units_must_be_positive():
    with pytest.raises(ValueError, match=r"units: expected a positive number of data units, found 0"):
        measured_flops_per_unit(lambda: None, 0)


def test_gpt_measured_vs_6n_gap():
    """Measured FLOPs/token of the GPT = 6·(block matrices + tied output matrix) + attention, exactly.

    6N counts the position table and LayerNorms (no matmul FLOPs) and misses attention (14·S·d per layer
    per token: 4·S·d forward, 2.5x that backward); at this size 6N is ~17% low.
    """
    from flops_fit.models import GPT

    torch.manual_seed(0)
    S, d, L, V = 64, 32, 2, 256
    m = GPT(d_model=d, n_layers=L, head_dim=16, vocab_size=V, max_seq_len=S)
    ids = torch.randint(0, V, (2, S))

    def step():
        m(ids).sum().backward()

    per_token = measured_flops_per_unit(step, ids.numel())
    blocks = sum(p.numel() for name, p in m.named_parameters() if p.dim() == 2 and name.startswith("blocks"))
    assert per_token == 6 * (blocks + V * d) + 14 * S * d * L
    assert per_token / (6 * m.num_params()) == pytest.approx(1.205, abs=0.01)


class Conv1DNet(torch.nn.Module):
    """A 1-D CNN over 64 positions per sample: its weights are reused at every position, so one sample costs
    about 64x what 6·N counts."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv1d(1, channels, 3, padding=1)
        self.conv2 = torch.nn.Conv1d(channels, channels, 3, padding=1)
        self.head = torch.nn.Linear(channels, 1)

    def forward(self, x):
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.head(h.mean(dim=2))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def test_a_conv_net_plan_warns_with_the_measured_to_6nd_factor(tmp_path):
    import warnings

    import flops_fit as ff
    from torch.utils.data import TensorDataset

    data = TensorDataset(torch.randn(512, 1, 64), torch.randn(512, 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = ff.find_optimal(Conv1DNet, "channels", dataset=data, loss_fn=lambda out, y: ((out - y) ** 2).mean(),
                               compute_budgets=[1e9, 3e9], num_model_sizes=3, span_decades=0.3, size_max=256,
                               train_config={"batch_size": 8}, output_dir=tmp_path, train=False)
    msgs = [str(w.message) for w in caught if "measured FLOPs per sample" in str(w.message)]
    assert msgs and "its 6·N estimate, so 6·N·D misstates each run's real compute" in msgs[0]
    ratios = [g["ratio_to_6N"] for g in plan.flops_check]
    assert len(ratios) == 2 and all(40 < r < 80 for r in ratios)  # ~64 positions per sample
    assert "measured FLOPs per data unit: ×" in plan.summary()
    assert "(6·N·D)" in plan.summary()  # the total is labelled for what it is
    assert ff.SweepPlan.load(str(tmp_path / "sweep.json")).flops_check == plan.flops_check


def test_an_embedding_heavy_tiny_lm_is_told_that_6nd_overcounts_it(tmp_path):
    """Embeddings count in N but cost no FLOPs: at tiny sizes 6·N is well above the real cost (Pearce & Song)."""
    import warnings

    import flops_fit as ff
    from ff_train_helpers import TinyLM, TokenData, lm_loss

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = ff.find_optimal(TinyLM, "d_model", dataset=TokenData(256), loss_fn=lm_loss, compute_budgets=[1e7, 3e7],
                               num_model_sizes=3, span_decades=0.3, size_min=2, size_max=64,
                               train_config={"batch_size": 8, "val_units": 64}, output_dir=tmp_path, train=False)
    ratios = [g["ratio_to_6N"] for g in plan.flops_check]
    assert len(ratios) == 2 and all(r < 1 / 1.5 for r in ratios[:1]) and ratios[0] < ratios[1] < 1
    assert [w for w in caught if "misstates" in str(w.message)]
    mlp = [g for g in plan.flops_check]  # the larger model is closer to 6N: embeddings matter less
    assert mlp[1]["ratio_to_6N"] > mlp[0]["ratio_to_6N"]


def test_measured_accounting_plans_each_d_so_every_run_spends_its_budget(tmp_path):
    """The conv net costs ~64x its 6·N per sample: planned by measured FLOPs, each run's own FlopCounterMode
    count at train time equals its budget, and every output says how compute was counted."""
    import json

    import flops_fit as ff
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 1, 64, generator=g)
    data = TensorDataset(x, x.abs().mean(dim=2))
    kw = dict(dataset=data, loss_fn=lambda out, y: ((out - y) ** 2).mean(), compute_budgets=[3e8, 1e9],
              num_model_sizes=3, span_decades=0.4, size_max=256, train_config={"batch_size": 16},
              flops_accounting="measured", n_bootstrap=20)
    plan = ff.find_optimal(Conv1DNet, "channels", **kw, output_dir=tmp_path / "plan", train=False)
    assert "(measured: FlopCounterMode FLOPs per data unit" in plan.summary()
    for e in plan.runnable:  # D = C / measured FLOPs per unit, ~64x fewer samples than 6·N·D would plan
        assert e.flops_per_unit is not None and 40 < e.flops_per_unit / (6 * e.num_params) < 80
        assert e.flops == pytest.approx(e.compute_budget, rel=1e-12)
    res = ff.find_optimal(Conv1DNet, "channels", **kw, output_dir=tmp_path / "run")
    assert [e.experiment_id for e in res.plan.runnable] == [e.experiment_id for e in plan.runnable]
    assert len(res.records) == len(plan.runnable) >= 6
    for r in res.records:
        assert r.flops_method == "measured"
        assert r.details["flops_measured"] == pytest.approx(r.compute_budget, rel=0.05)
    cost = res.analysis.cost
    assert cost.accounting == "measured" and 40 < cost.c * 1000 ** cost.b / 6000 < 80
    p = res.predict(1e9, "approach_2")
    assert cost.per_unit(p["optimal_params"]) * p["optimal_tokens"] == pytest.approx(1e9, rel=1e-9)
    assert "measured FLOPs per data unit" in res.chinchilla_table() and "Compute is measured FLOPs" in res.summary()
    saved = json.loads((tmp_path / "run" / "analysis" / "scaling_laws.json").read_text())
    assert saved["cost_model"]["accounting"] == "measured" and saved["flops_accounting"] == "measured"
    again = ff.Result.load(tmp_path / "run")  # the reload plans nothing and reads the accounting from sweep.json
    assert again.analysis.cost == cost


def test_measured_accounting_without_data_to_measure_on_is_refused(tmp_path):
    import flops_fit as ff

    with pytest.raises(ValueError, match="flops_accounting: 'measured' plans each D by the model's FLOPs measured"):
        ff.find_optimal("gpt", mode="mock", compute_budgets=[1e15, 1e16], flops_accounting="measured",
                        output_dir=tmp_path, train=False)
