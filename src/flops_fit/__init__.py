"""flops-fit: compute-optimal model size and training length, measured on your model and data.

    import flops_fit as ff
    result = ff.find_optimal(MyModel, "d_model", dataset=data, loss_fn=loss, compute_budgets=[1e13, 1e14])
    print(result.chinchilla_table())

Every name is imported on first use, so ``import flops_fit`` (and each ``ff-*`` command's
``--help``, and each run process an executor starts) pays for torch, pandas and scipy
only when it needs them.
"""

from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_LAZY = {
    "analyze": "flops_fit.api",
    "compare": "flops_fit.api",
    "find_optimal": "flops_fit.api",
    "Experiment": "flops_fit.planning",
    "SweepPlan": "flops_fit.planning",
    "Result": "flops_fit.result",
    "precision_forecast": "flops_fit.forecast",
    "PrecisionForecast": "flops_fit.forecast",
    "MockLaw": "flops_fit.training.mock",
    "ParametricFit": "flops_fit.analysis",
    "bootstrap_parametric": "flops_fit.analysis",
    "fit_parametric": "flops_fit.analysis",
    "load_chinchilla": "flops_fit.analysis",
    "load_llama3": "flops_fit.analysis",
    "TrainConfig": "flops_fit.training.config",
    "train_model": "flops_fit.experiment",
    "experiment_study": "flops_fit.experiment",
    "register_model": "flops_fit.models",
    "create_model": "flops_fit.models",
    "list_models": "flops_fit.models",
    "load_model": "flops_fit.models",
    "hf_model": "flops_fit.models.hf",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'flops_fit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = sorted([*_LAZY, "__version__"])
