"""Hugging Face without glue (#18): a transformers Llama swept over hidden_size from its config class, on an
in-memory datasets.Dataset, with no hand-written factory; labels shifted exactly once."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import flops_fit as ff

datasets = pytest.importorskip("datasets")
transformers = pytest.importorskip("transformers")

LLAMA = {"num_hidden_layers": 1, "head_dim": 4, "mlp_ratio": 2, "vocab_size": 16}
PLAN = dict(size_min=4, size_max=128, num_model_sizes=5, train_config={"batch_size": 8})


def cycles(n: int = 512, seq: int = 17, vocab: int = 16) -> torch.Tensor:
    """Token windows of a cycle: next token = token + 1 (mod vocab), learnable, but not by copying the input."""
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, vocab, (n, 1), generator=g) + torch.arange(seq)) % vocab


def test_a_llama_sweep_on_a_datasets_dataset_trains_with_no_factory(tmp_path):
    ds = datasets.Dataset.from_dict({"input_ids": cycles().tolist()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ff.find_optimal("hf:LlamaForCausalLM", model_kwargs=LLAMA, dataset=ds, compute_budgets=[1e8, 3e8],
                              n_bootstrap=20, progress=False, output_dir=tmp_path, **PLAN)
    plan = res.plan
    assert plan.model_name == "transformers.LlamaForCausalLM" and plan.size_param == "hidden_size"
    assert all(e.size_value % 4 == 0 for e in plan.runnable)  # heads of 4 grow with the width
    assert plan.run_settings["data"] == {"hf_dataset": ds._fingerprint, "label_column": None, "shifted_here": True}
    assert plan.run_settings["loss"] == "flops_fit.models.losses.causal_lm_loss"
    assert all(r.ok for r in res.records)
    # the cycle is learnt (a model that copied its input, or predicted its own position, would stay near ln 16)
    assert min(r.final_loss for r in res.records) < 0.5 * math.log(16)
    from flops_fit.models.hf import HuggingFaceModel

    m = HuggingFaceModel("LlamaForCausalLM", head_dim=4, mlp_ratio=2)(hidden_size=32, num_hidden_layers=1,
                                                                      vocab_size=16)
    assert m.hf.config.num_attention_heads == 8 and m.hf.config.intermediate_size == 64
    assert m.num_params() == m.hf.num_parameters()


def test_hf_model_object_and_name_plan_the_same_sweep(tmp_path):
    from transformers import LlamaForCausalLM

    ds = datasets.Dataset.from_dict({"input_ids": cycles().tolist()})
    common = dict(dataset=ds, compute_budgets=[1e8, 3e8], train=False, estimate_cost=False, **PLAN)
    by_name = ff.find_optimal("hf:LlamaForCausalLM", model_kwargs=LLAMA, output_dir=tmp_path / "a", **common)
    fields = {k: v for k, v in LLAMA.items() if k not in ("head_dim", "mlp_ratio")}
    by_object = ff.find_optimal(ff.hf_model(LlamaForCausalLM, head_dim=4, mlp_ratio=2), model_kwargs=fields,
                                output_dir=tmp_path / "b", **common)
    assert by_name.fingerprint() == by_object.fingerprint()


def test_label_column_names_the_target_and_the_labels_are_used_as_given(tmp_path):
    seq = cycles()
    ds = datasets.Dataset.from_dict({"input_ids": seq[:, :-1].tolist(), "next": seq[:, 1:].tolist()})
    from flops_fit.data.hf_datasets import adapt

    rows, ident = adapt(ds, "next", "causal_lm", "dataset")
    assert torch.equal(rows[3]["labels"], seq[3, 1:]) and torch.equal(rows[3]["input_ids"], seq[3, :-1])
    assert ident["label_column"] == "next" and not ident["shifted_here"]
    plan = ff.find_optimal("hf:LlamaForCausalLM", model_kwargs=LLAMA, dataset=ds, data_options={"label_column": "next"},
                           compute_budgets=[1e8, 3e8], train=False, estimate_cost=False, output_dir=tmp_path, **PLAN)
    assert plan.run_settings["data"]["label_column"] == "next"


@pytest.mark.parametrize("columns, options, message", [
    ({"tokens": [[1, 2, 3]]}, {}, r"dataset: a datasets.Dataset needs an 'input_ids' column .* found columns \['tokens'\]"),
    ({"input_ids": [[1, 2, 3]]}, {"label_column": "y"}, r"label_column='y' is not a column of the dataset"),
    ({"input_ids": [[1, 2, 3]]}, {"label_column": "input_ids"}, r"label_column='input_ids' is the input itself"),
])
def test_bad_datasets_inputs_are_named(columns, options, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        ff.find_optimal("hf:LlamaForCausalLM", model_kwargs=LLAMA, dataset=datasets.Dataset.from_dict(columns),
                        data_options=options, compute_budgets=[1e8, 3e8], train=False, output_dir=tmp_path, **PLAN)


def test_bad_hf_models_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"model_cls: transformers has no model class 'NoSuchForCausalLM'"):
        ff.find_optimal("hf:NoSuchForCausalLM", compute_budgets=[1e8, 3e8], mode="mock", output_dir=tmp_path)
    with pytest.raises(ValueError, match=r"LlamaConfig has no field 'num_layers'"):  # refused at the probe
        ff.find_optimal("hf:LlamaForCausalLM", model_kwargs={**LLAMA, "num_layers": 2}, compute_budgets=[1e8, 3e8],
                        mode="mock", output_dir=tmp_path)
