"""Model registry and built-in architectures.

``create_model(config)`` is the one creation path (sweeps, checkpoints, CLI);
``register_model`` adds user architectures that then behave like the built-ins
(``list_models()``: gpt, gpt2, bert, lstm, gru, rnn, vit, gmm).
"""

from flops_fit.models.gpt import GPT, GPTConfig
from flops_fit.models.losses import (
    causal_lm_loss,
    classification_loss,
    gmm_assignments_loss,
    gmm_centers_loss,
    masked_lm_loss,
)
from flops_fit.models.registry import (
    OBJECTIVE_LOSSES,
    ModelConfigError,
    ModelSpec,
    create_model,
    create_model_from_config,
    default_loss_for,
    model_objective,
    forward_batch,
    get_model_spec,
    list_models,
    load_model,
    register_model,
    save_model,
    unregister_model,
    validate_config,
)
from flops_fit.models import builtin as _builtin  # noqa: E402, F401  (registers the built-ins)

__all__ = [
    "GPT",
    "GPTConfig",
    "ModelSpec",
    "ModelConfigError",
    "OBJECTIVE_LOSSES",
    "register_model",
    "unregister_model",
    "list_models",
    "get_model_spec",
    "validate_config",
    "create_model",
    "create_model_from_config",
    "save_model",
    "load_model",
    "default_loss_for",
    "model_objective",
    "forward_batch",
    "causal_lm_loss",
    "masked_lm_loss",
    "classification_loss",
    "gmm_centers_loss",
    "gmm_assignments_loss",
]
