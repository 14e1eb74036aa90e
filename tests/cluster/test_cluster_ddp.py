"""One run on two gloo processes follows the same loss curve as one process with the same global batch."""

from __future__ import annotations

import dataclasses

import cluster_helpers as h
import pytest

from flops_fit.planning import Experiment
from flops_fit.training.distributed import _split, ddp_train_run, spawn_local
from flops_fit.training.local import make_run_fn
from flops_fit.training.trainer import TrainConfig


def _inputs(tmp_path, **cfg):
    config = TrainConfig(**{"batch_size": 12, "grad_accum_steps": 2, "device": "cpu", "measure_flops": False,
                            "num_threads": 1, "progress": False, "val_units": 64, "lr": 1e-2, **cfg})
    fn = make_run_fn(model_factory=h.TinyMLP, size_param="width", model_kwargs={}, dataset=h.regression_data(512),
                     loss_fn=h.mse, train_config=config, output_dir=tmp_path, seed=0)
    return fn.keywords["inp"]


# 17 optimizer steps of 24 samples and a last step of 13 (odd: the two ranks' shares differ)
EXP = Experiment("C-ddp-width16", 1e6, 0, 16, 161, 17 * 24 + 13, 161.0)


def test_two_gloo_processes_match_one_process(tmp_path):
    one = ddp_train_run(EXP, _inputs(tmp_path / "one"))
    two = spawn_local(2, ddp_train_run, EXP, _inputs(tmp_path / "two"))
    assert two.details["world_size"] == 2 and one.details["world_size"] == 1
    assert one.details["steps"] == two.details["steps"] == 18
    assert one.details["units_trained"] == two.details["units_trained"] == EXP.num_tokens
    c1 = [v for _, v in one.details["loss_curve"]]
    c2 = [v for _, v in two.details["loss_curve"]]
    assert len(c1) == len(c2) == 18  # 18 steps, fewer than loss_curve_points: every step
    assert max(abs(a - b) for a, b in zip(c1, c2)) < 1e-4
    assert c1[-1] < c1[0], "the curve should go down (the test must compare something that moves)"
    assert two.final_loss == pytest.approx(one.final_loss, abs=1e-4)
    assert not (tmp_path / "two" / "checkpoints" / EXP.experiment_id / "state.pt").exists()


class _FailsAfter:
    """A loss that raises on call `n` (a crash mid-run), else the MSE."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self, outputs, batch):
        self.calls += 1
        if self.calls == self.n:
            raise RuntimeError("crash mid-run")
        return h.mse(outputs, batch)


def test_resume_from_checkpoint_gives_the_same_curve(tmp_path):
    from flops_fit.training import checkpoint as ckpt

    full = ddp_train_run(EXP, _inputs(tmp_path / "full"))
    inp = _inputs(tmp_path / "cut", checkpoint_every_steps=5)
    with pytest.raises(RuntimeError, match="crash mid-run"):
        ddp_train_run(EXP, dataclasses.replace(inp, loss_fn=_FailsAfter(2 * 12 + 1)))  # dies in step 13
    from flops_fit.training.trainer import run_fingerprint

    fp = run_fingerprint(EXP, inp, "fp32")  # the checkpoint is read only under its own fingerprint
    state = ckpt.load_state(ckpt.checkpoint_dir(tmp_path / "cut", EXP.experiment_id), fp)
    assert state is not None and state["step"] == 10
    rec = ddp_train_run(EXP, inp)
    assert rec.details["resumed_from_step"] == 10
    assert [v for _, v in rec.details["loss_curve"]] == pytest.approx([v for _, v in full.details["loss_curve"]],
                                                                      abs=1e-6)
    assert rec.final_loss == pytest.approx(full.final_loss, abs=1e-6)
    assert ckpt.load_state(ckpt.checkpoint_dir(tmp_path / "cut", EXP.experiment_id), fp) is None


class _DivergesAt:
    """A loss that turns enormous from call `n` on (a blow-up mid-run), else the MSE."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self, outputs, batch):
        self.calls += 1
        loss = h.mse(outputs, batch)
        return loss * 1e6 if self.calls >= self.n else loss


def test_two_gloo_processes_detect_divergence_and_measure_flops(tmp_path):
    """The one trainer on two ranks: the blow-up is seen alike by both (no hang), the run is diverged, and the
    FLOPs are measured (FlopCounterMode) and recorded as the run's compute, not 6ND."""
    inp = dataclasses.replace(_inputs(tmp_path / "div", measure_flops=True, log_every=2), loss_fn=_DivergesAt(9),
                              flops_accounting="measured")
    rec = spawn_local(2, ddp_train_run, EXP, inp)
    assert rec.details["world_size"] == 2
    assert rec.status == "diverged" and rec.final_loss is None
    assert "exceeded 3 x initial loss" in rec.details["stop_reason"]
    assert rec.details["steps"] < 18  # stopped early, at a read-back
    per_unit = rec.details["flops_per_unit_measured"]
    assert per_unit is not None and per_unit > 0
    assert rec.flops_method == "measured" and rec.flops == pytest.approx(per_unit * EXP.num_tokens)
    # the same model in one process measures the same FLOPs per unit
    one = ddp_train_run(EXP, _inputs(tmp_path / "one", measure_flops=True))
    assert one.details["flops_per_unit_measured"] == pytest.approx(per_unit, rel=1e-6)


def test_bad_inputs_are_named():
    with pytest.raises(TypeError, match=r"inp: expected flops_fit.training.trainer.RunInputs, found dict"):
        ddp_train_run(EXP, {})
    with pytest.raises(ValueError, match=r"world_size: expected a positive integer, found 0"):
        spawn_local(0, ddp_train_run)


def test_shares_cover_the_batch_once():
    shares = _split(13, 2)
    assert [len(s) for s in shares] == [7, 6] and sorted(i for s in shares for i in s) == list(range(13))
    assert [len(s) for s in _split(1, 3)] == [1, 0, 0]
