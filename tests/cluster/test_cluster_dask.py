"""The same sweep through a Dask LocalCluster as through the local executor."""

from __future__ import annotations

import pytest

pytest.importorskip("distributed")

import sweeps

from flops_fit.training.cluster import DaskExecutor
from flops_fit.training.store import STATUS_COMPLETED


def test_threads_only_cluster_uses_in_process_transport():
    # first in the module: before the TLS cluster below (a second in-process loop after its refused
    # clients does not always start in time)
    ex = DaskExecutor(n_workers=1, processes=False)
    try:
        assert ex.client.scheduler.address.startswith("inproc://")
    finally:
        ex.shutdown()


@pytest.fixture(scope="module")
def dask_ex():
    ex = DaskExecutor(n_workers=2, processes=True)
    yield ex
    ex.shutdown()


def test_mock_sweep_matches_local(tmp_path, dask_ex):
    assert dask_ex.capacity == 2
    ref = sweeps.mock_sweep(tmp_path / "local")
    got = sweeps.mock_sweep(tmp_path / "dask", executor=dask_ex)
    assert len(ref) == 9 and got.keys() == ref.keys()
    assert all(got[k] == ref[k] for k in ref)


def test_run_that_raises_once_is_retried(tmp_path, dask_ex):
    plan = sweeps.mock_plan(tmp_path)
    target = plan.runnable[1].experiment_id
    markers = tmp_path / "markers"
    markers.mkdir()
    recs = sweeps.sweep_with(plan, sweeps.crash_run_fn(markers, target, "raise"), tmp_path, dask_ex)
    ids = [r.experiment_id for r in recs]
    assert sorted(ids) == sorted(e.experiment_id for e in plan.runnable)
    assert all(r.status == STATUS_COMPLETED for r in recs)
    assert {r.experiment_id: r for r in recs}[target].details["attempts"] == 2


def test_worker_death_still_completes_every_run_once(tmp_path, dask_ex):
    plan = sweeps.mock_plan(tmp_path)
    target = plan.runnable[3].experiment_id
    markers = tmp_path / "markers"
    markers.mkdir()
    recs = sweeps.sweep_with(plan, sweeps.crash_run_fn(markers, target, "kill"), tmp_path, dask_ex)
    ids = [r.experiment_id for r in recs]
    assert sorted(ids) == sorted(e.experiment_id for e in plan.runnable) and len(set(ids)) == len(ids)
    assert all(r.status == STATUS_COMPLETED for r in recs)
    assert len((markers / f"{target}.attempts").read_text().splitlines()) == 2


def test_local_cluster_refuses_other_users_tasks(dask_ex):
    """Another local user who finds the scheduler's port cannot submit a task: TLS with this process's key."""
    import distributed

    addr = dask_ex.client.scheduler.address
    assert addr.startswith("tls://127.0.0.1:")
    plain = "tcp://" + addr.split("://", 1)[1]
    with pytest.raises((OSError, TimeoutError)):
        distributed.Client(plain, timeout="3s")
    with pytest.raises((OSError, TimeoutError, TypeError, ValueError)):
        distributed.Client(addr, timeout="3s")  # tls:// without the certificate
