"""Where runs execute. The driver only needs `submit(fn, *args) -> Future` and a capacity.

Cluster engines (Ray, Dask, submitit) plug in here without touching the trainer.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Callable, Protocol, runtime_checkable


@runtime_checkable
class Executor(Protocol):
    """What the sweep driver needs from an execution engine."""

    #: how many runs the driver keeps in flight at once
    capacity: int

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future: ...

    def shutdown(self) -> None: ...


class LocalExecutor:
    """Runs each experiment in this process, one at a time (the default)."""

    name = "local"
    capacity = 1

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - the driver records it as the run's failure
            if isinstance(exc, KeyboardInterrupt):
                raise
            fut.set_exception(exc)
        return fut

    def shutdown(self) -> None:
        pass


_EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor}


def register_executor(name: str, factory: Callable[..., Executor]) -> None:
    _EXECUTORS[name] = factory


def get_executor(executor: str | Executor | None, **options: Any) -> Executor:
    """An executor object from a name ('local', ...) or pass an object through."""
    if executor is None:
        return LocalExecutor()
    if isinstance(executor, str):
        if executor not in _EXECUTORS:
            raise ValueError(
                f"executor: expected one of {sorted(_EXECUTORS)} or an executor object, found {executor!r}"
            )
        return _EXECUTORS[executor](**options)
    if not (hasattr(executor, "submit") and hasattr(executor, "capacity")):
        raise TypeError(
            "executor: expected a name or an object with submit(fn, *args) -> Future and a 'capacity' "
            f"attribute, found {type(executor).__name__}"
        )
    return executor
