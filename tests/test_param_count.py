"""param_count='non_embedding': N without embeddings (Kaplan's count), where the model can say which they are;
recorded in sweep.json, the Result and scaling_laws.json; refused, by name, for a model that cannot say."""

import json
import sys
from pathlib import Path

import pytest

import flops_fit as ff
from flops_fit.models import create_model

sys.path.insert(0, str(Path(__file__).parent / "cli"))
from ff_cli_helpers import MOCK_SMALL, error_line, ff as ff_cli  # noqa: E402

GPT = dict(model_kwargs={"n_layers": 2, "head_dim": 8, "max_seq_len": 64}, compute_budgets=[1e12, 1e13, 1e14],
           num_model_sizes=5, size_min=8, size_max=512, train=False, estimate_cost=False)


def test_non_embedding_n_is_the_models_own_count_and_is_recorded(tmp_path):
    plan = ff.find_optimal("gpt", mode="mock", **GPT, param_count="non_embedding", output_dir=tmp_path / "ne")
    full = ff.find_optimal("gpt", mode="mock", **GPT, output_dir=tmp_path / "all")
    for e in plan.runnable:
        m = create_model({"architecture": "gpt", **GPT["model_kwargs"], "d_model": e.size_value})
        assert e.num_params == m.num_params(non_embedding=True) < m.num_params()
        assert e.num_tokens == pytest.approx(e.compute_budget / (6 * e.num_params))
    assert all(e.num_params == create_model({"architecture": "gpt", **GPT["model_kwargs"], "d_model": e.size_value})
               .num_params() for e in full.runnable)
    assert "N without embeddings (param_count='non_embedding')" in plan.summary()
    saved = json.loads((tmp_path / "ne" / "sweep.json").read_text())
    assert saved["settings"]["param_count"] == "non_embedding"
    assert json.loads((tmp_path / "all" / "sweep.json").read_text())["settings"]["param_count"] == "all"
    assert plan.fingerprint() != full.fingerprint()


def test_a_sweep_counted_without_embeddings_says_so_in_every_answer(tmp_path):
    res = ff.find_optimal("gpt", mode="mock", **{**GPT, "train": True}, param_count="non_embedding",
                          n_bootstrap=20, output_dir=tmp_path)
    assert res.param_count == "non_embedding"
    assert "| N_opt (non-embedding params) |" in res.chinchilla_table()
    assert "N counts non-embedding parameters" in res.summary()
    saved = json.loads((tmp_path / "analysis" / "scaling_laws.json").read_text())
    assert saved["param_count"] == "non_embedding"
    assert ff.Result.load(tmp_path).param_count == "non_embedding"


class NoSay:
    """A model whose num_params() cannot leave embeddings out."""

    def __init__(self, width: int) -> None:
        self.width = width

    def num_params(self) -> int:
        return 10 * self.width


def test_a_model_that_cannot_say_which_are_embeddings_is_refused(tmp_path):
    with pytest.raises(TypeError, match=r"param_count: 'non_embedding' needs the model to say which parameters are "
                                        r"embeddings, but \S*NoSay.num_params\(\) takes no non_embedding argument"):
        ff.find_optimal(NoSay, "width", mode="mock", compute_budgets=[1e12, 1e13], param_count="non_embedding",
                        output_dir=tmp_path, train=False)
    with pytest.raises(ValueError, match=r"param_count: expected one of .*'all'.*'non_embedding'.*found 'nonemb'"):
        ff.find_optimal(NoSay, "width", mode="mock", compute_budgets=[1e12, 1e13], param_count="nonemb",
                        output_dir=tmp_path, train=False)


def test_the_cli_plans_with_the_same_count(tmp_path):
    proc = ff_cli("plan", *MOCK_SMALL, "planning.param_count=non_embedding", "output_dir=ne", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "ne" / "sweep.json").read_text())["settings"]["param_count"] == "non_embedding"
    bad = ff_cli("plan", *MOCK_SMALL, "planning.param_count=some", "output_dir=x", cwd=tmp_path)
    assert "param_count: expected one of" in error_line(bad)
