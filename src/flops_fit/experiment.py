"""One model from an experiment config: the multi-architecture framework's unit of work.

An experiment config (YAML or dict) has the framework's required top-level fields::

    experiment_name: tiny-bert
    random_seed: 0
    data:      {name: stdlib | text | gmm | digits, paths: ..., seq_len: 64, max_bytes: ..., val_fraction: ...}
    tokenizer: {tokenizer_type: wordpiece | bpe | sentencepiece | character | byte, vocab_size: 2048,
                special_tokens: {cls_token, sep_token, mask_token, unk_token, pad_token}}   # null: no text
    model:     {architecture: bert, transformer: {...}, bert: {...}}       # flat or nested (models.nested)
    training:  {objective: masked_lm, mlm_probability: 0.15, tokens: 200000, batch_size: 16, ...TrainConfig}
    logging:   {output_dir: runs/tiny-bert, log_every: 10, progress: null}

:func:`train_model` trains that model on that data with that tokenizer and objective
through the library's own resolution (``study.resolve_study``) and trainer: exactly
``training.tokens`` data units, checkpoints under ``<output_dir>/checkpoints/``, a
resumed run after a kill, then an evaluation — perplexity for a causal model;
masked-token loss, accuracy and pseudo-perplexity (exp of the masked loss) for a
bidirectional one — written with the record to ``<output_dir>/run.json`` and the
weights to ``<output_dir>/model/``. :func:`experiment_study` turns the same config
into ``find_optimal`` arguments, so it can be the fixed part of a sweep.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from flops_fit.validation import check_int, check_number

REQUIRED = ("experiment_name", "data", "tokenizer", "model", "training", "logging", "random_seed")
#: where shipped example configs live (ff-train-model --config tiny_bert)
EXAMPLES = Path(__file__).parent / "conf" / "experiments"
_DATA_KEYS = ("name", "paths", "seq_len", "max_bytes", "val_fraction", "cache_dir", "num_clusters", "dim",
              "points_per_set", "snr", "val_sets")
_TOKENIZER_KEYS = ("tokenizer_type", "vocab_size", "special_tokens")
_LOGGING_KEYS = ("output_dir", "log_every", "progress")


@dataclass
class ModelRun:
    """What train_model did: the run's record, its evaluation and where everything is."""

    record: Any  # training.store.RunRecord
    evaluation: dict[str, float]
    output_dir: Path
    config: dict[str, Any]

    def summary(self) -> str:
        r = self.record
        ev = ", ".join(f"{k} {v:.4g}" for k, v in self.evaluation.items())
        return (f"{self.config['experiment_name']}: {r.status}, N={r.num_params:,}, D={r.num_tokens:,.0f} "
                f"{r.units}, {r.details.get('steps')} steps (resumed from {r.details.get('resumed_from_step', 0)}), "
                f"{ev} -> {self.output_dir}")


