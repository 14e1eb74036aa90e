"""Registration of the built-in architectures (imported by ``flops_fit.models``).

| name | factory | size_param | objective | default data |
|------|---------|------------|-----------|--------------|
| gpt  | GPT (compact nanoGPT, optional u-μP) | d_model | causal_lm | stdlib |
| gpt2 | HF GPT2LMHeadModel | d_model | causal_lm | stdlib |
| bert | HF BertForMaskedLM | d_model | masked_lm | stdlib |
| lstm, gru, rnn | RecurrentLM | hidden_size | causal_lm (masked_lm if bidirectional) | stdlib |
| vit  | ViT | d_model | classification | digits |
| gmm  | GMMTransformer | d_model | gmm_centers (gmm_assignments) | gmm |
"""

from __future__ import annotations

from flops_fit.models import configs
from flops_fit.models.gmm import GMMTransformer
from flops_fit.models.gpt import GPT, GPTConfig
from flops_fit.models.hf import HFBert, HFGPT2
from flops_fit.models.registry import register_model
from flops_fit.models.rnn import GRULM, LSTMLM, RNNLM
from flops_fit.models.vit import ViT

def register_builtins(overwrite: bool = True) -> None:
    """(Re-)register every built-in architecture."""
    kw = {"overwrite": overwrite}
    register_model("gpt", GPT, "d_model", config_cls=GPTConfig, objective="causal_lm", default_dataset="stdlib", **kw)
    register_model("gpt2", HFGPT2, "d_model", config_cls=configs.GPT2ModelConfig, objective="causal_lm", default_dataset="stdlib", **kw)
    register_model("bert", HFBert, "d_model", config_cls=configs.BertModelConfig, objective="masked_lm", default_dataset="stdlib", **kw)
    register_model("lstm", LSTMLM, "hidden_size", config_cls=configs.LSTMConfig, objective="causal_lm", default_dataset="stdlib", **kw)
    register_model("gru", GRULM, "hidden_size", config_cls=configs.GRUConfig, objective="causal_lm", default_dataset="stdlib", **kw)
    register_model("rnn", RNNLM, "hidden_size", config_cls=configs.RNNConfig, objective="causal_lm", default_dataset="stdlib", **kw)
    register_model("vit", ViT, "d_model", config_cls=configs.ViTConfig, objective="classification", default_dataset="digits", **kw)
    register_model("gmm", GMMTransformer, "d_model", config_cls=configs.GMMConfig, objective="gmm_centers", default_dataset="gmm", **kw)


register_builtins()
