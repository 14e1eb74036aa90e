"""One study, one path: the library and the CLI resolve a study in one place, plan the same sweep, and can each
finish a sweep the other started."""

from __future__ import annotations

import ast
import json
import math
import sys
from pathlib import Path

import pytest

import flops_fit as ff
from flops_fit.cli import main as cli_main
from flops_fit.planning import SweepPlan

sys.path.insert(0, str(Path(__file__).parent / "cli"))
import plugin_models  # noqa: E402  (the user's own model, data and loss, as the CLI imports them)
from ff_cli_helpers import ff as ff_command  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src" / "flops_fit"


def _cli(stage: str, *args: str) -> None:
    assert cli_main.main(stage, list(args)) == 0


def _plan(out: Path) -> SweepPlan:
    return SweepPlan.load(str(out / "sweep.json"))


def _same_plan(a: SweepPlan, b: SweepPlan) -> None:
    assert [e.experiment_id for e in a.runnable] == [e.experiment_id for e in b.runnable]
    assert a.run_settings == b.run_settings
    assert a.fingerprint() == b.fingerprint()


def test_library_defaults_and_cli_defaults_plan_the_same_mock_study(tmp_path, monkeypatch):
    """PlanSettings' defaults are the CLI's (one set): the registered gpt, mock mode, nothing else given."""
    monkeypatch.chdir(tmp_path)
    lib = ff.find_optimal("gpt", compute_budgets=[1e13, 1e14], mode="mock", train=False, output_dir="lib")
    _cli("plan", "mode=mock", "compute.budgets=[1e13,1e14]", "output_dir=cli")
    _same_plan(lib, _plan(tmp_path / "cli"))
    assert lib.settings.num_model_sizes == 7 and lib.settings.span_decades == 1.0
    assert lib.settings.size_multiple == 16  # the model's head size, decided once for both


def test_registered_architecture_on_built_in_data_plans_the_same_real_study(tmp_path, monkeypatch):
    """Real mode: model fields, tokenizer vocabulary, data options, units, loss and TrainConfig all agree."""
    monkeypatch.chdir(tmp_path)
    lib = ff.find_optimal("gpt", model_kwargs={"n_layers": 1, "head_dim": 4}, dataset="stdlib",
                          data_options={"seq_len": 16, "max_bytes": 200_000}, compute_budgets=[1e9, 3e9],
                          train_config={"batch_size": 8}, num_model_sizes=5, train=False, output_dir="lib")
    _cli("plan", "model.n_layers=1", "model.head_dim=4", "data.seq_len=16", "data.max_bytes=200000",
         "compute.budgets=[1e9,3e9]", "training.batch_size=8", "planning.num_model_sizes=5", "output_dir=cli")
    cli = _plan(tmp_path / "cli")
    _same_plan(lib, cli)
    rs = cli.run_settings
    assert rs["loss"] == "flops_fit.models.losses.causal_lm_loss" and rs["units"] == "tokens"
    assert rs["data"]["name"] == "stdlib" and rs["data"]["seq_len"] == 16
    assert cli.model_kwargs["vocab_size"] == 260  # from the byte tokenizer, in both


