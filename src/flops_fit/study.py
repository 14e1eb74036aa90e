"""What a study is — model, size parameter, objective, loss, data, units, plan settings, run identity —
decided here, once, for ``find_optimal`` and every ``ff-*`` command alike.

``resolve_study`` takes either front end's description (objects, a registered
name, or the CLI's mappings with ``architecture`` / ``_target_`` / ``name``),
checks every argument before anything expensive runs, and returns a
:class:`StudySpec`. Its :meth:`StudySpec.run_settings` is the sweep's identity
(part of sweep.json's fingerprint), so a sweep started by the library can be
finished by ``ff-train`` and vice versa.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from flops_fit.analysis import CONFIDENCE, N_BOOTSTRAP  # noqa: F401  (re-exported for the front ends)
from flops_fit.contract import ModelContract, check_model
from flops_fit.design import BRANCHES, DESIGNS, SEPARATE
from flops_fit.flops import FLOPS_6ND, FLOPS_MEASURED
from flops_fit.planning import (
    PARAM_COUNT_NON_EMBEDDING,
    PARAM_COUNTS,
    PlanSettings,
    SweepPlan,
    _jsonable,
    make_budgets,
)
from flops_fit.training.config import TrainConfig
from flops_fit.training.mock import MockLaw
from flops_fit.validation import check_callable, check_choice, check_int, check_number

#: real training, or the seeded synthetic law (no data, no GPU)
MODES = ("local", "mock")
#: built-in data sets by name, and the options each takes with its default (the identity of named data)
DATA_OPTIONS: dict[str, dict[str, Any]] = {
    "text": {"paths": None, "tokenizer": "byte", "vocab_size": None, "seq_len": None, "max_bytes": None,
             "val_fraction": 0.05, "special_tokens": None, "mlm_probability": 0.15},
    "gmm": {"num_clusters": None, "dim": None, "points_per_set": 64, "snr": 4.0, "val_sets": 256},
    "digits": {"val_fraction": 0.2},
}
#: options that say where or how to cache, not what the data are (left out of the identity)
_DATA_OPERATIONAL = ("cache_dir",)


def check_analysis_options(n_bootstrap: Any, confidence: Any) -> None:
    check_int(n_bootstrap, "n_bootstrap", min=0, what="0 = no intervals")
    check_number(confidence, "confidence", min=0, max=1, min_inclusive=False, max_inclusive=False,
                 expected="a number between 0 and 1 (e.g. 0.9)")


# ---------------------------------------------------------------------------
# the parts of a study


@dataclass
class StudyData:
    """Training and validation data, and what identifies them in the plan."""

    train: Any
    val: Any | None
    description: dict[str, Any] | None  # None: a user's object (identified by the user, not by us)
    summary: str = ""
    units_per_sample: int | None = None  # what D counts per item when it is not known from the batch


@dataclass
class StudySpec:
    """A study resolved once: everything the plan, train and analyze stages need."""

    model: ModelContract  # passed the contract check on a probe instance
    mode: str
    seed: int
    settings: PlanSettings
    probe_size: int
    flops_accounting: str
    train_config: TrainConfig
    budgets: list[float] = field(default_factory=list)
    mock_law: MockLaw | None = None
    data: StudyData | None = None
    loss_fn: Callable[..., Any] | None = None
    loss_name: str | None = None
    data_info: Any = None  # training.datautil.DataInfo from the probe batch
    allow_repeat: bool = True
    train_fn: Callable[..., Any] | None = None
    design: str = SEPARATE  # how the points are trained: separate runs, or trunks with cooldown branches
    extra_branches: int = 0  # extra cooldown branches per gap between a size's budgets (design="branches")

    @property
    def needs_data(self) -> bool:
        """Real training without data or loss: only a plan can be made."""
        return self.mode == "local" and self.train_fn is None and (self.data is None or self.loss_fn is None)

    def run_settings(self) -> dict[str, Any]:
        """What identifies the runs besides the experiments: part of the plan's fingerprint."""
        out = self._run_settings()
        if self.design != SEPARATE:  # absent for separate runs: their identity is what it always was
            out["design"] = self.design
        if self.extra_branches:
            out["extra_branches"] = self.extra_branches
        return out

    def _run_settings(self) -> dict[str, Any]:
        if self.mode == "mock":
            return {"mode": "mock", "seed": self.seed, "mock_law": (self.mock_law or MockLaw()).to_dict()}
        data = self.data.description if self.data is not None else None
        if self.train_fn is not None:  # resuming with another training loop is refused
            return {"mode": "local", "seed": self.seed, "train_fn": qualified_name(self.train_fn), "data": data,
                    "loss": self.loss_name}
        return _jsonable({
            "mode": "local",
            "seed": self.seed,
            "train_config": self.train_config.identity(),
            "units": self.data_info.units if self.data_info is not None else None,
            "data": data,
            "loss": self.loss_name,
            "allow_repeat": self.allow_repeat,
        })

    def identity_plan(self) -> SweepPlan:
        """A plan without experiments: what sweep.json must agree with to be trained by this study."""
        return SweepPlan(budgets=[], experiments=[], size_param=self.model.size_param, model_name=self.model.name,
                         model_kwargs=self.model.model_kwargs, settings=self.settings,
                         flops_accounting=self.flops_accounting, run_settings=self.run_settings())


