"""How data reaches the model is checked before anything trains, and each mistake says how to fix it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ff_train_helpers import TinyLM, TokenData, lm_loss

import flops_fit as ff
from flops_fit.models.losses import causal_lm_loss

KW = dict(compute_budgets=[1e7, 3e7], num_model_sizes=3, span_decades=0.3, size_min=2, size_max=64,
          train_config={"batch_size": 8, "val_units": 64, "progress": False}, progress=False)


class Unshifted(TokenData):
    """HF-style items: labels are the inputs themselves (the model shifts them internally)."""

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.x[i]}


class LMLogits(TinyLM):
    pass


def test_unshifted_labels_with_the_projects_causal_loss_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"dataset: its 'labels' equal its 'input_ids' \(unshifted.*causal_lm_loss "
                                         r"compares position t with labels\[t\].*learn to copy its input"):
        ff.find_optimal(TinyLM, "d_model", dataset=Unshifted(256), loss_fn=causal_lm_loss, output_dir=tmp_path,
                        **KW)
    assert not (tmp_path / "results.json").exists()


def test_a_dataloaders_own_batch_size_is_never_silently_replaced(tmp_path):
    loader = torch.utils.data.DataLoader(TokenData(256), batch_size=512)
    with pytest.raises(ValueError, match=r"dataset: a DataLoader with batch_size=512 was given, but the sweep trains "
                                         r"at TrainConfig\.batch_size=8 .*train_config=\{'batch_size': 512\}"):
        ff.find_optimal(TinyLM, "d_model", dataset=loader, loss_fn=lm_loss, output_dir=tmp_path, **KW)
    same = torch.utils.data.DataLoader(TokenData(256), batch_size=8)
    plan = ff.find_optimal(TinyLM, "d_model", dataset=same, loss_fn=lm_loss, output_dir=tmp_path, train=False,
                           **{k: v for k, v in KW.items() if k != "progress"})
    assert plan.runnable


def test_val_dataset_of_the_wrong_shape_is_named_before_training(tmp_path):
    wrong = torch.utils.data.TensorDataset(torch.randn(32, 7), torch.randn(32, 1))
    with pytest.raises(ValueError, match=r"val_dataset: "):
        ff.find_optimal(TinyLM, "d_model", dataset=TokenData(256), val_dataset=wrong, loss_fn=lm_loss,
                        output_dir=tmp_path, **KW)
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize("data, kind", [(np.zeros((10, 3)), "ndarray"), ((np.zeros(3), np.zeros(3)), "tuple")])
def test_arrays_and_tuples_get_the_tensordataset_fix(tmp_path, data, kind):
    with pytest.raises(TypeError, match=rf"dataset: expected a torch Dataset, IterableDataset or DataLoader, found "
                                        rf"{kind} — wrap arrays in a TensorDataset first"):
        ff.find_optimal(TinyLM, "d_model", dataset=data, loss_fn=lm_loss, output_dir=tmp_path, **KW)


def test_a_model_instance_is_told_to_pass_the_class(tmp_path):
    with pytest.raises(TypeError, match=r"model_cls: expected a model class or a factory .* found an instance of "
                                        r"TinyLM; .* pass the class itself \(TinyLM\)"):
        ff.find_optimal(TinyLM(8), "d_model", dataset=TokenData(256), loss_fn=lm_loss, output_dir=tmp_path, **KW)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_one_clear_line(tmp_path):
    kw = dict(KW, train_config={**KW["train_config"], "device": "cuda"})
    with pytest.raises(ValueError, match=r"TrainConfig\.device: 'cuda' was asked for, but (this PyTorch build has "
                                         r"no CUDA|no CUDA device is visible); use device='auto'"):
        ff.find_optimal(TinyLM, "d_model", dataset=TokenData(256), loss_fn=lm_loss, output_dir=tmp_path, **kw)
    assert not (tmp_path / "results.json").exists()


def test_train_false_gives_the_plan_that_trains(tmp_path):
    """Same checks, same flags: the too-few-steps flag needs the batch size, which train=False now applies."""
    kw = {k: v for k, v in KW.items() if k != "progress"}
    plan = ff.find_optimal(TinyLM, "d_model", dataset=TokenData(256), loss_fn=lm_loss, output_dir=tmp_path / "p",
                           train=False, **kw)
    res = ff.find_optimal(TinyLM, "d_model", dataset=TokenData(256), loss_fn=lm_loss, output_dir=tmp_path / "r",
                          n_bootstrap=0, **KW)
    assert [e.experiment_id for e in plan.runnable] == [e.experiment_id for e in res.plan.runnable]
    assert [e.flag_reason for e in plan.experiments] == [e.flag_reason for e in res.plan.experiments]


def test_the_cost_estimate_is_in_the_plan_a_user_inspects_and_uses_the_runs_threads(tmp_path):
    kw = {k: v for k, v in KW.items() if k != "progress"}
    kw["train_config"] = {**kw["train_config"], "num_threads": 1}
    plan = ff.find_optimal(TinyLM, "d_model", dataset=TokenData(256), loss_fn=lm_loss, output_dir=tmp_path,
                           train=False, **kw)
    est = plan.cost_estimate
    assert est and est["num_threads"] == 1 and est["total_seconds"] > 0
    assert set(est["per_experiment"]) == {e.experiment_id for e in plan.runnable}
    assert "estimated wall time:" in plan.summary() and "with 1 thread(s)" in plan.summary()


def test_each_run_records_its_estimate_beside_its_wall_time(tmp_path, monkeypatch):
    from flops_fit import api

    monkeypatch.setattr(api, "LONG_SWEEP_S", 0.0)  # every sweep is "long": announced even with progress=False
    with pytest.warns(UserWarning, match=r"the sweep is estimated at \d+ s .* for \d+ runs; training starts now"):
        res = ff.find_optimal(TinyLM, "d_model", dataset=TokenData(256), loss_fn=lm_loss, output_dir=tmp_path,
                              n_bootstrap=0, **KW)
    est = res.plan.cost_estimate["per_experiment"]
    for r in res.records:
        assert r.details["estimated_wall_time_s"] == pytest.approx(est[r.experiment_id])
        assert r.wall_time_s > 0


def test_the_readme_gpt_example_trains_exactly_the_plan_train_false_shows(tmp_path, monkeypatch):
    """The README's `gpt` sweep: the plan handed to training by train=True is the train=False plan, flags and
    runnable set included (training itself is stopped at its door: the demo test trains it for real)."""
    from flops_fit import pipeline

    kw = dict(model_kwargs={"n_layers": 2, "head_dim": 8, "max_seq_len": 64}, dataset="stdlib",
              data_options={"seq_len": 64}, compute_budgets=[3e10, 1e11, 3e11], num_model_sizes=5, span_decades=0.5,
              center_tokens_per_param=60, size_min=8, size_max=256, estimate_cost=False)
    shown = ff.find_optimal("gpt", output_dir=tmp_path / "shown", train=False, **kw)
    handed = []

    def stop(spec, plan, *args, **kwargs):
        handed.append(plan)
        raise KeyboardInterrupt("stopped at training's door")

    monkeypatch.setattr(pipeline, "train", stop)
    with pytest.raises(KeyboardInterrupt):
        ff.find_optimal("gpt", output_dir=tmp_path / "trained", progress=False, **kw)
    (plan,) = handed
    assert [e.experiment_id for e in plan.runnable] == [e.experiment_id for e in shown.runnable]
    assert [(e.experiment_id, e.flag_reason) for e in plan.experiments] == \
        [(e.experiment_id, e.flag_reason) for e in shown.experiments]
    assert plan.fingerprint() == shown.fingerprint() and len(shown.runnable) >= 12
