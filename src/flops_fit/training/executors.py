"""Where runs execute. The driver only needs `submit(fn, *args) -> Future` and a capacity.

Cluster engines (Ray, Dask, submitit) plug in here without touching the trainer.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import threading
from concurrent.futures import Future
from typing import Any, Callable, Protocol, runtime_checkable


@runtime_checkable
class Executor(Protocol):
    """What the sweep driver needs from an execution engine."""

    #: how many runs the driver keeps in flight at once
    capacity: int

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future: ...

    def shutdown(self, wait: bool = True) -> None: ...


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

    def shutdown(self, wait: bool = True) -> None:
        pass


def die_with_parent(parent_pid: int) -> None:
    """Make this process get SIGKILL when its parent dies (Linux prctl PR_SET_PDEATHSIG), and exit now if the
    parent is already gone: a killed driver leaves no orphan training on, holding a GPU or a checkpoint."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux: the parent's shutdown() still terminates us
        pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def _child_main(conn: Any, parent_pid: int, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    """Body of a ProcessExecutor child: run fn, send ("ok", result) or ("err", exception)."""
    die_with_parent(parent_pid)
    try:
        result = fn(*args, **kwargs)
        msg: tuple[str, Any] = ("ok", result)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        import traceback

        tb = traceback.format_exc()
        try:
            pickle.dumps(exc)
            msg = ("err", (exc, tb))
        except Exception:  # noqa: BLE001 - unpicklable exception: send its text
            msg = ("err", (RuntimeError(f"{type(exc).__name__}: {exc}"), tb))
    try:
        conn.send(msg)
    except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
        conn.send(("err", (RuntimeError(f"run result could not be sent back: {type(exc).__name__}: {exc}"), "")))
    finally:
        conn.close()


class RunProcessDied(RuntimeError):
    """A run's process ended without returning (hard exit, segfault, OOM kill)."""


class ProcessExecutor:
    """Each run in a fresh subprocess (spawn), so a crash, a hard exit or an OOM kill fails only that run.

    Why not ProcessPoolExecutor: a worker that dies breaks the whole pool and
    every pending future with it; one process per run keeps the failure local
    and lets us report its exit code or signal. `capacity` runs go at once
    (default 1: one GPU, or a CPU run that already uses every core).
    """

    name = "process"

    def __init__(self, capacity: int = 1, start_method: str = "spawn", poll_s: float = 0.2) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity: expected a positive integer, found {capacity!r}")
        self.capacity = capacity
        self._ctx = mp.get_context(start_method)
        self._poll_s = poll_s
        self._procs: set[Any] = set()
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        fut: Future = Future()
        parent, child = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_child_main, args=(child, os.getpid(), fn, args, kwargs), daemon=False)
        try:
            proc.start()
        except Exception as exc:  # noqa: BLE001 - e.g. fn not picklable
            fut.set_exception(
                TypeError(f"run function could not be sent to a subprocess ({type(exc).__name__}: {exc}); "
                          "it and its arguments must be picklable")
            )
            parent.close()
            child.close()
            return fut
        child.close()
        with self._lock:
            self._procs.add(proc)
        threading.Thread(target=self._watch, args=(proc, parent, fut), daemon=True).start()
        return fut

    def _watch(self, proc: Any, conn: Any, fut: Future) -> None:
        msg = None
        try:
            while True:
                if conn.poll(self._poll_s):
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    break
                if not proc.is_alive():
                    if conn.poll(0):
                        try:
                            msg = conn.recv()
                        except (EOFError, OSError):
                            msg = None
                    break
        finally:
            conn.close()
            proc.join()
            with self._lock:
                self._procs.discard(proc)
        if msg is None:
            code = proc.exitcode
            if code is not None and code < 0:
                try:
                    sig = signal.Signals(-code).name
                except ValueError:
                    sig = str(-code)
                why = f"killed by signal {sig}" + (" (out of memory?)" if sig == "SIGKILL" else "")
            else:
                why = f"exited with code {code}"
            fut.set_exception(RunProcessDied(f"run process {why} without returning a result"))
        elif msg[0] == "ok":
            fut.set_result(msg[1])
        else:
            exc, tb = msg[1]
            if tb:
                tail = tb if len(tb) <= 1500 else "..." + tb[-1500:]
                exc.__notes__ = [*getattr(exc, "__notes__", []), "in the run process:\n" + tail]
            fut.set_exception(exc)

    def shutdown(self, wait: bool = True) -> None:
        """Wait for runs in flight, or (wait=False: Ctrl-C, SIGTERM) terminate them at once; a run keeps its
        last checkpoint and resumes from it on the next call."""
        with self._lock:
            procs = list(self._procs)
        for p in procs:
            if not wait and p.is_alive():
                p.terminate()
        for p in procs:
            p.join(None if wait else 5.0)
            if p.is_alive():
                p.kill()
                p.join()


_EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor, "process": ProcessExecutor}
_CLUSTER_EXECUTORS = ("ray", "dask", "slurm", "submitit")  # registered when flops_fit.training.cluster is imported


def register_executor(name: str, factory: Callable[..., Executor]) -> None:
    _EXECUTORS[name] = factory


def get_executor(executor: str | Executor | None, **options: Any) -> Executor:
    """An executor object from a name ('local', ...) or pass an object through."""
    if executor is None:
        return LocalExecutor()
    if isinstance(executor, str):
        if executor not in _EXECUTORS and executor in _CLUSTER_EXECUTORS:
            import flops_fit.training.cluster  # noqa: F401 - registers the cluster executors
        if executor not in _EXECUTORS:
            raise ValueError(
                f"executor: expected one of {sorted(set(_EXECUTORS) | set(_CLUSTER_EXECUTORS))} or an executor object, found {executor!r}"
            )
        return _EXECUTORS[executor](**options)
    if not (hasattr(executor, "submit") and hasattr(executor, "capacity")):
        raise TypeError(
            "executor: expected a name or an object with submit(fn, *args) -> Future and a 'capacity' "
            f"attribute, found {type(executor).__name__}"
        )
    return executor