# ---------------------------------------------------------------------------
# objects by description (the CLI's _target_, a loss by import path)


def qualified_name(obj: Any) -> str:
    """module.qualname of a class or function: how a user's model or loss is named in sweep.json."""
    mod = getattr(obj, "__module__", None) or type(obj).__module__
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{mod}.{name}"


def import_object(path: Any, argument: str) -> Any:
    """The object at import path ``pkg.module.Name`` (attributes allowed: ``pkg.mod.Class.make``)."""
    if not isinstance(path, str) or not path or "." not in path:
        raise ValueError(f"{argument}: expected an import path like 'package.module.Name', found {path!r}")
    parts = path.split(".")
    last_error = None
    for i in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:i])
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            last_error = exc
            if exc.name and not name.startswith(exc.name) and not exc.name.startswith(name):
                raise ImportError(f"{argument}: importing {name!r} for {path!r} failed: {exc}") from None
            continue
        except Exception as exc:  # noqa: BLE001 - the user's module raised while importing
            raise ImportError(f"{argument}: importing {name!r} for {path!r} raised {type(exc).__name__}: {exc}") \
                from None
        obj = module
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                raise ImportError(f"{argument}: {path!r} not found: module {name!r} has no attribute {attr!r}")
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"{argument}: cannot import {path!r} ({last_error}); is its package installed or on PYTHONPATH?")


def _call_target(target: str, kwargs: Mapping[str, Any], argument: str) -> Any:
    fn = import_object(target, argument)
    try:
        return fn(**kwargs)
    except Exception as exc:  # noqa: BLE001
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ValueError(f"{argument}: {target}({args}) raised {type(exc).__name__}: {exc}") from None


class RegisteredModel:
    """Picklable factory for a registered architecture: keyword fields -> model."""

    def __init__(self, architecture: str) -> None:
        self.architecture = architecture
        self.__qualname__ = architecture

    def __call__(self, **fields: Any) -> Any:
        from flops_fit.models import create_model

        return create_model({"architecture": self.architecture, **fields})


# ---------------------------------------------------------------------------
# model


