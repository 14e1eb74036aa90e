"""Every Python block of the README runs as written (bash blocks: the CLI tests cover their commands)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def run_block(heading: str, index: int = 0, ns: dict | None = None) -> tuple[str, dict]:
    """Execute a README block as written (in `ns`: a later block of the same section goes on from the first):
    (what it printed, its namespace)."""
    out = io.StringIO()
    ns = {} if ns is None else ns
    with contextlib.redirect_stdout(out):
        exec(compile(python_block(heading, index), "README.md", "exec"), ns)
    return out.getvalue(), ns


def python_block(heading: str, index: int = 0) -> str:
    """The `index`-th Python block after `heading`."""
    text = README.read_text()
    section = text[text.index(heading):]
    return re.findall(r"```python\n(.*?)```", section, re.S)[index]


def test_analyze_runs_you_already_have_block_runs_and_says_what_it_promises():
    text, _ = run_block("### Analyze runs you already have")
    assert text.startswith("DISAGREE: ")  # the findings come first
    assert "predict() uses Approach 2 (IsoFLOP parabolas)" in text
    assert re.search(r"^3\.9\de\+11 params, 1\.6\de\+13 tokens \(approach_2\)$", text, re.M)
    assert "disagree: at C=3.8e+25 Approach 2 and Approach 3 disagree" in text


def test_use_it_as_a_library_block_runs_a_real_sweep(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the block writes runs/my-sweep relative to the current directory
    printed, ns = run_block("## Use it as a library")
    result = ns["result"]
    assert len(result.records) == 15 and all(r.ok for r in result.records)  # really trained
    assert all(r.final_loss < 4.16 for r in result.records)  # below ln 64: every model learned something
    text = printed
    assert "predict() uses Approach" in text and "| compute (FLOPs) |" in text
    # a 15-run toy sweep cannot pin N_opt 1000x beyond its data, and the report must say so
    assert "not informative" in text
    assert (tmp_path / "runs" / "my-sweep" / "plots" / "scaling_laws.png").stat().st_size > 10_000

    printed, ns = run_block("## Use it as a library", 1, ns)  # tracked, own loop, Hugging Face: one call each
    n, m, name = printed.split()
    assert int(n) >= 10 and int(m) >= 10 and name == "transformers.LlamaForCausalLM"
    assert ns["own_loop"].run_settings["train_fn"].endswith("my_train")


def test_your_own_training_loop_block_trains_with_the_users_function(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    printed, ns = run_block("### Your own training loop")
    result = ns["result"]
    assert len(result.records) >= 10 and all(r.ok and r.details["engine"] == "train_fn" for r in result.records)
    assert all(r.final_loss < 2.77 for r in result.records)  # below ln 16: the user's loop trained them
    assert "predict() uses Approach" in printed


def test_built_in_architectures_block_plans_every_sweep_as_written():
    printed, ns = run_block("### Built-in architectures and data")
    for name in ("gpt", "lstm", "bert", "gmm"):
        plan = ns[name]
        assert plan.runnable and plan.cost_estimate["total_seconds"] > 0, name
        assert "REFUSED" not in plan.summary(), name  # each would train as written
    assert ns["bert"].run_settings["units"] == "tokens" and ns["gmm"].run_settings["units"] == "samples"


def test_hugging_face_block_plans_a_llama_on_a_datasets_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    printed, ns = run_block("### Hugging Face models and datasets")
    assert printed.startswith("transformers.LlamaForCausalLM hidden_size ")
    assert len(ns["plan"].runnable) >= 6 and "REFUSED" not in ns["plan"].summary()


def test_nested_model_configs_block_builds_and_plans_as_it_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    printed, ns = run_block("### Built-in architectures and data", 1)
    lines = printed.splitlines()
    assert lines[0].startswith("32 2 ") and lines[1] == "d_model 16"
    assert ns["lstm"].ff_config["embed_dim"] == 64 and ns["bert"].ff_config["type_vocab_size"] == 2


@pytest.mark.slow  # ~200 s of real training: the demo the README's front door promises
def test_make_demo_brackets_its_minima_and_gives_a_sensible_exponent(tmp_path):
    import subprocess
    import sys

    demo = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
    proc = subprocess.run([sys.executable, str(demo), "--output-dir", str(tmp_path / "demo")], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import flops_fit as ff

    res = ff.Result.load(tmp_path / "demo")
    assert sum(o.in_range for o in res.analysis.isoflop.optima) >= 2  # brackets >= 2 of its 3 budgets
    assert 0.2 < res.predict(1e12)["exponent_a"] < 0.8
    assert "estimated wall time:" in proc.stdout.split("DISAGREE")[0]  # the estimate comes before training


def test_a_demo_rerun_over_results_of_another_plan_is_refused_and_fresh_starts_over(tmp_path, monkeypatch):
    import runpy
    import sys

    import flops_fit as ff

    out = tmp_path / "demo"
    ff.find_optimal("gpt", model_kwargs={"n_layers": 4, "vocab_size": 32000}, min_flops=1e17, max_flops=1e19,
                    num_budgets=3, mode="mock", output_dir=out.parent / "demo-mock", progress=False)  # "older" results
    demo = str(Path(__file__).resolve().parents[1] / "examples" / "demo.py")

    def run_demo(*extra: str) -> None:  # the script as `python examples/demo.py --mock ...` runs it
        monkeypatch.setattr(sys, "argv", [demo, "--mock", "--output-dir", str(out), *extra])
        runpy.run_path(demo, run_name="__main__")

    with pytest.raises(ValueError, match=r"made by a different plan"):
        run_demo()
    run_demo("--fresh")
    res = ff.Result.load(out.parent / "demo-mock")
    assert len(res.plan.budgets) == 5 and len(res.records) == len(res.plan.runnable)  # only the new plan's runs


def test_trunks_and_branches_block_plans_and_runs_a_branched_design(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    printed, ns = run_block("### Spending less compute: trunks and cooldown branches")
    assert printed.splitlines()[0].startswith("design: ") and "WSD cooldown branch(es)" in printed
    assert printed.splitlines()[-1] == "trunk-d_model" + str(ns["result"].records[0].size_value) + " True"
    assert ns["plan"].design["flops"]["ratio"] < 0.85
    printed, ns = run_block("### Spending less compute: trunks and cooldown branches", 1, ns)  # extra branches
    k = sum(e.extra for e in ns["plan"].experiments)
    assert k > 0 and f", {k} of them extra branches between budgets (Approach 3 only)" in printed


def test_adaptive_sweeps_block_records_its_rounds_and_says_how_far_it_got(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    printed, ns = run_block("### Adaptive sweeps and a target precision")
    lines = printed.splitlines()
    assert lines[0].startswith("adaptive: ") and "smallest first" in lines[0]
    assert any(ln.startswith("  C=1e+19 budget: centred on N=") for ln in lines)
    assert lines[-1].startswith(("target reached: ", "target NOT reached: "))
    rounds = ns["result"].plan.adaptive["rounds"]
    assert rounds[0]["kind"] == "budget" and len(lines) == 2 + len(rounds) - (rounds[-1]["kind"] == "stop")
    printed, ns = run_block("### Adaptive sweeps and a target precision", 1, ns)  # the forecast goes on from it
    first, needed = printed.splitlines()
    assert first.startswith("N_opt at C=3e+22: its interval spans ×") and "(3 budgets, 5 runs each)" in first
    assert needed.endswith(" more budgets") and 1 <= int(needed.split()[0]) <= 6
    assert ns["forecast"].needed["ratio"] <= 4.0
