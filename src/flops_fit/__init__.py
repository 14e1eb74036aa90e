"""flops-fit: compute-optimal model size and training length, measured on your model and data.

    import flops_fit as ff
    result = ff.find_optimal(MyModel, "d_model", dataset=data, loss_fn=loss, compute_budgets=[1e13, 1e14])
    print(result.chinchilla_table())
"""

from flops_fit.api import compare, find_optimal
from flops_fit.planning import Experiment, SweepPlan
from flops_fit.result import Result
from flops_fit.training.mock import MockLaw

__version__ = "0.1.0"

__all__ = ["Experiment", "MockLaw", "Result", "SweepPlan", "compare", "find_optimal", "__version__"]