def _model(model: Any, size_param: str | None, model_kwargs: Mapping[str, Any] | None) -> ModelContract:
    """The model in either front end's form, with the user's fields only (defaults come later)."""
    if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
        raise TypeError(f"model_kwargs: expected a dict of constructor arguments, found {type(model_kwargs).__name__}")
    kwargs = dict(model_kwargs or {})
    if isinstance(model, Mapping):
        spec = dict(model)
        clash = sorted(set(spec) & set(kwargs) - {"architecture", "_target_", "size_param"})
        if clash:
            raise ValueError(f"model_kwargs: {clash[0]!r} is also given in the model mapping; give it once")
        if spec.get("_target_") is not None:
            target = spec.pop("_target_")
            size_param = spec.pop("size_param", None) or size_param
            spec.pop("architecture", None)
            factory = import_object(target, "model._target_")
            if not callable(factory):
                raise TypeError(f"model._target_: {target!r} is a {type(factory).__name__}, expected a class or factory")
            if not isinstance(size_param, str) or not size_param:
                raise ValueError(f"model.size_param: expected the name of {target}'s size argument (e.g. d_model), "
                                 f"found {size_param!r}")
            spec.pop(size_param, None)
            return ModelContract(factory, size_param, {**spec, **kwargs}, name=qualified_name(factory))
        arch = spec.pop("architecture", None)
        if arch is None:
            from flops_fit.models import list_models

            raise ValueError(f"model: expected 'architecture' (one of {', '.join(list_models())}) or '_target_', "
                             "found neither")
        if spec.get("size_param") is not None and size_param is None:
            size_param = spec["size_param"]
        spec.pop("size_param", None)
        return _registered(arch, size_param, {**spec, **kwargs})
    if isinstance(model, str) and model.startswith("hf:"):  # a transformers model class, swept without glue
        from flops_fit.models.hf import HuggingFaceModel

        options = {k: kwargs.pop(k) for k in ("head_dim", "mlp_ratio") if k in kwargs}
        factory = HuggingFaceModel(model[3:], size_param or "hidden_size", **options)
        return ModelContract(factory, factory.size_param, kwargs, name=qualified_name(factory),
                             objective=factory.objective)
    if isinstance(model, str):
        return _registered(model, size_param, kwargs)
    if model is None:
        raise ValueError("model_cls: expected a model class, a factory or a registered architecture name, found None")
    own = getattr(model, "size_param", None) if not isinstance(model, type) else None  # e.g. ff.hf_model(...)
    if isinstance(own, str):
        if size_param not in (None, own):
            raise ValueError(f"model_size_param: this factory is sized by {own!r}, found {size_param!r}")
        size_param = own
    if not isinstance(size_param, str) or not size_param:
        raise ValueError(f"model_size_param: expected the name of the constructor argument that sets the size "
                         f"(e.g. 'd_model'), found {size_param!r}")
    return ModelContract(model, size_param, kwargs, name=qualified_name(model) if callable(model) else repr(model),
                         objective=getattr(model, "objective", None) if not isinstance(model, type) else None)


def _registered(name: str, size_param: str | None, fields: dict[str, Any]) -> ModelContract:
    from flops_fit.models import get_model_spec

    try:
        spec = get_model_spec(name)
    except ValueError as exc:
        raise ValueError(f"model_cls: {exc}") from None
    from flops_fit.models import nested

    size_param = nested.NESTED_SIZE_PARAMS.get(size_param, size_param)  # e.g. transformer.hidden_size
    if size_param is not None and size_param != spec.size_param:
        raise ValueError(f"model_size_param: architecture {name!r} is sized by {spec.size_param!r}, found {size_param!r}")
    if nested.is_nested(fields):  # the framework's transformer / bert / rnn blocks, as flat fields
        try:
            fields = nested.flatten(name, fields)
        except nested.NestedConfigError as exc:
            raise ValueError(f"model_kwargs: {exc}") from None
    fields = {k: v for k, v in fields.items() if v is not None and k != spec.size_param}  # None: "decide for me"
    return ModelContract(RegisteredModel(name), spec.size_param, fields, name=name, architecture=name)