def test_a_target_model_plans_the_same_study_as_its_class(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lib = ff.find_optimal(plugin_models.TinyLM, "width", dataset=plugin_models.SequenceData(),
                          loss_fn=plugin_models.lm_loss, compute_budgets=[3e6, 1e7], size_min=4, size_max=128,
                          train_config={"batch_size": 8}, num_model_sizes=5, train=False, output_dir="lib")
    _cli("plan", "model=custom", "model._target_=plugin_models.TinyLM", "model.size_param=width",
         "data=custom", "data._target_=plugin_models.SequenceData", "loss._target_=plugin_models.lm_loss",
         "compute.budgets=[3e6,1e7]", "planning.size_min=4", "planning.size_max=128", "training.batch_size=8",
         "planning.num_model_sizes=5", "output_dir=cli")
    cli = _plan(tmp_path / "cli")
    assert cli.model_name == "plugin_models.TinyLM" and cli.run_settings["loss"] == "plugin_models.lm_loss"
    assert cli.run_settings["data"] == {"_target_": "plugin_models.SequenceData"}
    # given a data object, the library cannot name the data, so the identities differ only there ...
    assert lib.run_settings["data"] is None
    assert {k: v for k, v in lib.run_settings.items() if k != "data"} == \
        {k: v for k, v in cli.run_settings.items() if k != "data"}
    assert [e.experiment_id for e in lib.runnable] == [e.experiment_id for e in cli.runnable]
    assert lib.model_name == cli.model_name and lib.model_kwargs == cli.model_kwargs
    # ... and given the data and loss as the CLI gives them, it plans the very same sweep
    named = ff.find_optimal(plugin_models.TinyLM, "width", dataset={"_target_": "plugin_models.SequenceData"},
                            loss_fn="plugin_models.lm_loss", compute_budgets=[3e6, 1e7], size_min=4, size_max=128,
                            train_config={"batch_size": 8}, num_model_sizes=5, train=False, output_dir="named")
    _same_plan(named, cli)


MOCK = dict(compute_budgets=[1e16, 1e17, 1e18], mode="mock", num_model_sizes=5, n_bootstrap=20, progress=False)
MOCK_CLI = ["mode=mock", "compute.budgets=[1e16,1e17,1e18]", "planning.num_model_sizes=5", "analysis.n_bootstrap=20"]


def _counting(monkeypatch) -> list[str]:
    from flops_fit.training import mock

    calls: list[str] = []

    def counting(exp, **kw):
        calls.append(exp.experiment_id)
        return mock.mock_run(exp, **kw)

    monkeypatch.setattr("flops_fit.pipeline.mock_run", counting)
    return calls


def test_a_sweep_started_by_the_library_is_finished_by_ff_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    full = ff.find_optimal("gpt", output_dir="s", **MOCK)
    results = json.loads((tmp_path / "s" / "results.json").read_text())
    n = len(results["records"])
    results["records"] = results["records"][: n // 2]  # as if the library's sweep had been stopped half way
    (tmp_path / "s" / "results.json").write_text(json.dumps(results))
    calls = _counting(monkeypatch)
    _cli("train", *MOCK_CLI, "output_dir=s")
    assert len(calls) == n - n // 2, "ff-train trains exactly the runs the library had not finished"
    _cli("analyze", *MOCK_CLI, "output_dir=s")
    again = ff.Result.load(tmp_path / "s")
    assert again.predict(1e20)["optimal_params"] == pytest.approx(full.predict(1e20)["optimal_params"], rel=1e-9)


def test_a_sweep_started_by_ff_train_is_finished_by_the_library(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _cli("plan", *MOCK_CLI, "output_dir=s")
    _cli("train", *MOCK_CLI, "output_dir=s", "experiment_id=0")  # one job-array task
    _cli("train", *MOCK_CLI, "output_dir=s", "experiment_id=1")
    n = len(_plan(tmp_path / "s").runnable)
    calls = _counting(monkeypatch)
    res = ff.find_optimal("gpt", output_dir="s", **MOCK)
    assert len(calls) == n - 2, "the library merges the tasks' records and trains only the rest"
    assert len(res.records) == n


def test_another_study_is_refused_with_the_field_that_differs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ff.find_optimal("gpt", output_dir="s", **MOCK)
    proc = ff_command("train", *MOCK_CLI, "mock_law.alpha=0.3", "output_dir=s", cwd=tmp_path)
    assert proc.returncode == 1
    assert "field 'run_settings.mock_law.alpha' is 0.34, but this study gives 0.3" in proc.stderr


def test_ff_run_with_no_preset_completes_a_real_tiny_sweep(tmp_path):
    """The base configuration trains (it once failed every run: vocab_size 256 below the tokenizer's 260)."""
    proc = ff_command("run", "output_dir=o", "model.n_layers=1", "model.head_dim=4", "data.seq_len=16",
                      "data.max_bytes=400000", "compute.budgets=[1e9,3e9]", "planning.num_model_sizes=5",
                      "training.batch_size=8", "analysis.n_bootstrap=20", "confirm=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp_path / "o" / "results.json").read_text())["records"]
    assert len(records) >= 6 and all(r["status"] == "completed" for r in records)
    assert all(r["final_loss"] < math.log(260) for r in records), "every run learned something"
    assert all((tmp_path / "o" / "plots" / p).exists() for p in ("isoflops_curves.png", "scaling_laws.png"))


# ---------------------------------------------------------------------------
# the layout of the code


def _top_level_imports(path: Path, package: str) -> set[str]:
    """flops_fit modules imported at module level (not inside functions, not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ([node] if not isinstance(node, (ast.If, ast.Try)) else ast.walk(node)):
            if isinstance(sub, ast.ImportFrom) and sub.module:
                base = sub.module if sub.level == 0 else ".".join(package.split(".")[: -sub.level + 1 or None] +
                                                                   [sub.module])
                if base.startswith("flops_fit"):
                    out.add(base)
                    out.update(f"{base}.{a.name}" for a in sub.names)
            elif isinstance(sub, ast.Import):
                out.update(a.name for a in sub.names if a.name.startswith("flops_fit"))
    return out


def _modules() -> dict[str, Path]:
    mods = {}
    for p in SRC.rglob("*.py"):
        rel = p.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        mods[name] = p
    return mods


def find_import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (cyc := visit(n)):
                return cyc
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (cyc := visit(m)):
            return cyc
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_import_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_src():
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0] + ".x"
        deps = {d for d in _top_level_imports(path, package) if d in mods and d != name}
        # importing a submodule runs its package's __init__ first, which is no edge back
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    assert find_import_cycle(graph) is None, f"import cycle: {' -> '.join(find_import_cycle(graph))}"


def test_every_function_in_src_fits_on_a_screen():
    """Under 80 lines (signature and docstring included): one function, one job."""
    long = []
    for p in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n >= 80:
                    long.append(f"{p.relative_to(SRC)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions of 80 lines or more: " + ", ".join(long)
