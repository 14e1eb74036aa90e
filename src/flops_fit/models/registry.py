"""The model registry: one creation path for sweeps, checkpoints and the CLI.

A registered architecture is a :class:`ModelSpec`: a factory (class or callable),
the name of its size parameter, an optional config class that validates fields
(a pydantic v2 model or a dataclass), its training objective and default loss.
User architectures registered with :func:`register_model` behave exactly like the
built-ins, which register themselves in :mod:`flops_fit.models.builtin`.

Config validation
    Without a config class the factory's signature is the schema: a pydantic model
    is built from its parameters and annotations, so unknown fields and ill-typed
    values are rejected by name there too. No field is ever accepted and dropped:
    every validated field is passed to the factory.

Batch convention (:func:`forward_batch`)
    A tensor batch is passed as ``model(batch)``; an ``(inputs, labels)`` pair as
    ``model(inputs)``; a dict batch as ``model(**{k: batch[k] for k in model.input_keys})``
    when the model declares ``input_keys`` (all built-ins do), else ``model(**batch)``
    without ``"labels"``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import torch
from torch import nn

from flops_fit import io

__all__ = [
    "ModelSpec",
    "ModelConfigError",
    "register_model",
    "unregister_model",
    "list_models",
    "get_model_spec",
    "validate_config",
    "create_model",
    "save_model",
    "load_model",
    "default_loss_for",
    "forward_batch",
    "OBJECTIVE_LOSSES",
    "CHECKPOINT_SCHEMA",
]

CHECKPOINT_SCHEMA = 1
_CONFIG_FILE = "model_config.json"
_WEIGHTS_FILE = "model.pt"

LossFn = Callable[[Any, Any], torch.Tensor]


def _objective_losses() -> dict[str, LossFn]:
    from flops_fit.models import losses

    return {
        "causal_lm": losses.causal_lm_loss,
        "masked_lm": losses.masked_lm_loss,
        "classification": losses.classification_loss,
        "gmm_centers": losses.gmm_centers_loss,
        "gmm_assignments": losses.gmm_assignments_loss,
    }


#: objective name -> default loss ``(outputs, batch) -> scalar``.
OBJECTIVE_LOSSES: dict[str, LossFn] = _objective_losses()


class ModelConfigError(ValueError):
    """A model config that cannot be turned into a model (names the field at fault)."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything the library knows about one registered architecture.

    name:            registry key, the ``architecture`` field of a config.
    factory:         class or callable building the ``nn.Module`` from the config fields.
    size_param:      the constructor argument a sweep varies (e.g. ``"d_model"``).
    config_cls:      pydantic model or dataclass validating the fields (None: the
                     factory signature is the schema).
    objective:       default objective name (a key of ``OBJECTIVE_LOSSES``) or None;
                     a model instance may override it with its own ``objective``
                     attribute (e.g. a bidirectional LSTM trains ``masked_lm``).
    default_loss:    explicit default loss; None means ``OBJECTIVE_LOSSES[objective]``.
    default_dataset: hint for the data layer: ``"stdlib"`` (byte corpus), ``"gmm"``
                     (Gaussian-mixture sets), ``"digits"``/``"images"`` or None.
    """

    name: str
    factory: Callable[..., nn.Module]
    size_param: str
    config_cls: type | None = None
    objective: str | None = None
    default_loss: LossFn | None = None
    default_dataset: str | None = None

    def loss(self) -> LossFn | None:
        """The loss a sweep uses when the user gives none."""
        if self.default_loss is not None:
            return self.default_loss
        if self.objective is not None:
            return OBJECTIVE_LOSSES[self.objective]
        return None


_REGISTRY: dict[str, ModelSpec] = {}


def _check_config_cls(config_cls: Any) -> None:
    if config_cls is None:
        return
    if not isinstance(config_cls, type) or not (
        issubclass(config_cls, pydantic.BaseModel) or dataclasses.is_dataclass(config_cls)
    ):
        raise TypeError(
            "register_model: config_cls must be a pydantic BaseModel subclass or a dataclass, "
            f"got {config_cls!r}"
        )


def _field_names(spec: ModelSpec) -> list[str]:
    """Names of the fields a config for ``spec`` may carry (besides ``architecture``)."""
    if spec.config_cls is None:
        return list(_signature_model(spec).model_fields)
    if issubclass(spec.config_cls, pydantic.BaseModel):
        return [n for n in spec.config_cls.model_fields if n != "architecture"]
    return [f.name for f in dataclasses.fields(spec.config_cls) if f.name != "architecture"]


def register_model(
    name: str,
    factory: Callable[..., nn.Module],
    size_param: str,
    *,
    config_cls: type | None = None,
    objective: str | None = None,
    default_loss: LossFn | None = None,
    default_dataset: str | None = None,
    overwrite: bool = False,
) -> ModelSpec:
    """Register an architecture under ``name`` and return its spec.

    ``size_param`` must be a field of the config (or a parameter of the factory).
    Registering an existing name raises unless ``overwrite=True``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_model: name must be a non-empty str, got {name!r}")
    if not callable(factory):
        raise TypeError(f"register_model: factory must be callable, got {type(factory).__name__}")
    if not isinstance(size_param, str) or not size_param:
        raise TypeError(f"register_model: size_param must be a non-empty str, got {size_param!r}")
    _check_config_cls(config_cls)
    if objective is not None and objective not in OBJECTIVE_LOSSES:
        raise ValueError(
            f"register_model: objective must be one of {sorted(OBJECTIVE_LOSSES)} or None, "
            f"got {objective!r}"
        )
    if default_loss is not None and not callable(default_loss):
        raise TypeError(f"register_model: default_loss must be callable, got {type(default_loss).__name__}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"register_model: architecture {name!r} is already registered; pass overwrite=True to replace it"
        )
    spec = ModelSpec(
        name=name,
        factory=factory,
        size_param=size_param,
        config_cls=config_cls,
        objective=objective,
        default_loss=default_loss,
        default_dataset=default_dataset,
    )
    fields = _field_names(spec)
    if size_param not in fields:
        raise ValueError(
            f"register_model: size_param {size_param!r} is not a config field of {name!r} "
            f"(fields: {fields})"
        )
    _REGISTRY[name] = spec
    return spec


