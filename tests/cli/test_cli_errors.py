"""Bad input gives a non-zero exit and one line naming the problem; the config tree stays consistent."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from ff_cli_helpers import assert_no_stray_dirs, error_line, ff
from flops_fit import pipeline as stages
from flops_fit.cli.main import compose_config
from flops_fit.cli.study import ConfigError, Study
from flops_fit.training.store import ResultsStore


def test_truncated_results_json_names_the_file(tmp_path):
    good = {"schema": 1, "kind": "flops-fit/results", "plan_fingerprint": "abc", "records": []}
    out = tmp_path / "study"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(good)[:40])
    proc = ff("analyze", "output_dir=study", cwd=tmp_path)
    line = error_line(proc)
    assert proc.returncode == 1
    assert line.startswith("ff-analyze: error: study/results.json: not valid JSON")


def test_unknown_config_key_is_named_with_a_suggestion(tmp_path):
    proc = ff("plan", "compute.min_flop=1e18", cwd=tmp_path)
    line = error_line(proc)
    assert proc.returncode == 2
    assert "unknown key 'compute.min_flop'" in line and "did you mean 'compute.min_flops'" in line
    assert list(tmp_path.iterdir()) == []  # nothing written, no outputs/ or .hydra


def test_target_that_does_not_import_is_named(tmp_path):
    proc = ff("plan", "model=custom", "model._target_=plugin_models.Nope", "model.size_param=width", cwd=tmp_path)
    line = error_line(proc)
    assert "model._target_" in line and "'plugin_models.Nope' not found" in line and "no attribute 'Nope'" in line
    assert list(tmp_path.iterdir()) == []


def test_contract_violation_uses_the_library_message_and_verbose_shows_the_traceback(tmp_path):
    proc = ff(
        "plan", "model=custom", "model._target_=plugin_models.NoCount", "model.size_param=width",
        "mode=mock", "verbose=true", cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr  # verbose=true
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ff-plan: error: model_cls: instances of NoCount must have a num_params()")
    assert_no_stray_dirs(tmp_path)


# ---------------------------------------------------------------------------
# in-process: the configuration tree


def _compose(*overrides: str) -> dict:
    ns = argparse.Namespace(overrides=list(overrides), config=None, config_dir=None, config_name=None, cfg=False)
    return compose_config(ns)


def test_training_section_is_exactly_trainconfig_with_its_defaults():
    from flops_fit.training.trainer import TrainConfig

    training = _compose()["training"]
    defaults = TrainConfig().to_dict()
    assert set(training) == set(defaults)
    for k, v in defaults.items():
        assert training[k] == (list(v) if isinstance(v, tuple) else v), k


@pytest.mark.parametrize("preset", ["mock_demo", "cpu_small", "gpu"])
def test_presets_compose_and_validate(preset):
    study = Study(_compose(f"preset={preset}"))
    spec = study.spec()  # the model and data contracts hold on a probe instance
    ident = spec.identity_plan()
    assert ident.run_settings["mode"] == study.mode
    if study.mode == "local":
        assert ident.model_kwargs["vocab_size"] == 260  # filled from the byte tokenizer
        assert spec.settings.units_per_step == study.config["training"]["batch_size"] * study.config["data"]["seq_len"]


def test_every_registry_architecture_is_a_model_option():
    from flops_fit.models import list_models

    for name in list_models():
        cfg = _compose(f"model={name}", "mode=mock")
        assert cfg["model"]["architecture"] == name


def test_study_config_errors_name_the_key():
    cfg = _compose("mode=mock")
    cfg["planning"]["span_decade"] = 1.0
    with pytest.raises(ConfigError, match=r"unknown key 'planning.span_decade'; did you mean 'planning.span_decades'"):
        Study(cfg)
    cfg = _compose("data=text")
    with pytest.raises(ConfigError, match=r"config: data.paths is required"):
        Study(cfg)
    Study(_compose("data=text", "mode=mock"))  # data is not needed by the mock engine


@pytest.mark.parametrize("overrides, message", [
    (["forecast.computee=1e24"], r"unknown key 'forecast.computee'; did you mean 'forecast.compute'"),
    (["forecast.compute=lots"], r"forecast.compute: expected a positive number of FLOPs, found 'lots'"),
    (["forecast.compute=-1"], r"forecast.compute: expected a positive finite number of FLOPs, found -1$"),
    (["forecast.compute=1e24", "forecast.max_ratio=0.5"], r"forecast.max_ratio: expected a finite number in \(1, inf\)"),
])
def test_a_bad_forecast_request_is_refused_before_any_stage_works(overrides, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        Study(_compose("mode=mock", *overrides))
    assert Study(_compose("mode=mock", "forecast.compute=3e22"))._forecast_request() == (3e22, None)


def test_study_file_with_config_dir(tmp_path):
    (tmp_path / "study.yaml").write_text(
        "defaults:\n  - config\n  - override model: lstm\n  - _self_\n"
        "output_dir: runs/lstm\nmode: mock\nmodel:\n  n_layers: 1\ncompute:\n  min_flops: 1e14\n"
    )
    ns = argparse.Namespace(overrides=["compute.num_budgets=2"], config=str(tmp_path / "study.yaml"),
                            config_dir=None, config_name=None, cfg=False)
    cfg = compose_config(ns)
    assert cfg["model"]["architecture"] == "lstm" and cfg["model"]["n_layers"] == 1
    assert cfg["compute"]["min_flops"] == 1e14 and cfg["compute"]["num_budgets"] == 2


# ---------------------------------------------------------------------------
# in-process: consistency of the results store under concurrent training


def _mock_dir(tmp_path):
    study = Study(_compose(*["preset=mock_demo", "compute.budgets=[1e18,1e19]", "planning.num_model_sizes=3"],
                           f"output_dir={tmp_path / 'o'}"))
    plan = study.plan()
    return study.output_dir, plan, stages.make_mock_run_fn(plan)


def test_driver_lock_refuses_a_second_driver(tmp_path):
    out, plan, run_fn = _mock_dir(tmp_path)
    with stages.driver_lock(out) as mine:
        assert mine
        with pytest.raises(RuntimeError, match=r"another driver is writing .*results.json"):
            stages.train_stage(out, run_fn, plan=plan, progress=False)
        # single experiments need no lock: they write only their own record file
        rep = stages.train_stage(out, run_fn, plan=plan, experiment_id=1)
        assert rep.results_path == out / "records" / f"{plan.runnable[1].experiment_id}.json"
    rep = stages.train_stage(out, run_fn, plan=plan, progress=False)
    assert rep.merged == 1 and len(rep.trained) == len(plan.runnable) - 1


def test_merge_is_idempotent_and_refuses_records_of_another_plan(tmp_path):
    out, plan, run_fn = _mock_dir(tmp_path)
    for i in range(len(plan.runnable)):
        stages.train_stage(out, run_fn, plan=plan, experiment_id=i)
    store = ResultsStore(out / "results.json", plan.fingerprint())
    assert stages.merge_records(out, store) == len(plan.runnable)
    assert stages.merge_records(out, store) == 0
    _, records = ResultsStore.read(out / "results.json")
    assert len(records) == len(plan.runnable)
    rec = dataclasses.replace(records[0], experiment_id="stranger")
    stages.write_record_file(out, rec, "0000000000000000")
    with pytest.raises(ValueError, match=r"stranger.json: field 'plan_fingerprint' is 0000000000000000"):
        stages.merge_records(out, store)


def test_check_plan_matches_names_the_first_difference(tmp_path):
    out, plan, _ = _mock_dir(tmp_path)
    other = Study(_compose("preset=mock_demo", "mock_law.noise=0.05", f"output_dir={out}")).spec().identity_plan()
    with pytest.raises(ValueError, match=r"field 'run_settings.mock_law.noise' is 0.01, but this study gives 0.05"):
        stages.check_plan_matches(plan, other, "sweep.json")


def test_gmm_assignments_through_the_cli_uses_the_assignments_loss():
    """The objective is asked of the model in one place: the CLI and the library pick the same loss."""
    from flops_fit.models import losses

    # num_clusters == dim once fooled the CLI's guess into the centres (MSE) loss
    study = Study(_compose("model=gmm", "model.prediction_type=assignments", "model.num_clusters=2", "model.dim=2",
                           "data=custom", "data._target_=flops_fit.data.synthetic.GaussianMixtureSets",
                           "+data.num_clusters=2", "+data.dim=2", "compute.budgets=[1e9,1e10]"))
    spec = study.spec()
    assert spec.model.objective == "gmm_assignments"
    assert spec.loss_fn is losses.gmm_assignments_loss
    assert spec.run_settings()["loss"] == "flops_fit.models.losses.gmm_assignments_loss"
    lstm = Study(_compose("model=lstm", "model.bidirectional=true", "mode=mock")).spec()
    assert lstm.model.objective == "masked_lm"


def test_one_budget_cli_sweep_is_refused_before_training(tmp_path):
    proc = ff("run", "preset=mock_demo", "compute.budgets=[3e18]", "output_dir=one", cwd=tmp_path)
    assert proc.returncode == 1
    assert "a scaling-law fit needs runnable runs at 2 or more budgets" in proc.stderr
    assert not (tmp_path / "one" / "results.json").exists()  # nothing was trained


def test_train_stage_where_every_run_failed_exits_non_zero(tmp_path, monkeypatch, capsys):
    from flops_fit.cli import main as cli_main
    from flops_fit.planning import Experiment
    from flops_fit.training.sweep import failed_record

    exps = [Experiment(f"C1e9-w{k}", 1e9, 0, k, 100 * k, 1e6, 6e8) for k in (1, 2)]
    report = stages.TrainReport([failed_record(e, "RuntimeError: mat1 and mat2 shapes cannot be multiplied",
                                               "6ND") for e in exps])
    monkeypatch.setattr(Study, "train", lambda self: report)
    monkeypatch.chdir(tmp_path)
    assert cli_main.main("train", ["preset=mock_demo", "output_dir=x"]) == 1
    err = capsys.readouterr().err
    assert "ff-train: error: all 2 run(s) of this stage failed or diverged; first: C1e9-w1: RuntimeError: mat1" in err
    ok = stages.TrainReport([report.trained[0], dataclasses.replace(report.trained[1], status="completed",
                                                                   final_loss=2.0, error=None)])
    monkeypatch.setattr(Study, "train", lambda self: ok)
    assert cli_main.main("train", ["preset=mock_demo", "output_dir=x"]) == 0  # one failure of two: not all


REAL_TINY = ["compute.budgets=[1e9,3e9]", "planning.num_model_sizes=3", "planning.span_decades=0.4",
             "planning.center_tokens_per_param=5", "planning.size_min=8", "planning.size_max=64", "model.n_layers=1",
             "model.head_dim=8", "model.max_seq_len=32", "data.seq_len=32", "data.max_bytes=400000",
             "training.batch_size=4", "training.val_units=512", "output_dir=cfm"]


def test_ff_train_prints_its_estimate_and_asks_before_a_long_sweep(tmp_path):
    assert ff("plan", *REAL_TINY, cwd=tmp_path).returncode == 0
    proc = ff("train", *REAL_TINY, "confirm_above_s=1", cwd=tmp_path)  # no terminal: refused, nothing trained
    assert proc.returncode == 2
    assert "estimated wall time:" in proc.stdout
    assert "confirm: the sweep is estimated at" in proc.stderr and "pass confirm=false" in proc.stderr
    assert not (tmp_path / "cfm" / "results.json").exists()
    study = Study(_compose(*REAL_TINY, "confirm=false", "confirm_above_s=1"))
    study._confirm_cost({"total_seconds": 1e6, "device": "cpu", "per_experiment": {}})  # confirm=false: no question
    with pytest.raises(ConfigError, match=r"confirm: the sweep is estimated at 1000000 s"):
        Study(_compose(*REAL_TINY, "confirm_above_s=1"))._confirm_cost({"total_seconds": 1e6})
