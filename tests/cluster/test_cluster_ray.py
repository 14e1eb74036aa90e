"""The same sweep through a local Ray instance (2 CPUs) as through the local executor."""

from __future__ import annotations

import json

import pytest

ray = pytest.importorskip("ray")

import sweeps

import flops_fit as ff
from flops_fit.training.cluster import RayExecutor, RunFailedError
from flops_fit.training.executors import LocalExecutor, get_executor
from flops_fit.training.store import STATUS_COMPLETED, STATUS_FAILED


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_mock_sweep_matches_local(tmp_path, ray_local):
    ref = sweeps.mock_sweep(tmp_path / "local")
    ex = RayExecutor()
    assert ex.capacity == 2, "capacity should be the CPUs the cluster has / num_cpus per run"
    got = sweeps.mock_sweep(tmp_path / "ray", executor=ex)
    assert len(ref) == 9 and got.keys() == ref.keys()
    for k in ref:
        assert got[k] == ref[k], k
    ex.shutdown()
    assert ray.is_initialized(), "an executor must not shut down a Ray it did not start"


def test_registered_name(ray_local):
    ex = get_executor("ray", num_cpus=2)
    assert isinstance(ex, RayExecutor) and ex.capacity == 1
    assert ex.task_options["num_cpus"] == 2 and ex.task_options["max_retries"] == 0


def test_tiny_real_sweep_matches_local(tmp_path, ray_local):
    plan = sweeps.tiny_real_plan()
    ref = sweeps.losses(sweeps.sweep_with(plan, sweeps.tiny_real_run_fn(tmp_path / "a"), tmp_path / "a",
                                          LocalExecutor()))
    recs = sweeps.sweep_with(plan, sweeps.tiny_real_run_fn(tmp_path / "b"), tmp_path / "b", RayExecutor())
    assert all(r.status == STATUS_COMPLETED for r in recs), [r.error for r in recs]
    got = sweeps.losses(recs)
    assert got.keys() == ref.keys() and len(got) == 4
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=1e-6, abs=1e-7), k
    assert all(r.details["executor"] == "ray" and r.details["attempts"] == 1 for r in recs)


@pytest.mark.parametrize("how", ["kill", "raise"])
def test_run_that_kills_its_worker_is_retried(tmp_path, ray_local, how):
    plan = sweeps.mock_plan(tmp_path)
    target = plan.runnable[4].experiment_id
    markers = tmp_path / "markers"
    markers.mkdir()
    recs = sweeps.sweep_with(plan, sweeps.crash_run_fn(markers, target, how), tmp_path, RayExecutor())
    ids = [r.experiment_id for r in recs]
    assert sorted(ids) == sorted(e.experiment_id for e in plan.runnable) and len(set(ids)) == len(ids)
    assert all(r.status == STATUS_COMPLETED for r in recs)
    by_id = {r.experiment_id: r for r in recs}
    assert by_id[target].details["attempts"] == 2
    assert len((markers / f"{target}.attempts").read_text().splitlines()) == 2
    others = [r for r in recs if r.experiment_id != target]
    assert all(r.details["attempts"] == 1 for r in others)
    ref = sweeps.mock_sweep(tmp_path / "ref")
    assert by_id[target].final_loss == ref[target]


def test_run_failing_every_attempt_is_recorded_failed(tmp_path, ray_local):
    import functools

    from cluster_helpers import always_fails

    plan = sweeps.mock_plan(tmp_path)
    target = plan.runnable[0].experiment_id
    fn = functools.partial(always_fails, target_id=target, law=ff.MockLaw(), seed=3)
    recs = sweeps.sweep_with(plan, fn, tmp_path, RayExecutor(max_retries=1))
    by_id = {r.experiment_id: r for r in recs}
    assert len(recs) == len(plan.runnable)
    assert by_id[target].status == STATUS_FAILED
    err = by_id[target].error
    assert RunFailedError.__name__ in err and "after 2 attempt(s) (max_retries=1)" in err
    assert f"{target} can never succeed" in err
    assert sum(r.status == STATUS_COMPLETED for r in recs) == len(plan.runnable) - 1
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["records"]) == len(plan.runnable)


def test_bad_options_are_named(ray_local):
    with pytest.raises(ValueError, match=r"num_gpus: expected a number >= 0, found -1"):
        RayExecutor(num_gpus=-1)
    with pytest.raises(ValueError, match=r"capacity: expected an integer > 0, found 0"):
        RayExecutor(capacity=0)
    with pytest.raises(ValueError, match=r"max_retries: expected an integer >= 0, found -2"):
        RayExecutor(max_retries=-2)