def unregister_model(name: str) -> None:
    """Remove ``name`` from the registry (for tests and user re-registration)."""
    if name not in _REGISTRY:
        raise KeyError(f"unregister_model: no architecture {name!r}; registered: {list_models()}")
    del _REGISTRY[name]


def list_models() -> list[str]:
    """Registered architecture names, sorted."""
    return sorted(_REGISTRY)


def get_model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; unknown names list the registered ones."""
    if not isinstance(name, str):
        raise TypeError(f"architecture must be a str, got {type(name).__name__} {name!r}")
    if name not in _REGISTRY:
        raise ModelConfigError(
            f"unknown architecture {name!r}; registered architectures: {', '.join(list_models())}"
        )
    return _REGISTRY[name]


# --------------------------------------------------------------------------- validation

_SIGNATURE_MODELS: dict[Any, type[pydantic.BaseModel]] = {}


def _signature_model(spec: ModelSpec) -> type[pydantic.BaseModel]:
    """A strict pydantic model built from the factory's signature (no config_cls case)."""
    key = (spec.name, spec.factory)
    if key in _SIGNATURE_MODELS:
        return _SIGNATURE_MODELS[key]
    target = spec.factory.__init__ if isinstance(spec.factory, type) else spec.factory
    try:
        hints = inspect.get_annotations(target, eval_str=True)
    except Exception:  # unresolvable annotations: fall back to Any
        hints = {}
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(spec.factory).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(pname, Any)
        default = ... if param.default is param.empty else param.default
        fields[pname] = (annotation, default)
    model = pydantic.create_model(  # type: ignore[call-overload]
        f"{spec.name}_config",
        __config__=pydantic.ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True),
        **fields,
    )
    _SIGNATURE_MODELS[key] = model
    return model


def _pydantic_message(arch: str, err: pydantic.ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "<config>"
        if not e["loc"]:  # a model-level rule (several fields together)
            parts.append(e["msg"].removeprefix("Value error, "))
        elif e["type"] == "extra_forbidden":
            parts.append(f"unknown field {loc!r}")
        elif e["type"] == "missing":
            parts.append(f"missing required field {loc!r}")
        else:
            parts.append(f"field {loc!r}: {e['msg']} (got {e.get('input')!r})")
    return f"invalid config for architecture {arch!r}: " + "; ".join(parts)


def _normalise(config: Any) -> tuple[str, dict[str, Any]]:
    """(architecture, fields) from a dict, YAML path or typed config object."""
    if isinstance(config, (str, os.PathLike)):
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"model config file {str(path)!r} does not exist")
        import yaml

        with path.open() as fh:
            loaded = yaml.safe_load(fh)
        if not isinstance(loaded, Mapping):
            raise ModelConfigError(f"model config file {str(path)!r} must hold a mapping, got {type(loaded).__name__}")
        data = dict(loaded)
        if "model" in data and isinstance(data["model"], Mapping) and "architecture" not in data:
            data = dict(data["model"])  # a full config with a `model:` section
    elif isinstance(config, Mapping) or type(config).__name__ == "DictConfig":
        if type(config).__name__ == "DictConfig":
            from omegaconf import OmegaConf

            config = OmegaConf.to_container(config, resolve=True)
        data = dict(config)
    elif isinstance(config, pydantic.BaseModel):
        data = config.model_dump()
        if "architecture" not in data:
            data["architecture"] = _name_for_config_cls(type(config))
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        data = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        if "architecture" not in data:
            data["architecture"] = _name_for_config_cls(type(config))
    else:
        raise TypeError(
            "model config must be a dict, a YAML file path or a typed config object, "
            f"got {type(config).__name__}"
        )
    if "architecture" not in data or data["architecture"] is None:
        raise ModelConfigError(
            "Missing required field 'architecture' in model config. Must be one of: " + ", ".join(list_models())
        )
    arch = data.pop("architecture")
    from flops_fit.models import nested

    if nested.is_nested(data):  # the framework's transformer / bert / rnn blocks
        try:
            data = nested.flatten(arch, data)
        except nested.NestedConfigError as exc:
            raise ModelConfigError(f"invalid config for architecture {arch!r}: {exc}") from None
    return arch, data