def _accepted_fields(model: ModelContract) -> set[str] | None:
    """Constructor arguments the model accepts (None: anything, e.g. **kwargs)."""
    own = getattr(model.factory, "accepted_fields", None)  # a factory that knows (e.g. a Hugging Face model's)
    if callable(own):
        return set(own())
    if model.architecture is not None:
        from flops_fit.models import get_model_spec

        cfg = get_model_spec(model.architecture).config_cls
        names = getattr(cfg, "model_fields", None) or getattr(cfg, "__dataclass_fields__", None)
        return set(names) - {"architecture"} if names else None
    try:
        params = inspect.signature(model.factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _registered_defaults(model: ModelContract) -> dict[str, Any]:
    if model.architecture is None:
        return {}
    from flops_fit.models import get_model_spec

    cfg = get_model_spec(model.architecture).config_cls
    if hasattr(cfg, "model_fields"):
        return {k: f.default for k, f in cfg.model_fields.items() if not f.is_required()}
    if cfg is not None and dataclasses.is_dataclass(cfg):
        return {f.name: f.default for f in dataclasses.fields(cfg) if f.default is not dataclasses.MISSING}
    return {}


def _complete_registered(model: ModelContract, probe: int) -> None:
    """Every field of a registered architecture, defaults included: the same kwargs from either front end."""
    if model.architecture is None:
        return
    from flops_fit.models import ModelConfigError, validate_config

    try:
        _, fields = validate_config({"architecture": model.architecture, **model.model_kwargs, model.size_param: probe})
    except ModelConfigError as exc:
        raise ValueError(f"model_kwargs: {exc}") from None
    fields.pop(model.size_param, None)
    model.model_kwargs = fields


# ---------------------------------------------------------------------------
# plan settings


def plan_settings(planning: Mapping[str, Any] | PlanSettings | None, model: ModelContract) -> tuple[PlanSettings, int]:
    """PlanSettings (one set of defaults: the dataclass's) and the probe size.

    ``size_multiple=None`` lets the model decide: a registered transformer sized by
    ``d_model``, or a factory with a ``head_dim`` (``hf_model``), needs widths divisible by its
    head size; anything else takes 1.
    """
    if isinstance(planning, PlanSettings):
        p = dataclasses.asdict(planning)
    else:
        p = {k: v for k, v in dict(planning or {}).items() if v is not None}
    probe = p.pop("probe_size", None)
    known = {f.name for f in dataclasses.fields(PlanSettings)}
    unknown = sorted(set(p) - known)
    if unknown:
        raise ValueError(f"planning: unknown setting {unknown[0]!r}; settings are {sorted(known)}")
    if p.get("size_multiple") is None and p.get("size_values") is None:
        head = (model.model_kwargs.get("head_dim") or _registered_defaults(model).get("head_dim")) \
            if model.architecture is not None and model.size_param == "d_model" \
            else getattr(model.factory, "head_dim", None)  # a factory with a fixed head size (a Hugging Face one)
        p["size_multiple"] = int(head) if head else 1
    if p.get("size_values") is not None:
        p["size_values"] = [int(v) for v in p["size_values"]]
    for name in ("num_model_sizes", "size_multiple", "size_min", "size_max", "min_steps"):
        if name in p:
            check_int(p[name], name, min=1)
    if "param_count" in p:
        check_choice(p["param_count"], "param_count", PARAM_COUNTS)
    settings = PlanSettings(**p)
    if probe is not None:
        check_int(probe, "probe_size", min=1, what="a size value for the contract probe")
    elif settings.size_values:
        probe = int(min(settings.size_values))
    else:
        m = settings.size_multiple
        probe = max(m, m * math.ceil(settings.size_min / m))
    return settings, int(probe)


def _design_config(design: str, tc: TrainConfig, train_fn: Any, extra_branches: int = 0) -> TrainConfig:
    """The training config a design needs: a branch is a WSD run's cooldown, so every run is WSD."""
    check_choice(design, "design", DESIGNS)
    check_int(extra_branches, "extra_branches", min=0)
    if extra_branches and design != BRANCHES:
        raise ValueError(f"extra_branches: extra points are cooldown branches of a trunk, so they need "
                         f"design='branches', found design={design!r} with extra_branches={extra_branches}")
    if design != BRANCHES:
        return tc
    if train_fn is not None:
        raise ValueError("design: 'branches' forks the built-in trainer's runs from shared trunks; a train_fn "
                         "trains each run itself, so use design='separate' with it")
    return tc if tc.schedule == "wsd" else dataclasses.replace(tc, schedule="wsd")


def make_train_config(value: Any) -> TrainConfig:
    """A TrainConfig from itself, a dict of its fields, or None (the defaults)."""
    if value is None:
        return TrainConfig()
    if isinstance(value, TrainConfig):
        return value
    if isinstance(value, Mapping):
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"train_config: unknown field {unknown[0]!r}; fields are {sorted(known)}")
        return TrainConfig(**dict(value))
    raise TypeError(f"train_config: expected a TrainConfig or a dict of its fields, found {type(value).__name__}")