def load_experiment(config: Any, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config as a plain dict (from a dict, a YAML file or a shipped example's name), every required field
    checked; `overrides` ("training.tokens" -> value) are applied first."""
    import yaml

    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.is_file() and (EXAMPLES / f"{config}.yaml").is_file():
            path = EXAMPLES / f"{config}.yaml"
        if not path.is_file():
            shipped = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
            raise FileNotFoundError(f"config: {config}: no such file, nor a shipped example ({', '.join(shipped)})")
        config = yaml.safe_load(path.read_text())
    if not isinstance(config, Mapping):
        raise TypeError(f"config: expected a mapping (or a YAML file of one), found {type(config).__name__}")
    cfg = _plain(config)
    for key, value in dict(overrides or {}).items():
        *parents, leaf = key.split(".")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"{key}: {p!r} is not a section of the config")
        node[leaf] = value
    missing = [k for k in REQUIRED if k not in cfg]
    if missing:
        raise ValueError(f"Missing required field {missing[0]!r} in experiment config. Required: {', '.join(REQUIRED)}")
    unknown = sorted(set(cfg) - set(REQUIRED))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown top-level field of the experiment config; fields are "
                         f"{', '.join(REQUIRED)}")
    for section, keys in (("data", _DATA_KEYS), ("tokenizer", _TOKENIZER_KEYS), ("logging", _LOGGING_KEYS)):
        value = cfg[section]
        if value is None and section == "tokenizer":
            continue
        if not isinstance(value, dict):
            raise ValueError(f"{section}: expected a mapping, found {type(value).__name__}")
        extra = sorted(set(value) - set(keys))
        if extra:
            raise ValueError(f"{section}.{extra[0]}: unknown field; fields are {', '.join(keys)}")
    if not isinstance(cfg["model"], dict) or not isinstance(cfg["training"], dict):
        raise ValueError("model, training: expected mappings")
    check_int(cfg["random_seed"], "random_seed", min=0)
    if not isinstance(cfg["experiment_name"], str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*",
                                                                         cfg["experiment_name"]):
        raise ValueError(f"experiment_name: expected letters, digits, '_', '.' or '-' (it names files), found "
                         f"{cfg['experiment_name']!r}")
    return cfg


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _special_tokens(spec: Any) -> Any:
    """{bos_token: "<s>", ...} (the framework's form) -> {bos: "<s>", ...} (the tokenizers'); a style name as is."""
    if isinstance(spec, Mapping):
        return {str(k).removesuffix("_token"): v for k, v in spec.items()}
    return spec


def experiment_study(config: Any, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``find_optimal`` arguments for this experiment (model, data, tokenizer, objective, TrainConfig, seed):
    add the size parameter (nested names work, e.g. "transformer.hidden_size") and budgets to sweep it."""
    cfg = load_experiment(config, overrides)
    training = dict(cfg["training"])
    objective = training.pop("objective", None)
    mlm = training.pop("mlm_probability", None)
    training.pop("tokens", None)
    log = cfg["logging"]
    if log.get("log_every") is not None:
        training["log_every"] = log["log_every"]
    if log.get("progress") is not None:
        training["progress"] = log["progress"]
    data = {k: v for k, v in cfg["data"].items() if v is not None}
    name = data.pop("name", None) or ("text" if data.get("paths") else "stdlib")
    tok = cfg["tokenizer"] or {}
    options = {**data, **({"tokenizer": tok["tokenizer_type"]} if tok.get("tokenizer_type") else {}),
               **({"vocab_size": tok["vocab_size"]} if tok.get("vocab_size") is not None else {}),
               **({"special_tokens": _special_tokens(tok["special_tokens"])} if tok.get("special_tokens") else {}),
               **({"mlm_probability": mlm} if mlm is not None else {})}
    if name == "text":
        name = options.pop("paths")
    model = _with_objective(dict(cfg["model"]), objective)
    return {"model_cls": model, "dataset": name, "data_options": options, "train_config": training,
            "seed": cfg["random_seed"]}


def _with_objective(model: dict[str, Any], objective: str | None) -> dict[str, Any]:
    """training.objective, given to the model that takes one (a recurrent LM) or checked against the one the model
    trains (a bidirectional transformer is masked LM only): never a causal loss on a model that sees ahead."""
    if objective is None:
        return model
    from flops_fit.models import OBJECTIVE_LOSSES, get_model_spec, model_objective, nested

    if objective not in OBJECTIVE_LOSSES:
        raise ValueError(f"training.objective: expected one of {', '.join(sorted(OBJECTIVE_LOSSES))}, found "
                         f"{objective!r}")
    arch = model.get("architecture")
    spec = get_model_spec(arch)
    if "objective" in (getattr(spec.config_cls, "model_fields", None) or {}):
        return {**model, "objective": objective}
    flat = nested.flatten(arch, model) if nested.is_nested(model) else model
    own = model_objective(arch, {k: v for k, v in flat.items() if k != "architecture"})
    if own != objective:
        raise ValueError(f"training.objective: {arch} trains {own}, found {objective!r}")
    return model


def train_model(config: Any, *, output_dir: str | Path | None = None,
                overrides: Mapping[str, Any] | None = None) -> ModelRun:
    """Train the experiment config's one model (resuming an interrupted run) and evaluate it; see the module doc."""
    from flops_fit.models import get_model_spec, nested
    from flops_fit.planning import Experiment
    from flops_fit.study import resolve_study

    cfg = load_experiment(config, overrides)
    args = experiment_study(cfg)
    tokens = cfg["training"].get("tokens")
    check_number(tokens, "training.tokens", min=1, expected="the number of data units to train on (>= 1)")
    model = args["model_cls"]
    arch = model.get("architecture")
    flat = nested.flatten(arch, model) if isinstance(arch, str) and nested.is_nested(model) else model
    size_param = get_model_spec(arch).size_param if isinstance(arch, str) else None
    size = flat.get(size_param) if size_param else None
    if size is None:
        raise ValueError(f"model.{size_param}: expected the model's size (the experiment trains one model), found none")
    out = Path(output_dir or cfg["logging"].get("output_dir") or Path("runs") / cfg["experiment_name"])
    spec = resolve_study(flat, dataset=args["dataset"], data_options=args["data_options"],
                         train_config=args["train_config"], seed=args["seed"], mode="local",
                         planning={"size_values": [int(size)], "probe_size": int(size)})
    n = spec.model.count_params(int(size))
    exp = Experiment(experiment_id=cfg["experiment_name"], compute_budget=6.0 * n * float(tokens), budget_index=0,
                     size_value=int(size), num_params=n, num_tokens=float(tokens), target_params=float(n))
    record, inp = _train(spec, exp, out, cfg)
    evaluation = _evaluate(out / "model", inp, spec.model.objective, record)
    from flops_fit import io

    io.atomic_write_json(out / "run.json", {"kind": "flops-fit/model-run", "schema": 1, "config": cfg,
                                            "objective": spec.model.objective, "evaluation": evaluation,
                                            "record": record.to_dict()})
    return ModelRun(record, evaluation, out, cfg)


def _train(spec: Any, exp: Any, out: Path, cfg: dict[str, Any]) -> tuple[Any, Any]:
    """The built-in trainer on this one experiment, saving the weights and config when it completes."""
    from flops_fit.models import save_model
    from flops_fit.training.local import make_run_fn

    m = spec.model
    fields = {"architecture": m.architecture, **m.model_kwargs, m.size_param: exp.size_value}
    fn = make_run_fn(model_factory=m.factory, size_param=m.size_param, model_kwargs=m.model_kwargs,
                     dataset=spec.data.train, loss_fn=spec.loss_fn, train_config=spec.train_config, output_dir=out,
                     seed=spec.seed, val_dataset=spec.data.val, data_info=spec.data_info,
                     units_per_sample=spec.data.units_per_sample, experiments=[exp])
    inp = dataclasses.replace(fn.keywords["inp"], on_finish=lambda model: save_model(model, fields, out / "model"))
    record = fn.func(exp, inp)
    if not record.ok:
        raise RuntimeError(f"{cfg['experiment_name']}: the run {record.status}: {record.error}")
    return record, inp


def _evaluate(model_dir: Path, inp: Any, objective: str | None, record: Any) -> dict[str, float]:
    """Perplexity (causal); masked-token loss, accuracy and pseudo-perplexity (masked); the loss otherwise."""
    loss = float(record.final_loss)
    if objective == "causal_lm":
        return {"val_loss": loss, "perplexity": math.exp(loss)}
    if objective != "masked_lm":
        return {"val_loss": loss}
    import torch

    from flops_fit.models import load_model
    from flops_fit.training.datautil import call_model

    model = load_model(model_dir)
    model.eval()
    right = total = 0
    with torch.no_grad():
        for batch in inp.val_batches:
            labels = batch["labels"]
            pred = call_model(model, batch).argmax(-1)
            mask = labels != -100
            right += int((pred[mask] == labels[mask]).sum())
            total += int(mask.sum())
    return {"masked_loss": loss, "masked_accuracy": right / max(total, 1), "pseudo_perplexity": math.exp(loss)}
