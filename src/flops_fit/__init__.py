"""flops-fit: compute-optimal model size and training length, measured on your model and data.

    import flops_fit as ff
    result = ff.find_optimal(MyModel, "d_model", dataset=data, loss_fn=loss, compute_budgets=[1e13, 1e14])
    print(result.chinchilla_table())
"""

from typing import Any

from flops_fit.analysis import ParametricFit, bootstrap_parametric, fit_parametric, load_chinchilla, load_llama3
from flops_fit.api import analyze, compare, find_optimal
from flops_fit.planning import Experiment, SweepPlan
from flops_fit.result import Result
from flops_fit.training.mock import MockLaw

__version__ = "0.1.0"

# names that import torch or scipy-heavy modules, loaded on first use
_LAZY = {
    "TrainConfig": "flops_fit.training.trainer",
    "register_model": "flops_fit.models",
    "create_model": "flops_fit.models",
    "list_models": "flops_fit.models",
    "load_model": "flops_fit.models",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flops_fit' has no attribute {name!r}")


__all__ = [
    "Experiment", "MockLaw", "analyze", "ParametricFit", "Result", "SweepPlan", "TrainConfig", "bootstrap_parametric",
    "compare", "create_model", "find_optimal", "fit_parametric", "list_models", "load_chinchilla", "load_llama3", "load_model",
    "register_model", "__version__",
]
