"""Registry: creation from dict / YAML / typed config, validation errors, user models, persistence."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import flops_fit.models as M
from flops_fit.models.configs import GMMConfig, LSTMConfig
from flops_fit.models.registry import ModelConfigError

CONF_DIR = Path(M.__file__).resolve().parent.parent / "conf" / "models"
BUILTINS = ["bert", "gmm", "gpt", "gpt2", "gru", "lstm", "rnn", "vit"]


class TinyMLP(nn.Module):
    """A user model registered without a config class: its signature is the schema."""

    def __init__(self, width: int, depth: int = 1, act: str = "relu", scale: float = 1.0) -> None:
        super().__init__()
        self.width, self.depth, self.act, self.scale = width, depth, act, scale
        self.layers = nn.Sequential(*[nn.Linear(4 if i == 0 else width, width) for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) * self.scale

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


@dataclass
class TinyConfig:
    width: int
    depth: int = 1


@pytest.fixture
def user_model():
    M.register_model("tiny_mlp", TinyMLP, "width", objective="classification")
    yield "tiny_mlp"
    M.unregister_model("tiny_mlp")


def test_list_models_has_all_builtins():
    assert M.list_models() == BUILTINS


def test_missing_architecture_lists_choices():
    with pytest.raises(ModelConfigError, match="Missing required field 'architecture' in model config. Must be one of: " + ", ".join(BUILTINS)):
        M.create_model({"d_model": 32})


def test_unknown_architecture_lists_choices():
    with pytest.raises(ValueError, match="unknown architecture 'transformer-xl'; registered architectures: bert, gmm, gpt"):
        M.create_model({"architecture": "transformer-xl", "d_model": 32})


@pytest.mark.parametrize("arch, size", [("gpt", "d_model"), ("lstm", "hidden_size"), ("vit", "d_model"), ("gmm", "d_model"), ("gpt2", "d_model")])
def test_unknown_field_is_named(arch, size):
    with pytest.raises(ModelConfigError, match="unknown field.*'n_head'"):
        M.create_model({"architecture": arch, size: 32, "n_head": 4})


@pytest.mark.parametrize(
    "config, field",
    [
        ({"architecture": "gpt", "d_model": "64"}, "d_model"),
        ({"architecture": "gpt", "d_model": 64, "umup": "yes"}, "umup"),
        ({"architecture": "lstm", "hidden_size": 32, "bidirectional": "no"}, "bidirectional"),
        ({"architecture": "lstm", "hidden_size": 32.5}, "hidden_size"),
        ({"architecture": "vit", "d_model": True}, "d_model"),
        ({"architecture": "gmm", "d_model": 32, "prediction_type": "labels"}, "prediction_type"),
        ({"architecture": "bert", "d_model": 32, "dropout": 1.5}, "dropout"),
    ],
)
def test_ill_typed_field_is_named(config, field):
    with pytest.raises(ModelConfigError, match=f"'?{field}'?"):
        M.create_model(config)


def test_missing_size_parameter_is_named():
    with pytest.raises(ModelConfigError, match="missing required field.*'hidden_size'"):
        M.create_model({"architecture": "lstm"})
    with pytest.raises(ModelConfigError, match="missing required field.*'d_model'"):
        M.create_model({"architecture": "gpt"})


def test_head_dim_must_divide_d_model():
    with pytest.raises(ValueError, match="d_model must be a multiple of head_dim=16.*got d_model=40"):
        M.create_model({"architecture": "gpt", "d_model": 40})
    with pytest.raises(ValueError, match="d_model=40 must be a multiple of head_dim=16"):
        M.create_model({"architecture": "vit", "d_model": 40})


def test_yaml_path_and_typed_configs(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("architecture: lstm\nhidden_size: 24\nn_layers: 1\n")
    from_yaml = M.create_model(path, device="meta")
    from_str = M.create_model(str(path), device="meta")
    from_obj = M.create_model(LSTMConfig(hidden_size=24, n_layers=1), device="meta")
    from_gpt_dataclass = M.create_model(M.GPTConfig(d_model=32, n_layers=1), device="meta")
    assert from_yaml.ff_config == from_str.ff_config == from_obj.ff_config
    assert from_yaml.ff_config["architecture"] == "lstm" and from_yaml.ff_config["hidden_size"] == 24
    assert from_gpt_dataclass.ff_config["architecture"] == "gpt"
    assert isinstance(from_gpt_dataclass, M.GPT)


def test_yaml_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        M.create_model(tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ModelConfigError, match="must hold a mapping"):
        M.create_model(bad)


def test_wrong_config_type():
    with pytest.raises(TypeError, match="model config must be a dict, a YAML file path or a typed config object, got int"):
        M.create_model(3)


@pytest.mark.parametrize("path", sorted(CONF_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_example_yaml_builds(path):
    model = M.create_model(path, device="meta")
    assert model.num_params() > 0
    assert model.ff_config["architecture"] in BUILTINS


def test_every_architecture_has_an_example_yaml():
    archs = {M.create_model(p, device="meta").ff_config["architecture"] for p in CONF_DIR.glob("*.yaml")}
    assert archs == set(BUILTINS)


def test_spec_fields():
    spec = M.get_model_spec("gmm")
    assert isinstance(spec, M.ModelSpec)
    assert (spec.size_param, spec.objective, spec.default_dataset, spec.config_cls) == ("d_model", "gmm_centers", "gmm", GMMConfig)
    assert spec.loss() is M.gmm_centers_loss
    assert M.get_model_spec("lstm").size_param == "hidden_size"
    assert M.get_model_spec("vit").default_dataset == "digits"
    assert M.get_model_spec("bert").loss() is M.masked_lm_loss


def test_default_loss_follows_the_config():
    assert M.default_loss_for({"architecture": "gmm", "d_model": 32, "prediction_type": "assignments"}) is M.gmm_assignments_loss
    assert M.default_loss_for({"architecture": "gmm", "d_model": 32}) is M.gmm_centers_loss
    assert M.default_loss_for({"architecture": "vit", "d_model": 32}) is M.classification_loss


def test_user_model_behaves_like_builtin(user_model, tmp_path):
    assert user_model in M.list_models()
    model = M.create_model({"architecture": user_model, "width": 8, "depth": 2, "act": "gelu", "scale": 2})
    assert (model.width, model.depth, model.act, model.scale) == (8, 2, "gelu", 2.0)
    with pytest.raises(ModelConfigError, match="unknown field 'dropout'"):
        M.create_model({"architecture": user_model, "width": 8, "dropout": 0.1})
    with pytest.raises(ModelConfigError, match="field 'depth'"):
        M.create_model({"architecture": user_model, "width": 8, "depth": "two"})
    with pytest.raises(ModelConfigError, match="missing required field 'width'"):
        M.create_model({"architecture": user_model})
    x = torch.randn(3, 4)
    M.save_model(model, None, tmp_path / "u")
    loaded = M.load_model(tmp_path / "u")
    assert torch.equal(loaded(x), model.eval()(x))
    assert M.default_loss_for(model) is M.classification_loss


def test_register_with_dataclass_config():
    M.register_model("tiny_dc", TinyMLP, "width", config_cls=TinyConfig)
    try:
        model = M.create_model(TinyConfig(width=5), device="meta")
        assert model.width == 5
        with pytest.raises(ModelConfigError, match=r"unknown field\(s\) \['act'\]"):
            M.create_model({"architecture": "tiny_dc", "width": 5, "act": "relu"})
    finally:
        M.unregister_model("tiny_dc")


def test_register_errors(user_model):
    with pytest.raises(ValueError, match="'tiny_mlp' is already registered; pass overwrite=True"):
        M.register_model("tiny_mlp", TinyMLP, "width")
    M.register_model("tiny_mlp", TinyMLP, "width", overwrite=True)
    with pytest.raises(ValueError, match="size_param 'd_model' is not a config field of 'tiny2'"):
        M.register_model("tiny2", TinyMLP, "d_model")
    with pytest.raises(TypeError, match="factory must be callable"):
        M.register_model("tiny2", 3, "width")
    with pytest.raises(ValueError, match="objective must be one of"):
        M.register_model("tiny2", TinyMLP, "width", objective="regression")
    with pytest.raises(TypeError, match="config_cls must be a pydantic BaseModel subclass or a dataclass"):
        M.register_model("tiny2", TinyMLP, "width", config_cls=dict)
    assert "tiny2" not in M.list_models()


def test_factory_must_return_module():
    M.register_model("not_a_module", lambda width: object(), "width")
    try:
        with pytest.raises(TypeError, match="must return a torch.nn.Module, got object"):
            M.create_model({"architecture": "not_a_module", "width": 2})
    finally:
        M.unregister_model("not_a_module")


def test_meta_device_allocates_nothing():
    model = M.create_model({"architecture": "gpt", "d_model": 1024, "n_layers": 24}, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert model.num_params() > 300_000_000


def test_checkpoint_file_format_and_errors(tmp_path):
    model = M.create_model({"architecture": "gru", "hidden_size": 8, "vocab_size": 16})
    M.save_model(model, None, tmp_path / "c")
    payload = json.loads((tmp_path / "c" / "model_config.json").read_text())
    assert payload["schema"] == 1
    assert payload["config"]["architecture"] == "gru" and payload["config"]["hidden_size"] == 8
    assert payload["num_params"] == model.num_params()
    payload["schema"] = 99
    (tmp_path / "c" / "model_config.json").write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="field 'schema' must be 1, got 99"):
        M.load_model(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="model_config.json"):
        M.load_model(tmp_path / "missing")
    with pytest.raises(ValueError, match="was not made by create_model"):
        M.save_model(nn.Linear(2, 2), None, tmp_path / "d")


def test_forward_batch_conventions():
    lin = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    assert torch.equal(M.forward_batch(lin, x), lin(x))
    assert torch.equal(M.forward_batch(lin, (x, torch.zeros(4))), lin(x))
    gmm = M.create_model({"architecture": "gmm", "d_model": 16, "n_layers": 1})
    with pytest.raises(ValueError, match="needs batch key 'points'"):
        M.forward_batch(gmm, {"centers": torch.zeros(1, 2, 2)})
    with pytest.raises(ValueError, match="must be \\(inputs, labels\\), got 3 items"):
        M.forward_batch(lin, (x, x, x))
