"""One model from an experiment config (#19): the shipped example configs train, bidirectional models are
evaluated with the masked objective, ff-train-model resumes a killed run, bad configs are named."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import flops_fit as ff
from flops_fit.experiment import EXAMPLES, experiment_study, load_experiment, train_model

SHIPPED = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
BIDIRECTIONAL = {"tiny_bert", "tiny_lstm_bidirectional"}
BIN = Path(sys.executable).parent


def test_every_architecture_has_a_shipped_example():
    archs = {load_experiment(n)["model"]["architecture"] for n in SHIPPED}
    assert archs == {"bert", "lstm", "gru", "rnn", "gpt2", "gpt", "vit", "gmm"}
    assert {load_experiment(n)["model"].get("prediction_type") for n in SHIPPED if "gmm" in n} == \
        {"centers", "assignments"}


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_example_trains_and_is_evaluated_by_its_objective(name, tmp_path):
    """The tiny cross-architecture check: the same corpus for the text models, a short run each; the loss falls,
    and a model that sees ahead is evaluated on masked tokens (accuracy too), a causal one by perplexity."""
    tokens = 800 if name == "tiny_vit" else 16000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = train_model(name, output_dir=tmp_path, overrides={"training.tokens": tokens})
    r = run.record
    assert r.status == "completed" and r.final_loss < r.details["initial_loss"], (name, r.final_loss)
    if name in BIDIRECTIONAL:
        assert set(run.evaluation) == {"masked_loss", "masked_accuracy", "pseudo_perplexity"}
        assert 0 <= run.evaluation["masked_accuracy"] <= 1 and r.details["loss_signature"]
    elif load_experiment(name)["data"].get("name") in (None, "stdlib"):
        assert run.evaluation["perplexity"] == pytest.approx(2.718281828 ** r.final_loss)
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["record"]["final_loss"] == r.final_loss and saved["config"]["experiment_name"] == name
    assert (tmp_path / "model" / "model_config.json").exists()


def _ff_train_model(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([str(BIN / "ff-train-model"), *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


# WordPiece + masked LM in the default run; BPE + causal LSTM (about 9 s more) with the slow tests
@pytest.mark.parametrize("name", ["tiny_bert", pytest.param("tiny_lstm", marks=pytest.mark.slow)])
def test_ff_train_model_resumes_after_a_kill(name, tmp_path):
    args = ["--config", name, "training.tokens=60000", "training.checkpoint_every_steps=5",
            f"logging.output_dir={tmp_path / 'run'}"]
    gate = tmp_path / "run" / "checkpoints" / name / "state.json"  # a complete checkpoint (state.pt, then this)
    proc = _ff_train_model(*args, cwd=tmp_path)
    t = time.time()
    while not gate.exists() and proc.poll() is None and time.time() - t < 120:
        time.sleep(0.05)
    assert gate.exists(), proc.communicate()[1]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "run" / "run.json").exists()
    again = _ff_train_model(*args, cwd=tmp_path)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["record"]["details"]["resumed_from_step"] >= 5, out
    assert saved["record"]["details"]["units_trained"] >= 60000
    assert f"{name}: completed" in out


def test_a_finished_run_is_not_trained_again(tmp_path):
    first = train_model("tiny_gpt", output_dir=tmp_path, overrides={"training.tokens": 4000})
    second = train_model("tiny_gpt", output_dir=tmp_path, overrides={"training.tokens": 4000})
    assert second.record.final_loss == first.record.final_loss
    assert second.record.wall_time_s == first.record.wall_time_s  # the stored record, not a new run


@pytest.mark.parametrize("change, message", [
    ({"random_seed": None}, r"Missing required field 'random_seed' in experiment config"),
    ({"extra": 1}, r"extra: unknown top-level field"),
    ({"data": {"name": "stdlib", "sequence": 64}}, r"data.sequence: unknown field"),
    ({"experiment_name": "../escape"}, r"experiment_name: expected letters, digits"),
    ({"training": {"objective": "causal_lm", "tokens": 1000}}, r"training.objective: bert trains masked_lm"),
    ({"training": {"tokens": 0}}, r"training.tokens: expected the number of data units"),
    ({"training": {"tokens": 1000, "learning_rate": 1e-3}}, r"train_config: unknown field 'learning_rate'"),
])
def test_bad_experiment_configs_are_named(change, message, tmp_path):
    cfg = load_experiment("tiny_bert")
    cfg.update(change)
    if change.get("random_seed", 0) is None:
        del cfg["random_seed"]
    with pytest.raises((ValueError, TypeError), match=message):
        train_model(cfg, output_dir=tmp_path)


def test_the_same_config_is_the_fixed_part_of_a_sweep(tmp_path):
    plan = ff.find_optimal(**experiment_study("tiny_bert"), model_size_param="transformer.hidden_size",
                           compute_budgets=[3e11, 1e12], train=False, estimate_cost=False, output_dir=tmp_path)
    assert plan.size_param == "d_model" and plan.model_kwargs["n_layers"] == 2
    assert plan.model_kwargs["head_dim"] == 16 and plan.model_kwargs["mlp_ratio"] == 2
    assert plan.run_settings["data"]["tokenizer"] == "wordpiece" and plan.run_settings["data"]["vocab_size"] == 1024
    assert plan.run_settings["loss"] == "flops_fit.models.losses.masked_lm_loss"


def test_ff_plan_sweeps_an_experiment_config_as_the_library_does(tmp_path, monkeypatch):
    from flops_fit.cli import main as cli_main

    monkeypatch.chdir(tmp_path)
    lib = ff.find_optimal(**experiment_study("tiny_lstm"), model_size_param="rnn.hidden_size",
                          compute_budgets=[3e11, 1e12], train=False, output_dir="lib")
    assert cli_main.main("plan", ["experiment=tiny_lstm", "size_param=rnn.hidden_size", "compute.budgets=[3e11,1e12]",
                                  "output_dir=cli"]) == 0
    cli = ff.SweepPlan.load(str(tmp_path / "cli" / "sweep.json"))
    assert cli.fingerprint() == lib.fingerprint() and cli.size_param == "hidden_size"
    assert cli.run_settings["data"]["tokenizer"] == "bpe" and cli.model_kwargs["embed_dim"] == 64
    assert cli_main.main("plan", ["size_param=rnn.hidden_size", "output_dir=x"]) == 2  # needs experiment=
