"""The multi-architecture framework's nested model configs, mapped onto the flat fields of the registry.

Users of the framework bring configs shaped like::

    {"architecture": "bert",
     "transformer": {"layers": 2, "embedding_size": 64, "hidden_size": 64, "intermediate_hidden_size": 128,
                     "attention_heads": 2, "activation_function": "gelu", "dropout": 0.1,
                     "attention_dropout": 0.1},
     "bert": {"type_vocab_size": 2}}
    {"architecture": "lstm",
     "rnn": {"embedding_size": 64, "hidden_size": 64, "num_layers": 2, "bidirectional": false,
             "dropout": 0.1, "rnn_type": "lstm"}}

:func:`flatten` turns each block into the flat fields the architecture's config
validates (one config model per architecture). A nested value the model cannot
honour — a factorised embedding, an activation other than the model's, an
attention dropout unlike the residual dropout — is an error naming the field,
never silently dropped. :data:`NESTED_SIZE_PARAMS` names each architecture's
size parameter in the nested form (``transformer.hidden_size``, ``rnn.hidden_size``).
"""

from __future__ import annotations

from typing import Any, Mapping

#: the framework's nested blocks, and which architectures read each
BLOCKS = {"transformer": ("gpt", "gpt2", "bert", "gmm"), "bert": ("bert",), "rnn": ("lstm", "gru", "rnn")}
#: the size parameter in the nested form -> the flat field
NESTED_SIZE_PARAMS = {"transformer.hidden_size": "d_model", "transformer.hidden_dim": "d_model",
                      "rnn.hidden_size": "hidden_size"}
#: the Gaussian-mixture design's transformer block: nested name -> flat field (the rest below keep their names)
_GMM_RENAMED = {"input_dim": "dim", "hidden_dim": "d_model", "num_layers": "n_layers", "ff_expansion": "mlp_ratio"}
_GMM_KEPT = ("dropout", "dropout_attention", "dropout_residual", "dropout_embedding", "activation", "bias",
             "norm_eps", "use_flash_attn", "layer_repetition", "flow_speed")
_TRANSFORMER_KEYS = ("layers", "embedding_size", "hidden_size", "intermediate_hidden_size", "attention_heads",
                     "activation_function", "dropout", "attention_dropout")
_RNN_KEYS = ("embedding_size", "hidden_size", "num_layers", "bidirectional", "dropout", "rnn_type")
#: what each transformer's MLP computes (the only value its activation_function may name)
_ACTIVATIONS = {"gpt": ("gelu",), "gpt2": ("gelu", "gelu_new"), "bert": ("gelu",)}


class NestedConfigError(ValueError):
    """A nested config value the architecture cannot take (names the field)."""


def is_nested(data: Mapping[str, Any]) -> bool:
    return any(isinstance(data.get(block), Mapping) for block in BLOCKS)


def flatten(arch: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The flat fields of `arch` from a config with nested blocks (flat fields beside them are kept)."""
    flat = {k: v for k, v in data.items() if k not in BLOCKS}
    for block, archs in BLOCKS.items():
        if block not in data:
            continue
        if arch not in archs:
            raise NestedConfigError(f"model.{block}: architecture {arch!r} takes no {block!r} block (it is for "
                                    f"{', '.join(archs)})")
        values = data[block]
        if not isinstance(values, Mapping):
            raise NestedConfigError(f"model.{block}: expected a mapping, found {type(values).__name__}")
        mapped = {"transformer": _transformer, "bert": _bert, "rnn": _rnn}[block](arch, dict(values))
        clash = sorted(set(mapped) & set(flat))
        if clash:
            raise NestedConfigError(f"model.{clash[0]}: given both flat and in model.{block}; give it once")
        flat.update(mapped)
    return flat


def _unknown(block: str, values: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise NestedConfigError(f"model.{block}.{unknown[0]}: unknown field; fields are {', '.join(allowed)}")


def _gmm_transformer(t: dict[str, Any]) -> dict[str, Any]:
    """The Gaussian-mixture design's block: input_dim, hidden_dim, num_layers, num_heads, ff_expansion, ..."""
    _unknown("transformer", t, (*_GMM_RENAMED, "num_heads", *_GMM_KEPT))
    out = {flat: t[key] for key, flat in _GMM_RENAMED.items() if key in t}
    out.update({key: t[key] for key in _GMM_KEPT if key in t})
    heads, hidden = t.get("num_heads"), t.get("hidden_dim")
    if heads is not None:
        if hidden is None or not isinstance(heads, int) or heads < 1 or hidden % heads:
            raise NestedConfigError(f"model.transformer.num_heads: expected a positive divisor of hidden_dim="
                                    f"{hidden}, found {heads!r}")
        out["head_dim"] = hidden // heads
    return out


def _transformer(arch: str, t: dict[str, Any]) -> dict[str, Any]:
    if arch == "gmm":
        return _gmm_transformer(t)
    _unknown("transformer", t, _TRANSFORMER_KEYS)
    out: dict[str, Any] = {}
    hidden = t.get("hidden_size")
    if "layers" in t:
        out["n_layers"] = t["layers"]
    if hidden is not None:
        out["d_model"] = hidden
    emb = t.get("embedding_size")
    if emb is not None and emb != hidden:
        raise NestedConfigError(f"model.transformer.embedding_size: {arch} embeds at the model width (hidden_size="
                                f"{hidden}); a factorised embedding of {emb} is not supported")
    heads = t.get("attention_heads")
    if heads is not None:
        if hidden is None or not isinstance(heads, int) or heads < 1 or hidden % heads:
            raise NestedConfigError(f"model.transformer.attention_heads: expected a positive divisor of hidden_size="
                                    f"{hidden}, found {heads!r}")
        out["head_dim"] = hidden // heads  # a sweep over hidden_size keeps the head size, so heads grow with it
    inter = t.get("intermediate_hidden_size")
    if inter is not None:
        if hidden is None or inter % hidden:
            raise NestedConfigError(f"model.transformer.intermediate_hidden_size: expected a multiple of "
                                    f"hidden_size={hidden} (the MLP is a whole multiple wide), found {inter!r}")
        out["mlp_ratio"] = inter // hidden
    act = t.get("activation_function")
    if act is not None and act not in _ACTIVATIONS[arch]:
        raise NestedConfigError(f"model.transformer.activation_function: {arch} computes "
                                f"{' / '.join(_ACTIVATIONS[arch])}, found {act!r}")
    drop, attn = t.get("dropout"), t.get("attention_dropout")
    if attn is not None and drop is not None and attn != drop:
        raise NestedConfigError(f"model.transformer.attention_dropout: {arch} has one dropout rate for attention "
                                f"and residual paths (dropout={drop}), found {attn!r}")
    if drop is not None or attn is not None:
        out["dropout"] = drop if drop is not None else attn
    return out


def _bert(arch: str, b: dict[str, Any]) -> dict[str, Any]:
    _unknown("bert", b, ("type_vocab_size",))
    return {"type_vocab_size": b["type_vocab_size"]} if "type_vocab_size" in b else {}


def _rnn(arch: str, r: dict[str, Any]) -> dict[str, Any]:
    _unknown("rnn", r, _RNN_KEYS)
    kind = r.get("rnn_type")
    if kind is not None and kind != arch:
        raise NestedConfigError(f"model.rnn.rnn_type: {kind!r} does not match architecture {arch!r}")
    names = {"embedding_size": "embed_dim", "hidden_size": "hidden_size", "num_layers": "n_layers",
             "bidirectional": "bidirectional", "dropout": "dropout"}
    return {flat: r[key] for key, flat in names.items() if key in r}
