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
    c1, c2 = one.details["loss_curve_full"], two.details["loss_curve_full"]
    assert len(c1) == len(c2) == 18
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

    fp = run_fingerprint(EXP, inp, engine="ddp")  # the checkpoint is read only under its own fingerprint
    state = ckpt.load_state(ckpt.checkpoint_dir(tmp_path / "cut", EXP.experiment_id), fp)
    assert state is not None and state["step"] == 10
    rec = ddp_train_run(EXP, inp)
    assert rec.details["resumed_from_step"] == 10
    assert rec.details["loss_curve_full"] == pytest.approx(full.details["loss_curve_full"], abs=1e-6)
    assert rec.final_loss == pytest.approx(full.final_loss, abs=1e-6)
    assert ckpt.load_state(ckpt.checkpoint_dir(tmp_path / "cut", EXP.experiment_id), fp) is None


def test_bad_inputs_are_named():
    with pytest.raises(TypeError, match=r"inp: expected flops_fit.training.trainer.RunInputs, found dict"):
        ddp_train_run(EXP, {})
    with pytest.raises(ValueError, match=r"world_size: expected a positive integer, found 0"):
        spawn_local(0, ddp_train_run)


def test_shares_cover_the_batch_once():
    shares = _split(13, 2)
    assert [len(s) for s in shares] == [7, 6] and sorted(i for s in shares for i in s) == list(range(13))
    assert [len(s) for s in _split(1, 3)] == [1, 0, 0]
