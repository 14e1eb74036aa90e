"""Your own training loop (train_fn), logs without a terminal, and notebook displays."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "training"))
import ff_train_helpers as H  # noqa: E402

import flops_fit as ff  # noqa: E402

USER = dict(model_cls=H.TinyLM, model_size_param="d_model", dataset=H.TokenData(512),
            val_dataset=H.ValSlice(64, seed=9), compute_budgets=[3e7, 1e8], num_model_sizes=3, span_decades=0.5,
            size_min=4, size_max=128, n_bootstrap=20, progress=False)


def test_train_fn_gets_the_planned_model_and_budget_and_its_loss_becomes_the_record(tmp_path):
    r = ff.find_optimal(train_fn=H.plain_train, output_dir=tmp_path, **USER)
    assert isinstance(r, ff.Result) and len(r.records) == len(r.plan.runnable) >= 6
    for rec in r.records:
        assert rec.ok and 0 < rec.final_loss < 3.0  # learned something (ln 16 = 2.77 at chance)
        assert rec.details["engine"] == "train_fn" and rec.details["tokens_seen"] >= rec.num_tokens
        assert rec.details["checkpoint_dir"] == str(tmp_path / "checkpoints" / rec.experiment_id)
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())  # cleaned up
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert sweep["run_settings"]["train_fn"] == "ff_train_helpers.plain_train"
    again = ff.find_optimal(train_fn=H.plain_train, output_dir=tmp_path, **USER)  # resume: nothing is trained twice
    assert [x.timestamp for x in again.records] == [x.timestamp for x in r.records]
    with pytest.raises(ValueError, match="different plan"):  # another loop is another sweep
        ff.find_optimal(train_fn=H.nan_train, output_dir=tmp_path, **USER)


def test_train_fn_bad_returns_and_arguments_are_named(tmp_path):
    from flops_fit.training.user import UserTrainRun

    run = UserTrainRun(train_fn=H.nan_train, model_factory=H.TinyLM, size_param="d_model", model_kwargs={},
                       dataset=None, val_dataset=None, loss_fn=None, output_dir=tmp_path, seed=0)
    plan = ff.find_optimal(train=False, output_dir=tmp_path / "p", **USER)
    rec = run(plan.runnable[0])  # a NaN loss is a diverged run, not a result to fit
    assert rec.status == "diverged" and rec.final_loss is None and "nan" in rec.details["stop_reason"]
    run.train_fn = H.wrong_train
    with pytest.raises(TypeError, match=r"train_fn for .*: expected the final validation loss .* found str"):
        run(plan.runnable[0])
    with pytest.raises(TypeError, match="train_fn: expected a function"):
        ff.find_optimal(train_fn="plain_train", output_dir=tmp_path, **USER)
    with pytest.raises(ValueError, match="train_fn: replaces real training, so it needs mode='local'"):
        ff.find_optimal(train_fn=H.plain_train, mode="mock", output_dir=tmp_path, **USER)


SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from conftest import ToyModel
import flops_fit as ff
ff.find_optimal(ToyModel, "d_model", mode="mock", compute_budgets=[1e15, 1e16], num_model_sizes=3,
                output_dir={out!r}, n_bootstrap=0)
"""


def test_without_a_terminal_every_finished_run_is_one_log_line_with_time_left_by_flops(tmp_path):
    code = SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path / "o"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("[flops-fit] ")]
    assert len(lines) == 6, done.stderr[-2000:]
    assert lines[0].startswith("[flops-fit] 1/6 ") and "of FLOPs done" in lines[0] and "left" in lines[0]
    assert "100% of FLOPs done" in lines[-1]
    fracs = [int(ln.split("% of FLOPs")[0].rsplit(" ", 1)[1]) for ln in lines]
    assert fracs == sorted(fracs) and fracs[0] < 20  # by compute: the small budget's runs are a small share
    assert "\r" not in done.stderr  # no progress bar redraws in a log file


def test_result_and_plan_display_as_html_in_notebooks(tmp_path, toy_model):
    r = ff.find_optimal(toy_model, "d_model", mode="mock", compute_budgets=[1e15, 1e16, 1e17], num_model_sizes=5,
                        output_dir=tmp_path, progress=False, n_bootstrap=50)
    page = r._repr_html_()
    assert page.startswith("<div>") and "<table" in page and "predict() uses" in page
    n_opt = r.chinchilla_dataframe()["N_opt"].iloc[0]
    assert f"{n_opt:.4g}" in page
    plan = r.plan
    plan.model_name = "<script>alert(1)</script>"
    html = plan._repr_html_()
    assert "<table" in html and "<script>" not in html and "&lt;script&gt;" in html
    assert html.count("<tr>") >= len(plan.experiments)


def test_a_killed_train_fn_sweep_resumes_without_rerunning_finished_runs(tmp_path):
    import os

    from ff_proc_helpers import kill_script_when

    script = Path(__file__).parent / "training" / "train_fn_script_for_kill.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = tmp_path / "o"
    journal = out / "results.journal.jsonl"
    kill_script_when(script, out, lambda: journal.exists() and len(journal.read_text().splitlines()) >= 2,
                     "two finished runs")
    finished = {json.loads(line)["record"]["experiment_id"] for line in journal.read_text().splitlines()}
    before = len((out / "starts.log").read_text().split())
    done = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    again = (out / "starts.log").read_text().split()[before:]
    records = json.loads((out / "results.json").read_text())["records"]
    ids = [r["experiment_id"] for r in records]
    assert len(ids) == len(set(ids)) >= 6 and finished and not finished & set(again)  # finished runs not rerun
    assert sorted(set(again) | finished) == sorted(ids)


def test_progress_lines_go_through_the_flops_fit_logger_and_long_runs_log_as_they_go(tmp_path, caplog,
                                                                                    monkeypatch):
    """Routed like any logging (here pytest's handler on the root logger receives them, and no handler of our
    own is added); a run longer than RUN_LOG_EVERY_S logs its step, loss and speed while it trains."""
    import logging

    from flops_fit.training import trainer

    monkeypatch.setattr(trainer, "RUN_LOG_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, logger="flops_fit")
    res = ff.find_optimal(H.TinyLM, "d_model", dataset=H.TokenData(512), loss_fn=H.lm_loss, compute_budgets=[3e7, 1e8],
                          num_model_sizes=3, span_decades=0.5, size_min=4, size_max=128, n_bootstrap=0, workers=1,
                          train_config={"batch_size": 8, "log_every": 5}, output_dir=tmp_path)
    ours = [r for r in caplog.records if r.name == "flops_fit.progress"]
    finished = [r.getMessage() for r in ours if "of FLOPs done" in r.getMessage()]
    during = [r.getMessage() for r in ours if " step " in r.getMessage()]
    assert len(finished) == len(res.records) and finished[-1].startswith(f"[flops-fit] {len(res.records)}/")
    assert during and all("loss " in m and "tokens/s" in m and "left" in m for m in during)
    assert {m.split(":")[0] for m in during} <= {f"[flops-fit] {r.experiment_id}" for r in res.records}
    assert not logging.getLogger("flops_fit").handlers  # the user's (here pytest's) handlers route them
