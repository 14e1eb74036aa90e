"""An output directory is untrusted input: nothing read from it runs code or reaches outside it."""

from __future__ import annotations

import json
import os
import random
import warnings
from pathlib import Path

import pytest
import torch

import flops_fit as ff
from flops_fit import io
from flops_fit.training import checkpoint as ckpt
from flops_fit.training.store import LOCK_FILE, ResultsStore, driver_lock

MARKER = Path("/tmp") / f"flops-fit-pwned-{os.getpid()}"


class Payload:
    """Unpickling this runs code: it creates MARKER."""

    def __reduce__(self):
        return (open, (str(MARKER), "w"))


@pytest.fixture(autouse=True)
def _no_marker():
    MARKER.unlink(missing_ok=True)
    yield
    MARKER.unlink(missing_ok=True)


def test_planted_pickle_checkpoint_is_refused_without_running(tmp_path):
    d = tmp_path / "checkpoints" / "C1e9-d8"
    d.mkdir(parents=True)
    torch.save({"fingerprint": "abc", "model": Payload()}, d / ckpt.STATE_FILE)
    io.atomic_write_json(d / ckpt.STATE_GATE, {"fingerprint": "abc"})  # the fingerprint is public: forge it
    with pytest.warns(UserWarning, match=r"state\.pt: not resumed because it could not be read as plain tensors"):
        assert ckpt.load_state(d, "abc") is None
    assert not MARKER.exists(), "the planted checkpoint ran code"
    assert not (d / ckpt.STATE_FILE).exists() and list(d.glob("state.pt.rejected-*"))  # set aside, kept


def test_foreign_checkpoint_is_never_opened(tmp_path, monkeypatch):
    d = tmp_path / "c"
    d.mkdir()
    torch.save({"fingerprint": "other"}, d / ckpt.STATE_FILE)
    io.atomic_write_json(d / ckpt.STATE_GATE, {"fingerprint": "other"})
    opened = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: opened.append(a))
    with pytest.warns(UserWarning, match="made with different settings"):
        assert ckpt.load_state(d, "mine") is None
    assert not opened  # the gate decided before the tensor file was read


def test_own_checkpoint_round_trips_with_weights_only(tmp_path):
    import random as pyrandom

    import numpy as np

    from flops_fit.training.trainer import _rng_state, _set_rng_state

    d = tmp_path / "c"
    np.random.seed(5)
    state = {"fingerprint": "fp", "model": {"w": torch.ones(2)}, "rng": _rng_state(), "curve": [[0, 1.5]],
             "step": 3, "ema": None}
    draws = (np.random.rand(3).tolist(), torch.rand(3).tolist(), pyrandom.random())
    ckpt.save_state(d, state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = ckpt.load_state(d, "fp")  # weights_only=True: numpy's RNG state is stored as a tensor
    assert back["step"] == 3 and torch.equal(back["model"]["w"], torch.ones(2))
    np.random.seed(99)
    torch.manual_seed(99)
    _set_rng_state(back["rng"])
    assert (np.random.rand(3).tolist(), torch.rand(3).tolist(), pyrandom.random()) == draws


def test_dotdot_ids_are_refused_before_touching_the_file_system(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"experiment_id: expected an id of letters.*'\.\./\.\./victim'"):
        ckpt.cleanup_checkpoints(out, ["../../victim"])
    assert (victim / "keep.txt").read_text() == "precious"
    # a forged results.json record
    rec = {"experiment_id": "../../victim", "compute_budget": 1e9, "size_value": 8, "num_params": 10,
           "num_tokens": 1e7, "final_loss": 2.0, "status": "completed", "flops": 6e8, "flops_method": "6ND"}
    (out / "results.json").write_text(json.dumps({"schema": 1, "kind": "flops-fit/results",
                                                  "plan_fingerprint": "x", "records": [rec]}))
    with pytest.raises(ValueError, match=r"results\.json: records\[0\]: field 'experiment_id': expected an id"):
        ResultsStore.read(out / "results.json")
    # a sweep.json whose id would write records/../../x/keep.json
    plan = ff.find_optimal(_Toy, "d_model", compute_budgets=[1e15, 1e16], mode="mock", output_dir=out / "p",
                           train=False)
    data = json.loads((out / "p" / "sweep.json").read_text())
    data["experiments"][0]["experiment_id"] = "../../x/keep"
    (out / "p" / "sweep.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"sweep\.json: experiments\[0\]\.experiment_id: expected an id"):
        ff.SweepPlan.load(str(out / "p" / "sweep.json"))
    assert plan.experiments


def test_symlinked_lock_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "bashrc"
    target.write_text("export PATH=...\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).symlink_to(target)
    with pytest.raises(ValueError, match=r"\.results\.lock: is a symbolic link; refusing to use it"), driver_lock(out):
        pass
    assert target.read_text() == "export PATH=...\n"


class _Toy:
    def __init__(self, d_model: int) -> None:
        self.d = d_model

    def num_params(self) -> int:
        return 48 * self.d * self.d + 256 * self.d


def _mock_sweep(out: Path) -> ff.Result:
    return ff.find_optimal(_Toy, "d_model", compute_budgets=[1e17, 1e18, 1e19], mode="mock", output_dir=out,
                           progress=False, n_bootstrap=40, mock_law=ff.MockLaw(noise=0.01))


def test_forged_and_edited_records_are_refused_by_name(tmp_path):
    _mock_sweep(tmp_path)
    path = tmp_path / "results.json"
    data = json.loads(path.read_text())
    good = json.loads(path.read_text())
    data["records"][0]["num_params"] = 5  # an edited N
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"results\.json: record 'C1e\+17-d_model\d+': field 'num_params' is 5, but "
                                         r"the plan in sweep\.json says"):
        ff.Result.load(tmp_path)
    forged = dict(good["records"][0], experiment_id="C1e+17-d_model9999")
    path.write_text(json.dumps({**good, "records": good["records"] + [forged]}))
    with pytest.raises(ValueError, match=r"record 'C1e\+17-d_model9999' is not an experiment of the plan"):
        ff.Result.load(tmp_path)
    neg = json.loads(json.dumps(good))
    neg["records"][1]["final_loss"] = -1.0
    path.write_text(json.dumps(neg))
    with pytest.raises(ValueError, match=r"records\[1\]: field 'final_loss': a completed run needs a finite positive"):
        ff.Result.load(tmp_path)
    bad_utf8 = tmp_path / "analysis" / "scaling_laws.json"
    path.write_text(json.dumps(good))
    bad_utf8.write_bytes(b'{"schema": 1, "kind": "\xff"}')
    with pytest.raises(ValueError, match=r"scaling_laws\.json: not UTF-8 text"):
        ff.Result.load(tmp_path)


def test_shuffled_results_json_changes_no_printed_number(tmp_path):
    res = _mock_sweep(tmp_path)
    before = (res.summary(), res.chinchilla_table())
    path = tmp_path / "results.json"
    data = json.loads(path.read_text())
    random.Random(4).shuffle(data["records"])
    path.write_text(json.dumps(data))
    again = ff.Result.load(tmp_path)
    assert (again.summary(), again.chinchilla_table()) == before


def test_stale_temp_files_of_dead_writers_are_cleaned(tmp_path):
    old = tmp_path / ".results.json.abc.tmp"
    old.write_text("{")
    fresh = tmp_path / "records" / ".x.json.def.tmp"
    fresh.parent.mkdir()
    fresh.write_text("{")
    os.utime(old, (0, 0))
    assert io.clean_stale_temp_files(tmp_path) == [old]
    assert fresh.exists()