def _name_for_config_cls(cls: type) -> str:
    names = [s.name for s in _REGISTRY.values() if s.config_cls is cls]
    if len(names) != 1:
        raise ModelConfigError(
            f"config object of type {cls.__name__} has no 'architecture' field and matches "
            f"{'no' if not names else 'several'} registered architectures ({names}); "
            "choose one of: " + ", ".join(list_models())
        )
    return names[0]


def validate_config(config: Any) -> tuple[ModelSpec, dict[str, Any]]:
    """Validate ``config`` and return (spec, complete field dict incl. defaults, no architecture)."""
    arch, data = _normalise(config)
    spec = get_model_spec(arch)
    cls = spec.config_cls
    if cls is None or issubclass(cls, pydantic.BaseModel):
        model_cls = cls if cls is not None else _signature_model(spec)
        payload = dict(data)
        if "architecture" in model_cls.model_fields:
            payload["architecture"] = arch
        try:
            validated = model_cls.model_validate(payload)
        except pydantic.ValidationError as err:
            raise ModelConfigError(_pydantic_message(arch, err)) from None
        fields = {k: getattr(validated, k) for k in model_cls.model_fields if k != "architecture"}
    else:  # dataclass: check names here, types in its __post_init__
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ModelConfigError(
                f"invalid config for architecture {arch!r}: unknown field(s) {unknown}; "
                f"allowed: {sorted(allowed - {'architecture'})}"
            )
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in data
            and f.name != "architecture"
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ModelConfigError(f"invalid config for architecture {arch!r}: missing required field(s) {missing}")
        try:
            obj = cls(**data)
        except (TypeError, ValueError) as err:
            raise ModelConfigError(f"invalid config for architecture {arch!r}: {err}") from None
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(cls) if f.name != "architecture"}
    return spec, fields


# --------------------------------------------------------------------------- creation


def create_model(config: Any, device: str | torch.device | None = None) -> nn.Module:
    """Build a model from a dict, a YAML path or a typed config object.

    ``device`` (e.g. ``"cpu"``, ``"cuda"``, ``"meta"``) is used as the default device
    during construction, so ``device="meta"`` allocates nothing. The validated config
    (with ``architecture``) is attached as ``model.ff_config`` for :func:`save_model`.
    """
    spec, fields = validate_config(config)
    if device is not None:
        with torch.device(device):
            model = spec.factory(**fields)
    else:
        model = spec.factory(**fields)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"factory of architecture {spec.name!r} must return a torch.nn.Module, got {type(model).__name__}"
        )
    model.ff_config = {"architecture": spec.name, **fields}  # type: ignore[assignment]
    return model


def create_model_from_config(config: Any, device: str | torch.device | None = None) -> nn.Module:
    """The one factory of the Gaussian-mixture design: a model from a config (dict, YAML file, typed config,
    flat or nested), or from a checkpoint directory written by :func:`save_model`."""
    if isinstance(config, (str, os.PathLike)) and Path(config).is_dir():
        return load_model(config, device=device)
    return create_model(config, device=device)


def model_objective(architecture: str, fields: Mapping[str, Any], size: int | None = None) -> str | None:
    """The training objective of a registered architecture with these config fields, decided in one place:
    by the model itself (its ``objective`` attribute: a bidirectional LSTM trains masked LM, a GMM with
    ``prediction_type="assignments"`` trains cross-entropy), else the spec's default. The library and the
    CLI both ask here. `size` (default: the head size, or 16) only has to be a valid size value."""
    spec = get_model_spec(architecture)
    cfg = {k: v for k, v in fields.items() if v is not None and k not in ("architecture", "size_param", "_target_")}
    cfg[spec.size_param] = size if size is not None else cfg.get(spec.size_param) or int(cfg.get("head_dim", 16))
    try:
        model = create_model({"architecture": architecture, **cfg}, device="meta")
    except Exception:  # noqa: BLE001 - bad fields are reported by the contract check, with their names
        return spec.objective
    objective = getattr(model, "objective", None)
    return objective if isinstance(objective, str) and objective in OBJECTIVE_LOSSES else spec.objective


