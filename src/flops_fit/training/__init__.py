"""Training engines (mock and real), executors, and the results store."""

from flops_fit.training.executors import Executor, LocalExecutor, get_executor, register_executor
from flops_fit.training.mock import MockLaw, mock_run
from flops_fit.training.store import ResultsStore, RunRecord, records_to_dataframe
from flops_fit.training.sweep import run_sweep

__all__ = [
    "Executor", "LocalExecutor", "MockLaw", "ResultsStore", "RunRecord", "get_executor",
    "mock_run", "records_to_dataframe", "register_executor", "run_sweep",
]
