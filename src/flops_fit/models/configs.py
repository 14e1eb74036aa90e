"""Typed, strict configs of the built-in architectures (pydantic v2).

Each config carries ``architecture`` (a literal, so a config object knows which
model it builds) and exactly the constructor arguments of its model: unknown
fields and ill-typed values (``strict=True``: no "64" → 64, no True → 1) are
rejected with the field's name. ``gpt`` uses the :class:`~flops_fit.models.gpt.GPTConfig`
dataclass instead, which validates itself in ``__post_init__``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "GPT2ModelConfig",
    "BertModelConfig",
    "LSTMConfig",
    "GRUConfig",
    "RNNConfig",
    "ViTConfig",
    "GMMConfig",
]

PosInt = Annotated[int, Field(ge=1)]
Dropout = Annotated[float, Field(ge=0.0, lt=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Attention(_Strict):
    """Base of the attention configs (fields in the subclasses, so their order is kept):
    ``d_model`` must split into heads of ``head_dim``."""

    @model_validator(mode="after")
    def _heads_divide(self) -> "_Attention":
        if self.d_model % self.head_dim:
            raise ValueError(f"d_model={self.d_model} must be a multiple of head_dim={self.head_dim}")
        return self


class _HFTransformer(_Attention):
    d_model: PosInt
    n_layers: PosInt = 4
    head_dim: PosInt = 16
    vocab_size: PosInt = 256
    max_seq_len: PosInt = 256
    dropout: Dropout = 0.0
    mlp_ratio: PosInt = 4


class GPT2ModelConfig(_HFTransformer):
    """Hugging Face GPT-2 (``gpt2``); size parameter ``d_model``."""

    architecture: Literal["gpt2"] = "gpt2"


class BertModelConfig(_HFTransformer):
    """Hugging Face BERT masked LM (``bert``); size parameter ``d_model``. ``type_vocab_size``: segment types
    (1: every position is type 0, so every embedding row trains)."""

    architecture: Literal["bert"] = "bert"
    type_vocab_size: PosInt = 1


class _Recurrent(_Strict):
    hidden_size: PosInt
    n_layers: PosInt = 2
    vocab_size: PosInt = 256
    embed_dim: PosInt | None = None
    dropout: Dropout = 0.0
    bidirectional: bool = False
    objective: Literal["causal_lm", "masked_lm"] | None = None

    @model_validator(mode="after")
    def _no_bidirectional_causal(self) -> "_Recurrent":
        if self.bidirectional and self.objective == "causal_lm":
            raise ValueError(
                "bidirectional=True cannot use objective='causal_lm' (it would see the token to "
                "predict); use objective='masked_lm' or bidirectional=False"
            )
        return self


class LSTMConfig(_Recurrent):
    """LSTM LM (``lstm``); size parameter ``hidden_size``."""

    architecture: Literal["lstm"] = "lstm"


class GRUConfig(_Recurrent):
    """GRU LM (``gru``); size parameter ``hidden_size``."""

    architecture: Literal["gru"] = "gru"


class RNNConfig(_Recurrent):
    """Elman RNN LM (``rnn``); size parameter ``hidden_size``."""

    architecture: Literal["rnn"] = "rnn"


class ViTConfig(_Attention):
    """Vision Transformer (``vit``); size parameter ``d_model``."""

    architecture: Literal["vit"] = "vit"
    d_model: PosInt
    n_layers: PosInt = 4
    head_dim: PosInt = 16
    image_size: PosInt = 8
    patch_size: PosInt = 2
    channels: PosInt = 1
    num_classes: Annotated[int, Field(ge=2)] = 10
    mlp_ratio: PosInt = 4
    dropout: Dropout = 0.0

    @model_validator(mode="after")
    def _patches_divide(self) -> "ViTConfig":
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} must be a multiple of patch_size={self.patch_size}")
        return self


class GMMConfig(_Attention):
    """Gaussian-mixture set transformer (``gmm``); size parameter ``d_model``."""

    architecture: Literal["gmm"] = "gmm"
    d_model: PosInt
    n_layers: PosInt = 4
    head_dim: PosInt = 16
    dim: PosInt = 2
    num_clusters: Annotated[int, Field(ge=2)] = 4
    prediction_type: Literal["centers", "assignments"] = "centers"
    mlp_ratio: PosInt = 4
    dropout: Dropout = 0.0
    eps: Annotated[float, Field(gt=0.0)] = 1e-6
    dropout_attention: Dropout | None = None
    dropout_residual: Dropout | None = None
    dropout_embedding: Dropout | None = None
    activation: Literal["gelu", "relu", "silu"] = "gelu"
    bias: bool = True
    norm_eps: Annotated[float, Field(gt=0.0)] = 1e-5
    use_flash_attn: bool = True
    layer_repetition: PosInt = 1
    flow_speed: bool = False