def default_loss_for(model_or_config: Any) -> LossFn | None:
    """The default loss of a model instance or a config: the instance's ``objective``
    attribute wins over the spec's (a bidirectional LSTM trains masked LM)."""
    if isinstance(model_or_config, nn.Module):
        objective = getattr(model_or_config, "objective", None)
        if isinstance(objective, str) and objective in OBJECTIVE_LOSSES:
            return OBJECTIVE_LOSSES[objective]
        cfg = getattr(model_or_config, "ff_config", None)
        return get_model_spec(cfg["architecture"]).loss() if cfg else None
    with torch.device("meta"):
        return default_loss_for(create_model(model_or_config))


def forward_batch(model: nn.Module, batch: Any) -> Any:
    """Call ``model`` on one batch following the module's batch convention."""
    if isinstance(batch, torch.Tensor):
        return model(batch)
    if isinstance(batch, (tuple, list)):
        if len(batch) != 2:
            raise ValueError(f"forward_batch: a tuple batch must be (inputs, labels), got {len(batch)} items")
        return model(batch[0])
    if isinstance(batch, Mapping):
        keys = getattr(model, "input_keys", None)
        if keys is not None:
            missing = [k for k in keys[:1] if k not in batch]
            if missing:
                raise ValueError(
                    f"forward_batch: {type(model).__name__} needs batch key {missing[0]!r}, "
                    f"batch has {sorted(batch)}"
                )
            return model(**{k: batch[k] for k in keys if k in batch})
        return model(**{k: v for k, v in batch.items() if k != "labels"})
    raise TypeError(f"forward_batch: batch must be a tensor, (inputs, labels) pair or dict, got {type(batch).__name__}")


# --------------------------------------------------------------------------- persistence


def _jsonable(fields: Mapping[str, Any], arch: str) -> dict[str, Any]:
    out = {}
    for k, v in fields.items():
        if isinstance(v, tuple):
            v = list(v)
        try:
            json.dumps(v)
        except TypeError:
            raise ModelConfigError(
                f"save_model: config field {k!r} of architecture {arch!r} is not JSON-serialisable "
                f"({type(v).__name__})"
            ) from None
        out[k] = v
    return out


def save_model(model: nn.Module, config: Any, directory: str | os.PathLike) -> Path:
    """Write ``model_config.json`` (validated config, schema 1) and ``model.pt`` (state dict), each atomically.

    ``config`` may be anything :func:`create_model` accepts, or None to use the
    config attached to a model made by :func:`create_model`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"save_model: model must be a torch.nn.Module, got {type(model).__name__}")
    if config is None:
        config = getattr(model, "ff_config", None)
        if config is None:
            raise ValueError("save_model: config is None and the model was not made by create_model")
    spec, fields = validate_config(config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "schema": CHECKPOINT_SCHEMA,
        "kind": "flops-fit-model",
        "config": {"architecture": spec.name, **_jsonable(fields, spec.name)},
        "num_params": int(sum(p.numel() for p in model.parameters())),
    }
    with io.atomic_open(directory / _CONFIG_FILE, "w") as fh:
        fh.write(json.dumps(payload, indent=2, sort_keys=True))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with io.atomic_open(directory / _WEIGHTS_FILE, "wb") as fh:
        torch.save(state, fh)
    return directory


def load_model(checkpoint_dir: str | os.PathLike, device: str | torch.device | None = None) -> nn.Module:
    """Rebuild a model saved by :func:`save_model` (config and weights), in eval mode."""
    directory = Path(checkpoint_dir)
    cfg_path = directory / _CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"load_model: {str(cfg_path)!r} does not exist")
    from flops_fit.io import read_json

    payload = read_json(cfg_path)  # a corrupt file is an error naming it
    if not isinstance(payload, dict) or payload.get("schema") != CHECKPOINT_SCHEMA:
        raise ValueError(
            f"load_model: {str(cfg_path)!r} field 'schema' must be {CHECKPOINT_SCHEMA}, "
            f"got {payload.get('schema') if isinstance(payload, dict) else payload!r}"
        )
    if not isinstance(payload.get("config"), dict):
        raise ValueError(f"load_model: {str(cfg_path)!r} field 'config' must be a mapping")
    model = create_model(payload["config"])
    weights = directory / _WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"load_model: {str(weights)!r} does not exist")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    if device is not None:
        model.to(device)
    return model.eval()
