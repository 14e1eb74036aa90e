"""The same sweep through submitit's local executor (one process per job) as through the local one."""

from __future__ import annotations

import pytest

pytest.importorskip("submitit")

import sweeps

from flops_fit.training.cluster import SubmititExecutor
from flops_fit.training.executors import LocalExecutor, get_executor
from flops_fit.training.store import STATUS_COMPLETED


def local_slurm(tmp_path, **kw) -> SubmititExecutor:
    return SubmititExecutor(tmp_path / "submitit", cluster="local", time_min=5, **kw)


def test_mock_sweep_matches_local(tmp_path):
    ref = sweeps.mock_sweep(tmp_path / "local")
    with local_slurm(tmp_path) as ex:
        got = sweeps.mock_sweep(tmp_path / "slurm", executor=ex)
    assert len(ref) == 9 and got.keys() == ref.keys()
    assert all(got[k] == ref[k] for k in ref)
    assert list((tmp_path / "submitit").glob("*_log.out")), "jobs should have run through submitit"


def test_tiny_real_sweep_matches_local(tmp_path):
    plan = sweeps.tiny_real_plan(budgets=(1e6,))  # 2 runs: every job is a fresh process that imports torch
    ref = sweeps.losses(sweeps.sweep_with(plan, sweeps.tiny_real_run_fn(tmp_path / "a"), tmp_path / "a",
                                          LocalExecutor()))
    with local_slurm(tmp_path) as ex:
        recs = sweeps.sweep_with(plan, sweeps.tiny_real_run_fn(tmp_path / "b"), tmp_path / "b", ex)
    assert all(r.status == STATUS_COMPLETED for r in recs), [r.error for r in recs]
    got = sweeps.losses(recs)
    assert got.keys() == ref.keys()
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=1e-6, abs=1e-7), k


def test_job_that_kills_itself_is_retried(tmp_path):
    plan = sweeps.mock_plan(tmp_path)
    target = plan.runnable[2].experiment_id
    markers = tmp_path / "markers"
    markers.mkdir()
    with local_slurm(tmp_path) as ex:
        recs = sweeps.sweep_with(plan, sweeps.crash_run_fn(markers, target, "kill"), tmp_path, ex)
    ids = [r.experiment_id for r in recs]
    assert sorted(ids) == sorted(e.experiment_id for e in plan.runnable) and len(set(ids)) == len(ids)
    assert all(r.status == STATUS_COMPLETED for r in recs)
    assert {r.experiment_id: r for r in recs}[target].details["attempts"] == 2


def test_options_map_onto_slurm_parameters(tmp_path):
    ex = get_executor("slurm", folder=tmp_path / "s", cluster="local", partition="gpu", time_min=30,
                      gpus_per_node=0, capacity=3)
    assert isinstance(ex, SubmititExecutor) and ex.capacity == 3
    with pytest.raises(ValueError, match=r"cluster: expected None, 'slurm', 'local' or 'debug', found 'pbs'"):
        SubmititExecutor(tmp_path, cluster="pbs")
    with pytest.raises(ValueError, match=r"time_min: expected an integer > 0, found 0"):
        SubmititExecutor(tmp_path, cluster="local", time_min=0)
