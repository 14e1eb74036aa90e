"""Hugging Face GPT-2 and BERT, built from config objects with random init.

Nothing is downloaded: the models are constructed from ``GPT2Config`` /
``BertConfig`` (never ``from_pretrained``). The wrappers take the batch tensors
(``input_ids``, optional ``attention_mask``) and return the logits tensor
[B, S, vocab_size], so the library's losses apply unchanged. Size parameter:
``d_model`` (GPT-2 ``n_embd``, BERT ``hidden_size``); heads = d_model // head_dim.

GPT-2 is causal (``causal_lm_loss``, labels shifted by the data pipeline — the HF
model's own label shifting is not used because labels are never passed to it).
BERT is bidirectional and trains only with ``masked_lm_loss``; the data must
replace some input ids by a mask id below ``vocab_size`` and label only those.
BERT uses ``type_vocab_size=1`` so every parameter receives gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from flops_fit.models._layers import check_heads

__all__ = ["HFBert", "HFGPT2", "HFWrapped", "HuggingFaceModel", "hf_model"]


def _embedding_and_head_numel(model: nn.Module, head: nn.Module) -> int:
    """Elements of every embedding table plus the output head, each tensor once."""
    params = {id(m.weight): m.weight for m in model.modules() if isinstance(m, nn.Embedding)}
    params.update({id(p): p for p in head.parameters()})
    return sum(p.numel() for p in params.values())


class _HFLM(nn.Module):
    """A Hugging Face LM behind the library's interface: the fields of the registered configs, a config built
    by the subclass (`_build`), logits out, and `num_params` with the subclass's output head."""

    input_keys = ("input_ids", "attention_mask")

    def __init__(
        self,
        d_model: int,
        n_layers: int = 4,
        head_dim: int = 16,
        vocab_size: int = 256,
        max_seq_len: int = 256,
        dropout: float = 0.0,
        mlp_ratio: int = 4,
    ) -> None:
        self._setup(d_model, n_layers, head_dim, vocab_size, max_seq_len, dropout, mlp_ratio)

    def _setup(self, d_model: int, n_layers: int, head_dim: int, vocab_size: int, max_seq_len: int, dropout: float,
               mlp_ratio: int, **extra: Any) -> None:
        """The constructor's work; a subclass with fields of its own calls it with them (`extra`)."""
        nn.Module.__init__(self)
        self.hf = self._build(d_model, n_layers, check_heads(self.family, d_model, head_dim), vocab_size,
                              max_seq_len, dropout, mlp_ratio, **extra)

    def _build(self, d_model: int, n_layers: int, n_heads: int, vocab_size: int, max_seq_len: int,
               dropout: float, mlp_ratio: int, **extra: Any) -> nn.Module:
        raise NotImplementedError

    def _head(self) -> nn.Module:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token logits [B, S, vocab_size] (no shift: the library's losses shift for causal LMs)."""
        return self.hf(input_ids=input_ids, attention_mask=attention_mask).logits

    def num_params(self, non_embedding: bool = False) -> int:
        """Unique trainable parameters (a tied head counted once); ``non_embedding=True`` excludes every
        embedding table and the output head (its tied weight and any vocab-sized bias)."""
        total = sum(p.numel() for p in self.parameters())
        if not non_embedding:
            return total
        return total - _embedding_and_head_numel(self.hf, self._head())


class HFGPT2(_HFLM):
    """``transformers.GPT2LMHeadModel`` (tied embeddings), causal."""

    objective = "causal_lm"
    family = "gpt2"

    def _build(self, d_model: int, n_layers: int, n_heads: int, vocab_size: int, max_seq_len: int,
               dropout: float, mlp_ratio: int, **extra: Any) -> nn.Module:
        from transformers import GPT2Config, GPT2LMHeadModel

        return GPT2LMHeadModel(GPT2Config(
            vocab_size=vocab_size, n_positions=max_seq_len, n_embd=d_model, n_layer=n_layers, n_head=n_heads,
            n_inner=mlp_ratio * d_model, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
            tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, use_cache=False,
        ))

    def _head(self) -> nn.Module:
        return self.hf.lm_head


class HFBert(_HFLM):
    """``transformers.BertForMaskedLM`` (tied decoder), bidirectional: masked LM only."""

    objective = "masked_lm"
    family = "bert"

    def __init__(self, d_model: int, n_layers: int = 4, head_dim: int = 16, vocab_size: int = 256,
                 max_seq_len: int = 256, dropout: float = 0.0, mlp_ratio: int = 4, type_vocab_size: int = 1) -> None:
        self._setup(d_model, n_layers, head_dim, vocab_size, max_seq_len, dropout, mlp_ratio,
                    type_vocab_size=type_vocab_size)

    def _build(self, d_model: int, n_layers: int, n_heads: int, vocab_size: int, max_seq_len: int,
               dropout: float, mlp_ratio: int, type_vocab_size: int = 1) -> nn.Module:
        from transformers import BertConfig, BertForMaskedLM

        return BertForMaskedLM(BertConfig(
            vocab_size=vocab_size, hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
            intermediate_size=mlp_ratio * d_model, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
            max_position_embeddings=max_seq_len, type_vocab_size=type_vocab_size, pad_token_id=0,
            tie_word_embeddings=True,
        ))

    def _head(self) -> nn.Module:
        return self.hf.cls.predictions.decoder


class HFWrapped(nn.Module):
    """Any ``transformers`` model behind the library's interface: logits out, ``num_params`` from
    ``num_parameters``. Labels are never passed to it, so its own label shifting never runs: the data
    pipeline shifts causal labels once and the library's loss compares them (never both, never neither)."""

    input_keys = ("input_ids", "attention_mask")

    def __init__(self, model: nn.Module, objective: str | None) -> None:
        super().__init__()
        self.hf = model
        self.objective = objective

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.hf(input_ids=input_ids, attention_mask=attention_mask).logits

    def num_params(self, non_embedding: bool = False) -> int:
        return int(self.hf.num_parameters(exclude_embeddings=non_embedding))


class HuggingFaceModel:
    """A picklable factory for a ``transformers`` model class swept by one config field, no glue needed.

    ``HuggingFaceModel("LlamaForCausalLM")`` (or the class itself) builds ``cls(cls.config_class(**fields))``
    where the size field (default ``hidden_size``) is the sweep's, ``num_attention_heads`` (and
    ``num_key_value_heads``, unless given) follow from a fixed ``head_dim`` so heads grow with the width,
    and ``intermediate_size`` is ``mlp_ratio`` × the width unless given. Every other keyword is a config
    field held fixed. The objective follows the class name (…CausalLM: causal LM, …MaskedLM: masked LM).
    """

    def __init__(self, model_class: Any, size_param: str = "hidden_size", *, head_dim: int = 16,
                 mlp_ratio: float = 4.0) -> None:
        name = model_class if isinstance(model_class, str) else model_class.__name__
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"model_cls: expected a transformers model class or its name, found {model_class!r}")
        self.class_name, self.size_param = name, size_param
        self.head_dim, self.mlp_ratio = int(head_dim), float(mlp_ratio)
        self.__module__, self.__qualname__ = "transformers", name  # how the sweep names the model
        self.objective = "causal_lm" if name.endswith("CausalLM") else "masked_lm" if name.endswith("MaskedLM") \
            else None
        self._class()  # fails now, naming the class, if transformers has no such model

    def _class(self) -> Any:
        try:
            import transformers
        except ImportError as exc:
            raise ImportError(f"model_cls: Hugging Face models need transformers (pip install 'flops-fit[hf]'): "
                              f"{exc}") from None
        cls = getattr(transformers, self.class_name, None)
        if cls is None or not hasattr(cls, "config_class"):
            raise ValueError(f"model_cls: transformers has no model class {self.class_name!r}")
        return cls

    def accepted_fields(self) -> set[str]:
        """The config's own fields (what the data may set, e.g. vocab_size) and this factory's."""
        import inspect

        cfg = self._class().config_class
        return set(inspect.signature(cfg.__init__).parameters) - {"self", "kwargs"} | {"head_dim", "mlp_ratio"}

    def __call__(self, **fields: Any) -> HFWrapped:
        cls = self._class()
        if self.size_param not in fields:
            raise TypeError(f"{self.class_name}: the size field {self.size_param!r} is missing")
        size = int(fields[self.size_param])
        head_dim = int(fields.pop("head_dim", self.head_dim))
        ratio = float(fields.pop("mlp_ratio", self.mlp_ratio))
        if size % head_dim:
            raise ValueError(f"{self.class_name}: {self.size_param}={size} must be a multiple of head_dim={head_dim}")
        cfg = {"num_attention_heads": size // head_dim, "intermediate_size": int(round(ratio * size)), **fields}
        cfg.setdefault("num_key_value_heads", cfg["num_attention_heads"])
        params = self.accepted_fields()
        unknown = sorted(set(fields) - params)
        if unknown:  # a config takes any keyword and ignores it: a typo would be dropped silently
            raise TypeError(f"{self.class_name}: {cls.config_class.__name__} has no field {unknown[0]!r}")
        if "head_dim" in params:
            cfg.setdefault("head_dim", head_dim)
        return HFWrapped(cls(cls.config_class(**cfg)), self.objective)


def hf_model(model_class: Any, size_param: str = "hidden_size", *, head_dim: int = 16,
             mlp_ratio: float = 4.0) -> HuggingFaceModel:
    """``find_optimal(ff.hf_model(LlamaForCausalLM, head_dim=8), "hidden_size", model_kwargs={...})``: see
    :class:`HuggingFaceModel`."""
    return HuggingFaceModel(model_class, size_param, head_dim=head_dim, mlp_ratio=mlp_ratio)