# ---------------------------------------------------------------------------
# data


def describe_data(dataset: Any, options: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
    """(resolver name, identity) of named data, whichever front end named it; None for a data object.

    ``"stdlib"`` / ``{"name": "stdlib", ...}`` / a path / ``{"name": "text", "paths": ...}``,
    ``"gmm"``, ``"digits"``: every option is filled with its default, so the library's
    ``dataset="stdlib"`` and the CLI's ``data=stdlib`` describe the same data.
    """
    opts = {k: v for k, v in dict(options or {}).items() if k not in _DATA_OPERATIONAL and k != "seed"}
    if isinstance(dataset, Mapping):
        spec = dict(dataset)
        if spec.get("_target_") is not None:
            return None
        name = spec.pop("name", None)
        spec.pop("cache_dir", None)
        opts = {**{k: v for k, v in spec.items() if v is not None}, **opts}
    elif isinstance(dataset, str):
        name = dataset
    else:
        return None
    from flops_fit.data.builtin import is_builtin_name

    if name not in ("stdlib", "text", "gmm", "digits"):
        if not isinstance(name, str) or not is_builtin_name(name):
            raise ValueError(f"dataset: expected a torch Dataset/DataLoader, a built-in name ('stdlib', 'gmm', "
                             f"'digits') or an existing text file, folder or glob; found {name!r}")
        opts.setdefault("paths", name)
        name = "text"
    if name == "text" and not opts.get("paths"):
        raise ValueError("data.paths: expected a folder, file or glob for data=text, found none")
    kind = "text" if name in ("stdlib", "text") else name
    allowed = DATA_OPTIONS[kind]
    unknown = sorted(set(opts) - set(allowed) - {"objective"})
    if unknown:
        raise ValueError(f"data_options: unknown option {unknown[0]!r} for {name!r} data; options are "
                         f"{sorted(allowed)}")
    if isinstance(opts.get("paths"), (list, tuple)):
        raise ValueError("data.paths: give one folder, file or glob (a list is not supported yet)")
    if opts.get("seq_len") is not None:
        check_int(opts["seq_len"], "data.seq_len", min=1)
    desc = {"name": name, **{k: opts.get(k, v) for k, v in allowed.items() if not (name == "stdlib" and k == "paths")}}
    return name, desc


def _data(dataset: Any, val_dataset: Any, options: Mapping[str, Any] | None, model: ModelContract, seed: int,
          units_per_sample: int | None) -> StudyData:
    """Load the data and make the model agree with it (vocabulary size, sequence length, ...)."""
    opts = dict(options or {})
    if isinstance(dataset, Mapping) and dataset.get("_target_") is not None:
        spec = dict(dataset)
        target, val_spec = spec.pop("_target_"), spec.pop("val", None)
        train = _call_target(target, spec, "data._target_")
        if isinstance(val_spec, Mapping) and val_spec.get("_target_") is not None and val_dataset is None:
            vs = dict(val_spec)
            val_dataset = _call_target(vs.pop("_target_"), vs, "data.val._target_")
        return StudyData(train, val_dataset, {"_target_": target, **_jsonable(spec)}, target, units_per_sample)
    if type(dataset).__module__.split(".")[0] == "datasets":  # a Hugging Face datasets.Dataset, without glue
        from flops_fit.data.hf_datasets import adapt

        train, desc = adapt(dataset, opts.get("label_column"), model.objective, "dataset")
        val = adapt(val_dataset, opts.get("label_column"), model.objective, "val_dataset")[0] \
            if val_dataset is not None else None
        return StudyData(train, val, desc, f"datasets.{type(dataset).__name__}", units_per_sample)
    if opts.get("label_column") is not None:
        raise ValueError(f"data_options: label_column is for a Hugging Face datasets.Dataset, found "
                         f"{type(dataset).__name__}")
    described = describe_data(dataset, opts)
    if described is None:
        return StudyData(dataset, val_dataset, None, type(dataset).__name__, units_per_sample)
    name, desc = described
    from flops_fit.data.builtin import resolve_dataset

    resolver_opts = {k: v for k, v in desc.items() if v is not None and k not in ("name", "paths")}
    if isinstance(dataset, Mapping) and dataset.get("cache_dir") is not None:
        resolver_opts["cache_dir"] = dataset["cache_dir"]
    if opts.get("cache_dir") is not None:
        resolver_opts["cache_dir"] = opts["cache_dir"]
    resolver_opts["seed"] = seed
    fields = {**_registered_defaults(model), **model.model_kwargs}
    resolved = resolve_dataset(desc["paths"] if name == "text" else name, objective=model.objective,
                               options=resolver_opts, model_fields=fields)
    accepted = _accepted_fields(model)
    for key, value in resolved.model_overrides.items():
        if accepted is not None and key not in accepted:
            continue
        if key == "vocab_size" and model.model_kwargs.get(key) is not None and model.model_kwargs[key] < value:
            raise ValueError(f"model_kwargs: vocab_size={model.model_kwargs[key]} is smaller than the tokenizer's "
                             f"vocabulary ({value})")
        model.model_kwargs.setdefault(key, value)
    val = val_dataset if val_dataset is not None else resolved.val
    return StudyData(resolved.train, val, desc, resolved.description,
                     units_per_sample or resolved.units_per_sample)


# ---------------------------------------------------------------------------
# loss


def _loss(loss: Any, model: ModelContract) -> tuple[Callable[..., Any] | None, str | None]:
    """(loss function, its name in the identity): a callable, an import path, or the model's default."""
    if loss is None:
        if model.architecture is None:  # a factory that knows its objective (a Hugging Face model's) has a loss
            from flops_fit.models import OBJECTIVE_LOSSES

            fn = OBJECTIVE_LOSSES.get(model.objective or "")
            return fn, qualified_name(fn) if fn is not None else None
        from flops_fit.models import OBJECTIVE_LOSSES, get_model_spec

        fn = OBJECTIVE_LOSSES.get(model.objective or "") or get_model_spec(model.architecture).loss()
        return fn, qualified_name(fn) if fn is not None else None
    if isinstance(loss, str):
        fn = import_object(loss, "loss._target_")
        check_callable(fn, "loss._target_", "a callable (outputs, batch) -> loss")
        return fn, qualified_name(fn)
    check_callable(loss, "loss_fn", "a callable (outputs, batch) -> scalar tensor")
    return loss, qualified_name(loss)


# ---------------------------------------------------------------------------
# the one resolution


def resolve_study(
    model: Any,
    size_param: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    *,
    dataset: Any = None,
    val_dataset: Any = None,
    loss: Any = None,
    data_options: Mapping[str, Any] | None = None,
    units_per_sample: int | None = None,
    compute: Mapping[str, Any] | None = None,
    planning: Mapping[str, Any] | PlanSettings | None = None,
    mode: str = "local",
    seed: int = 0,
    mock_law: MockLaw | None = None,
    train_config: Any = None,
    flops_accounting: str = FLOPS_6ND,
    allow_repeat: bool = True,
    train_fn: Callable[..., Any] | None = None,
    design: str = SEPARATE,
    extra_branches: int = 0,
) -> StudySpec:
    """Check every argument, resolve model, data and loss, and probe them; nothing trains here.

    `compute` holds ``compute_budgets`` or ``min_flops``/``max_flops``/``num_budgets`` (None:
    no budgets yet, e.g. to train an existing sweep.json). In mode="local" the data are
    loaded and one probe batch goes through the model and loss (the data contract), so a
    plan made here counts what training will count.
    """
    check_choice(mode, "mode", MODES)
    check_int(seed, "seed", min=0)
    check_choice(flops_accounting, "flops_accounting", (FLOPS_6ND, FLOPS_MEASURED))

    if mock_law is not None and not isinstance(mock_law, MockLaw):
        raise TypeError(f"mock_law: expected a flops_fit.MockLaw, found {type(mock_law).__name__}")
    if train_fn is not None:
        check_callable(train_fn, "train_fn", "a function (model, experiment, context) -> loss")
        if mode != "local":
            raise ValueError(f"train_fn: replaces real training, so it needs mode='local', found mode={mode!r}")
    tc = _design_config(design, make_train_config(train_config), train_fn, extra_branches)
    c = dict(compute or {})
    budgets = make_budgets(c.get("compute_budgets"), c.get("min_flops"), c.get("max_flops"),
                           c.get("num_budgets")) if any(v is not None for v in c.values()) else []

    sweep_model = _model(model, size_param, model_kwargs)
    settings, probe = plan_settings(planning, sweep_model)
    opts = dict(data_options or {})
    if sweep_model.architecture is not None:
        from flops_fit.models import get_model_spec, model_objective

        sweep_model.objective = opts.get("objective") or model_objective(
            sweep_model.architecture, sweep_model.model_kwargs, probe)  # the model decides, for both front ends
        if dataset is None and mode == "local":
            dataset = get_model_spec(sweep_model.architecture).default_dataset
    opts.pop("objective", None)
    data = None
    if mode == "local" and dataset is not None:  # resolved for a plan too, so its N matches what would train
        data = _data(dataset, val_dataset, opts, sweep_model, seed, units_per_sample)
    _complete_registered(sweep_model, probe)
    loss_fn, loss_name = _loss(loss, sweep_model) if mode == "local" else (None, None)
    m = sweep_model
    m.model_kwargs = check_model(m.factory, m.size_param, m.model_kwargs, probe).model_kwargs
    if settings.align_sizes is None:  # a trunk-and-branch design saves compute where sizes repeat across budgets
        settings.align_sizes = design == BRANCHES
    if settings.param_count == PARAM_COUNT_NON_EMBEDDING:
        m.check_non_embedding(probe)
    spec = StudySpec(model=m, mode=mode, seed=seed, settings=settings,
                     probe_size=probe, flops_accounting=flops_accounting, train_config=tc, budgets=budgets,
                     mock_law=(mock_law or MockLaw()) if mode == "mock" else None, data=data, loss_fn=loss_fn,
                     loss_name=loss_name, allow_repeat=bool(allow_repeat), train_fn=train_fn, design=design,
                     extra_branches=int(extra_branches))
    if mode == "local" and data is not None and loss_fn is not None and train_fn is None:
        from flops_fit.training.local import check_data_contract

        spec.data_info = check_data_contract(m.factory, m.size_param, m.model_kwargs, probe, data.train, loss_fn, tc,
                                             data.units_per_sample)
        settings.units_per_step = max(1, round(tc.batch_size * tc.grad_accum_steps * spec.data_info.units_per_sample))
    return spec

