"""One real run: exact budget, schedule, reproducibility, divergence, repeats, resume, FLOPs."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import ff_train_helpers as H
from ff_train_helpers import PairData, StreamData, TinyLM, TinyMLP, TokenData, labels_loss, lm_loss
from flops_fit.planning import Experiment
from flops_fit.training.checkpoint import checkpoint_dir
from flops_fit.training.local import make_run_fn
from flops_fit.training.trainer import TrainConfig, lr_factor

CFG = TrainConfig(batch_size=8, val_units=128, progress=False, log_every=1)


def exp_for(model_cls, size, D, eid="e", C=1e9):
    return Experiment(eid, C, 0, size, model_cls(size).num_params(), float(D), 1.0)


def run(tmp_path, dataset=None, cfg=CFG, D=3000, size=8, model=TinyLM, loss=lm_loss, eid="e", **kw):
    dataset = dataset if dataset is not None else TokenData(512)
    fn = make_run_fn(model_factory=model, size_param="d_model" if model is TinyLM else "width", model_kwargs={},
                     dataset=dataset, loss_fn=loss, train_config=cfg, output_dir=tmp_path, seed=kw.pop("seed", 0), **kw)
    return fn(exp_for(model, size, D, eid))


def test_token_budget_exact(tmp_path):
    ds = H.CountingTokenData(512, seq_len=8)
    fn = make_run_fn(model_factory=TinyLM, size_param="d_model", model_kwargs={}, dataset=ds, loss_fn=lm_loss,
                     train_config=CFG, output_dir=tmp_path, seed=0)
    before = ds.reads
    D = 1001.5  # not a multiple of the 64 tokens per step nor of the 8 per sample
    r = fn(exp_for(TinyLM, 8, D))
    read = ds.reads - before
    assert r.status == "completed"
    assert r.details["steps"] == math.ceil(D / 64) == 16
    assert read == math.ceil(D / 8) == 126  # samples trained on: the last step is cut to 6 samples
    assert r.details["units_trained"] == 126 * 8 and r.units == "tokens"
    assert r.details["train_config"]["total_steps"] == 16


@pytest.fixture
def lr_trace(monkeypatch) -> list[float]:
    """The learning rate of every AdamW step taken while the test runs."""
    lrs: list[float] = []
    orig = torch.optim.AdamW.step

    def spy(self, *a, **k):
        lrs.append(self.param_groups[0]["lr"])
        return orig(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    return lrs


def test_lr_schedule_ends_at_last_step(tmp_path, lr_trace):
    lrs = lr_trace
    r = run(tmp_path, D=64 * 40)
    tc = r.details["train_config"]
    peak, warm = tc["lr_effective"], tc["warmup_steps"]
    assert len(lrs) == tc["total_steps"] == 40
    assert lrs[warm - 1] == pytest.approx(peak)
    assert lrs[-1] == pytest.approx(0.1 * peak)  # minimum reached exactly at the run's last step
    assert all(a < b for a, b in zip(lrs[: warm - 1], lrs[1:warm]))
    assert all(a >= b for a, b in zip(lrs[warm - 1 :], lrs[warm:]))
    assert min(lrs[warm:-1]) > 0.1 * peak


def test_lr_factor_shape():
    assert lr_factor(0, 5, 100, 0.1) == pytest.approx(0.2)
    assert lr_factor(4, 5, 100, 0.1) == 1.0
    assert lr_factor(99, 5, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(52, 5, 100, 0.1) == pytest.approx(0.55, abs=0.02)


def test_lr_scales_down_with_params(tmp_path):
    cfg = TrainConfig(batch_size=8, val_units=128, progress=False, lr_ref_params=100.0)
    r = run(tmp_path, cfg=cfg, D=640, size=16)
    n = r.num_params
    assert r.details["train_config"]["lr_effective"] == pytest.approx(3e-3 * (100.0 / n) ** 0.25)


def test_reproducible_same_seed(tmp_path):
    cfg = TrainConfig(batch_size=8, val_units=128, progress=False, lr=2e-2)
    a = run(tmp_path / "a", cfg=cfg, D=4000)
    b = run(tmp_path / "b", cfg=cfg, D=4000)
    c = run(tmp_path / "c", cfg=cfg, D=4000, seed=1)
    assert a.final_loss == b.final_loss and a.details["loss_curve"] == b.details["loss_curve"]
    assert c.final_loss != a.final_loss
    assert a.final_loss < a.details["initial_loss"] - 0.3  # it learned something


def test_divergence_stops_run(tmp_path):
    cfg = TrainConfig(batch_size=8, val_units=128, progress=False, log_every=1, lr=1e3, grad_clip=None,
                      warmup=0.0)
    r = run(tmp_path, cfg=cfg, D=64 * 200)
    assert r.status == "diverged" and r.final_loss is None
    assert r.details["steps"] < 200
    assert "initial loss" in r.error or "non-finite" in r.error


def test_repeat_warns_once_and_records_epochs(tmp_path):
    from flops_fit.training import datautil

    datautil._REPEAT_WARNED.clear()
    ds = TokenData(64, seq_len=8)  # 64 samples, 16 held out -> 48 * 8 = 384 training tokens
    fn = make_run_fn(model_factory=TinyLM, size_param="d_model", model_kwargs={}, dataset=ds, loss_fn=lm_loss,
                     train_config=CFG, output_dir=tmp_path, seed=0)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r1 = fn(exp_for(TinyLM, 8, 1000, "a"))
        r2 = fn(exp_for(TinyLM, 8, 2000, "b"))
    repeats = [x for x in w if "repeat" in str(x.message)]
    assert len(repeats) == 1
    assert r1.details["epochs"] == pytest.approx(1000 / 384, rel=0.01)
    assert r2.details["epochs"] == pytest.approx(2000 / 384, rel=0.01)


def test_repeat_refused(tmp_path):
    with pytest.raises(ValueError, match=r"dataset: run e needs 1000 units.*allow_repeat=False"):
        run(tmp_path, dataset=TokenData(64), D=1000, allow_repeat=False)


def test_pair_data_labels_loss_counts_samples(tmp_path):
    r = run(tmp_path, dataset=PairData(256), model=TinyMLP, loss=labels_loss, D=600, size=16)
    assert r.status == "completed" and r.units == "samples"
    assert r.details["loss_signature"] == "(outputs, labels)"
    assert r.details["units_trained"] == 600


def test_iterable_dataset(tmp_path):
    r = run(tmp_path, dataset=StreamData(128), D=2000)
    assert r.status == "completed" and r.details["units_trained"] == 2000
    assert r.details["epochs"] == pytest.approx(2000 / ((128 - 16) * 8), rel=0.01)


def test_measured_flops_recorded(tmp_path):
    r = run(tmp_path, D=640, flops_accounting="measured")
    d = r.details
    assert d["flops_per_unit_measured"] > 0
    assert r.flops_method == "measured" and r.flops == pytest.approx(d["flops_per_unit_measured"] * 640)
    assert d["flops_6nd"] == pytest.approx(6 * r.num_params * 640)


def test_a_run_records_the_cpu_time_of_its_loop_beside_the_wall_time(tmp_path):
    d = run(tmp_path, D=3000).details
    assert 0 < d["cpu_time_train_s"] and d["wall_time_train_s"] > 0
    # one thread in this process: the CPU seconds cannot exceed the wall seconds by more than the clocks' grain
    assert d["cpu_time_train_s"] <= d["wall_time_train_s"] * torch.get_num_threads() + 0.05


@pytest.mark.parametrize("setting, mode", [(True, None), ("reduce-overhead", "reduce-overhead"),
                                           ("max-autotune", "max-autotune")])
def test_compile_wraps_the_model_in_the_mode_asked(tmp_path, monkeypatch, setting, mode):
    seen = []

    def fake_compile(model, mode=None, **kw):  # what the trainer asks torch.compile for (no C++ compiler here)
        seen.append(mode)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    r = run(tmp_path, cfg=TrainConfig(**{**CFG.to_dict(), "compile": setting}), D=640)
    assert r.status == "completed" and seen == [mode]


def test_resume_from_checkpoint_is_exact(tmp_path):
    cfg = TrainConfig(batch_size=8, val_units=128, progress=False, checkpoint_every_steps=10)
    full = run(tmp_path / "full", cfg=cfg, D=64 * 30)
    fn = make_run_fn(model_factory=TinyLM, size_param="d_model", model_kwargs={}, dataset=TokenData(512),
                     loss_fn=H.crashing_lm_loss, train_config=cfg, output_dir=tmp_path / "crash", seed=0)
    H.FAIL_AT.update(step=25, calls=0)
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            fn(exp_for(TinyLM, 8, 64 * 30))
    finally:
        H.FAIL_AT.update(step=None, calls=0)
    d = checkpoint_dir(tmp_path / "crash", "e")
    assert (d / "state.pt").exists()
    again = fn(exp_for(TinyLM, 8, 64 * 30))
    assert again.details["resumed_from_step"] == 20
    assert again.final_loss == full.final_loss  # bit-identical to the uninterrupted run
    assert not (d / "state.pt").exists() and (d / "record.json").exists()
    # a redo after the run finished (driver crashed before storing it) is instant and identical
    assert fn(exp_for(TinyLM, 8, 64 * 30)).to_dict() == again.to_dict()


def test_iterable_repeat_refused(tmp_path):
    with pytest.raises(ValueError, match=r"dataset: the iterable ran out after 112 training samples and allow_repeat=False"):
        run(tmp_path, dataset=StreamData(128), D=2000, allow_repeat=False)


def test_run_fn_pickles_and_rejects_bad_arguments(tmp_path):
    import pickle

    fn = make_run_fn(model_factory=TinyLM, size_param="d_model", model_kwargs={}, dataset=TokenData(64),
                     loss_fn=lm_loss, train_config=CFG, output_dir=tmp_path, seed=0)
    clone = pickle.loads(pickle.dumps(fn))
    assert clone(exp_for(TinyLM, 8, 320)).status == "completed"
    with pytest.raises(ValueError, match=r"flops_accounting: expected '6ND' or 'measured', found 'exact'"):
        make_run_fn(model_factory=TinyLM, size_param="d_model", model_kwargs={}, dataset=TokenData(64),
                    loss_fn=lm_loss, train_config=CFG, output_dir=tmp_path, seed=0, flops_accounting="exact")
    with pytest.raises(TypeError, match=r"train_config: expected a TrainConfig, found dict"):
        make_run_fn(model_factory=TinyLM, size_param="d_model", model_kwargs={}, dataset=TokenData(64),
                    loss_fn=lm_loss, train_config={}, output_dir=tmp_path, seed=0)
    with pytest.raises(ValueError, match=r"dataset: expected more than 256 samples to hold out a validation split"):
        make_run_fn(model_factory=TinyLM, size_param="d_model", model_kwargs={}, dataset=TokenData(64),
                    loss_fn=lm_loss, train_config=TrainConfig(), output_dir=tmp_path, seed=0)


def test_wsd_schedule_holds_the_peak_then_cools_down_to_the_minimum_at_the_last_step():
    from flops_fit.training.trainer import cooldown_steps

    kw = dict(schedule="wsd", cooldown_fraction=0.2)
    assert cooldown_steps(100, 5, 0.2) == 20
    assert [lr_factor(s, 5, 100, 0.1, **kw) for s in (0, 4, 5, 79)] == pytest.approx([0.2, 1.0, 1.0, 1.0])
    assert lr_factor(80, 5, 100, 0.1, **kw) == pytest.approx(0.1 + 0.9 * (1 - (1 / 20) ** 0.5))  # 1-sqrt
    assert lr_factor(89, 5, 100, 0.1, **kw, cooldown_shape="linear") == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(99, 5, 100, 0.1, **kw) == pytest.approx(0.1)
    # the cooldown never eats the warmup; a fraction of 1 is a decay right after it
    assert cooldown_steps(10, 8, 0.5) == 2 and cooldown_steps(10, 2, 1.0) == 8
    assert lr_factor(2, 2, 10, 0.0, schedule="wsd", cooldown_fraction=1.0) < 1.0


@pytest.mark.parametrize("bad, message", [
    ({"schedule": "step"}, r"TrainConfig.schedule: expected 'cosine' or 'wsd', found 'step'"),
    ({"cooldown_fraction": 0}, r"TrainConfig.cooldown_fraction: expected a fraction in \(0, 1\]"),
    ({"cooldown_shape": "sqrt"}, r"TrainConfig.cooldown_shape: expected '1-sqrt' or 'linear', found 'sqrt'"),
])
def test_bad_schedule_settings_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**bad)


def test_a_real_wsd_run_holds_its_peak_and_cools_down_in_its_last_fifth(tmp_path, lr_trace):
    import dataclasses

    lrs = lr_trace
    r = run(tmp_path, cfg=dataclasses.replace(CFG, schedule="wsd"), D=64 * 40)
    tc = r.details["train_config"]
    peak, warm = tc["lr_effective"], tc["warmup_steps"]
    assert tc["schedule"].endswith("(WSD)") and "1-sqrt cooldown over the last 8 steps" in tc["schedule"]
    assert lrs[warm - 1: 32] == pytest.approx([peak] * (32 - warm + 1))  # stable until the cooldown
    assert all(a > b for a, b in zip(lrs[31:], lrs[32:]))
    assert lrs[-1] == pytest.approx(0.1 * peak)
    assert r.status == "completed" and r.final_loss < r.details["initial_loss"]
