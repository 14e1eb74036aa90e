"""What travels to workers: picklability errors name the object; output_dir must be shared."""

from __future__ import annotations

import functools
import threading
from concurrent.futures import Future
from pathlib import Path

import cluster_helpers as h
import pytest
import sweeps

import flops_fit as ff
from flops_fit.training.cluster import (
    NotPicklableError,
    SharedStorageError,
    SubmititExecutor,
    _ClusterExecutor,
    check_picklable,
    find_output_dir,
)
from flops_fit.training.mock import mock_run


def test_unpicklable_dataset_is_named_before_anything_is_submitted(tmp_path):
    from flops_fit.training.local import make_run_fn
    from flops_fit.training.trainer import TrainConfig

    run_fn = make_run_fn(
        model_factory=h.TinyMLP, size_param="width", model_kwargs={}, dataset=h.LockedDataset(h.regression_data(64)),
        loss_fn=h.mse, train_config=TrainConfig(batch_size=8, device="cpu", val_units=8), output_dir=tmp_path, seed=0,
    )
    ex = SubmititExecutor(tmp_path / "jobs", cluster="local")
    plan = sweeps.tiny_real_plan()
    with pytest.raises(NotPicklableError) as info:
        ex.submit(run_fn, plan.runnable[0])
    msg = str(info.value)
    assert "run_fn.keywords['inp'].source.dataset._lock" in msg
    assert "_thread.lock" in msg and "cannot be sent to submitit-local workers" in msg
    assert isinstance(info.value, TypeError)
    assert not list((tmp_path / "jobs").glob("*.pkl")), "nothing may be submitted when the check fails"


def test_unpicklable_closure_is_named():
    lock = threading.Lock()

    def loss(outputs, batch):  # closes over a lock
        with lock:
            return outputs

    fn = functools.partial(mock_run, law=ff.MockLaw(), seed=0, extra=loss)
    with pytest.raises(NotPicklableError, match=r"run_fn\.keywords\['extra'\]\.__closure__\['lock'\]"):
        check_picklable(fn)


def test_picklable_run_function_passes_and_reports_size():
    fn = functools.partial(mock_run, law=ff.MockLaw(), seed=0)
    assert 0 < check_picklable(fn) < 10_000


def test_output_dir_is_found_inside_make_run_fn(tmp_path):
    assert find_output_dir(sweeps.tiny_real_run_fn(tmp_path / "x")) == tmp_path / "x"
    assert find_output_dir(functools.partial(mock_run, law=ff.MockLaw(), seed=0)) is None


class _NodeLocalDisk(_ClusterExecutor):
    """A fake engine whose workers see a different disk at the same path (no shared storage)."""

    name = "fake"
    engine = "fake-cluster"

    def __init__(self, worker_root: Path, **kw) -> None:
        super().__init__(**kw)
        self.worker_root = worker_root

    def _launch(self, fn, args, kwargs) -> Future:
        fut: Future = Future()
        if getattr(fn, "__name__", "") == "_probe_storage":  # the worker looks on its own disk
            args = (str(self.worker_root / Path(args[0]).name), *args[1:])
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001
            fut.set_exception(exc)
        return fut


def test_output_dir_not_reachable_from_workers_is_said_clearly(tmp_path):
    ex = _NodeLocalDisk(tmp_path / "worker-disk")
    run_fn = sweeps.tiny_real_run_fn(tmp_path / "out")
    with pytest.raises(SharedStorageError) as info:
        ex.submit(run_fn, sweeps.tiny_real_plan().runnable[0])
    msg = str(info.value)
    assert "output_dir: not reachable from fake-cluster workers" in msg and "cannot read" in msg
    assert f"output_dir {tmp_path / 'out'} must be on storage that the driver and every worker mount" in msg
    assert not (tmp_path / "out" / ".flops_fit_probe").exists(), "the probe must clean up after itself"


def test_shared_output_dir_passes_and_runs(tmp_path):
    class Same(_NodeLocalDisk):
        def _launch(self, fn, args, kwargs):
            fut: Future = Future()
            fut.set_result(fn(*args, **kwargs))
            return fut

    ex = Same(tmp_path)
    assert ex.check_shared_storage(tmp_path / "out")
    fut = ex.submit(functools.partial(mock_run, law=ff.MockLaw(), seed=0), sweeps.mock_plan(tmp_path).runnable[0])
    assert fut.result().details["attempts"] == 1


def test_check_storage_false_skips_the_probe(tmp_path):
    ex = _NodeLocalDisk(tmp_path / "worker-disk", check_storage=False)
    fn = functools.partial(mock_run, law=ff.MockLaw(), seed=0)
    assert ex.submit(fn, sweeps.mock_plan(tmp_path).runnable[0]).result().final_loss > 0


def test_large_payload_warning_names_its_largest_part(tmp_path):
    import numpy as np

    big = np.zeros(200_000)  # 1.6 MB travels by value
    fn = functools.partial(mock_run, law=ff.MockLaw(), seed=0, extra={"tokens": big, "note": "small"})
    ex = _NodeLocalDisk(tmp_path, large_payload_mb=1.0)
    with pytest.warns(UserWarning, match=r"largest part is run_fn\.keywords\['extra'\]\['tokens'\] \(2 MB\)"):
        ex._prepare(fn)
