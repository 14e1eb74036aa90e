"""Where runs execute. The driver only needs `submit(fn, *args) -> Future` and a capacity.

Cluster engines (Ray, Dask, submitit) plug in here without touching the trainer.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import queue
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


def _outcome(fn: Callable[..., Any], args: tuple, kwargs: dict) -> tuple[str, Any]:
    """("ok", result) or ("err", (exception, traceback text)): what a run process sends back."""
    try:
        return ("ok", fn(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        import traceback

        tb = traceback.format_exc()
        try:
            pickle.dumps(exc)
            return ("err", (exc, tb))
        except Exception:  # noqa: BLE001 - unpicklable exception: send its text
            return ("err", (RuntimeError(f"{type(exc).__name__}: {exc}"), tb))


def _send(conn: Any, msg: tuple[str, Any]) -> None:
    try:
        conn.send(msg)
    except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
        conn.send(("err", (RuntimeError(f"run result could not be sent back: {type(exc).__name__}: {exc}"), "")))


def _child_main(conn: Any, parent_pid: int, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    """Body of a ProcessExecutor child: run fn, send ("ok", result) or ("err", exception)."""
    die_with_parent(parent_pid)
    try:
        _send(conn, _outcome(fn, args, kwargs))
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
        with self._lock:  # known before it starts: a Ctrl-C arriving mid-start still finds it to terminate
            self._procs.add(proc)
        try:
            proc.start()
        except Exception as exc:  # noqa: BLE001 - e.g. fn not picklable
            with self._lock:
                self._procs.discard(proc)
            fut.set_exception(
                TypeError(f"run function could not be sent to a subprocess ({type(exc).__name__}: {exc}); "
                          "it and its arguments must be picklable")
            )
            parent.close()
            child.close()
            return fut
        child.close()
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
            fut.set_exception(RunProcessDied(f"run process {_how_it_ended(proc)} without returning a result"))
        else:
            _settle(fut, msg)

    def shutdown(self, wait: bool = True) -> None:
        """Wait for runs in flight, or (wait=False: Ctrl-C, SIGTERM) terminate them at once; a run keeps its
        last checkpoint and resumes from it on the next call."""
        with self._lock:
            procs = [p for p in self._procs if p.pid is not None]  # started (one mid-start has no pid yet)
        for p in procs:
            if not wait and p.is_alive():
                p.terminate()
        for p in procs:
            p.join(None if wait else 5.0)
            if p.is_alive():
                p.kill()
                p.join()


def _pool_worker_main(conn: Any, parent_pid: int, threads: int | None) -> None:
    """Body of a PoolExecutor worker: receive (key, pickled fn or None, args, kwargs), run, send the outcome.

    The run function (with its dataset) crosses the pipe once per worker, not once per run.
    """
    die_with_parent(parent_pid)
    if threads:  # before torch is first imported (by unpickling the run function): its pool starts this size
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
    fns: dict[int, Callable[..., Any]] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        key, blob, args, kwargs = msg
        if blob is not None:
            fns = {key: blob}  # one sweep at a time: drop an earlier function; unpickled inside _outcome

        def run(*a: Any, **k: Any) -> Any:
            if isinstance(fns[key], bytes):
                fns[key] = pickle.loads(fns[key])
            return fns[key](*a, **k)

        _send(conn, _outcome(run, args, kwargs))


class PoolExecutor:
    """`workers` long-lived run processes (spawn) on this machine, each running one experiment at a time.

    Unlike ProcessExecutor, a process serves many runs, so torch's import and the
    dataset's transfer are paid once per worker, not once per run. A worker that dies
    (hard exit, OOM kill) fails only the run it held, with RunProcessDied (transient:
    the driver retries it), and is replaced for the next run. Workers get SIGKILL if
    the driver dies. `threads_per_run` sets each worker's torch thread pool.
    """

    name = "pool"

    def __init__(self, workers: int = 2, threads_per_run: int | None = 1, start_method: str = "spawn",
                 poll_s: float = 0.2) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers: expected a positive integer, found {workers!r}")
        if threads_per_run is not None and (isinstance(threads_per_run, bool) or not isinstance(threads_per_run, int)
                                            or threads_per_run < 1):
            raise ValueError(f"threads_per_run: expected a positive integer or None, found {threads_per_run!r}")
        self.capacity = workers
        self.threads_per_run = threads_per_run
        self._ctx = mp.get_context(start_method)
        self._poll_s = poll_s
        self._tasks: "queue.Queue[Any]" = queue.Queue()
        self._lock = threading.Lock()
        self._procs: set[Any] = set()
        self._keep: dict[int, Callable[..., Any]] = {}  # functions sent, kept alive so their id() stays theirs
        self._blobs: dict[int, bytes] = {}
        self._threads = [threading.Thread(target=self._serve, daemon=True) for _ in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        fut: Future = Future()
        key = id(fn)
        with self._lock:
            if key not in self._blobs:
                try:
                    self._blobs[key] = pickle.dumps(fn)
                except Exception as exc:  # noqa: BLE001
                    fut.set_exception(TypeError(
                        f"run function could not be sent to a worker process ({type(exc).__name__}: {exc}); it and "
                        "its arguments must be picklable"))
                    return fut
                self._keep[key] = fn
        self._tasks.put((fut, key, args, kwargs))
        return fut

    def _start(self) -> tuple[Any, Any]:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_pool_worker_main, args=(child, os.getpid(), self.threads_per_run),
                                 daemon=False)
        with self._lock:  # known before it starts: a Ctrl-C arriving mid-start still finds it to terminate
            self._procs.add(proc)
        try:
            proc.start()
        except BaseException:
            with self._lock:
                self._procs.discard(proc)
            raise
        child.close()
        return proc, parent

    def _serve(self) -> None:
        """One worker's thread: feed it tasks, watch it, replace it when it dies."""
        proc = conn = None
        sent: set[int] = set()
        try:
            while True:
                task = self._tasks.get()
                if task is None:
                    return
                fut, key, args, kwargs = task
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    if proc is None or not proc.is_alive():
                        proc, conn = self._start()
                        sent = set()
                    conn.send((key, None if key in sent else self._blobs[key], args, kwargs))
                    sent.add(key)
                except Exception as exc:  # noqa: BLE001 - e.g. arguments not picklable, a worker that cannot start
                    fut.set_exception(TypeError(f"run could not be sent to a worker process ({type(exc).__name__}: "
                                                f"{exc})"))
                    continue
                msg = self._wait(proc, conn)
                if msg is None:
                    proc.join(5.0)  # reap it, so its exit code or signal can be told
                    fut.set_exception(RunProcessDied(f"run process {_how_it_ended(proc)} without returning a result"))
                    self._reap(proc, conn)
                    proc = conn = None
                else:
                    _settle(fut, msg)
        finally:
            if proc is not None:
                with contextlib.suppress(Exception):
                    conn.send(None)
                proc.join(5.0)
                self._reap(proc, conn)

    def _wait(self, proc: Any, conn: Any) -> Any:
        while True:
            if conn.poll(self._poll_s):
                try:
                    return conn.recv()
                except (EOFError, OSError):
                    return None
            if not proc.is_alive():
                if conn.poll(0):
                    with contextlib.suppress(EOFError, OSError):
                        return conn.recv()
                return None

    def _reap(self, proc: Any, conn: Any) -> None:
        with contextlib.suppress(Exception):
            conn.close()
        if proc.is_alive():
            proc.kill()
        proc.join()
        with self._lock:
            self._procs.discard(proc)

    def shutdown(self, wait: bool = True) -> None:
        """Finish (or, wait=False: Ctrl-C, SIGTERM, terminate) the runs in flight and stop the workers; a run
        keeps its last checkpoint and resumes from it on the next call."""
        if not wait:
            with self._lock:
                procs = [p for p in self._procs if p.pid is not None]
            for p in procs:
                if p.is_alive():
                    p.terminate()
            while True:  # runs not started yet are not started
                try:
                    task = self._tasks.get_nowait()
                except queue.Empty:
                    break
                if task is not None:
                    task[0].cancel()
        for _ in self._threads:
            self._tasks.put(None)
        for t in self._threads:
            t.join(None if wait else 10.0)


def _settle(fut: Future, msg: tuple[str, Any]) -> None:
    """Complete a future from a run process's message; its traceback rides along as a note."""
    if msg[0] == "ok":
        fut.set_result(msg[1])
        return
    exc, tb = msg[1]
    if tb:
        tail = tb if len(tb) <= 1500 else "..." + tb[-1500:]
        exc.__notes__ = [*getattr(exc, "__notes__", []), "in the run process:\n" + tail]
    fut.set_exception(exc)


def _how_it_ended(proc: Any) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            sig = signal.Signals(-code).name
        except ValueError:
            sig = str(-code)
        return f"killed by signal {sig}" + (" (out of memory?)" if sig == "SIGKILL" else "")
    return f"exited with code {code}"


_EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor, "process": ProcessExecutor,
                                                "pool": PoolExecutor}
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


# ---------------------------------------------------------------------------
# how many runs at once on this machine: decided here, once, for the library and the CLI

#: a model up to this many parameters runs best on one thread (tiny matmuls do not scale across cores)
SMALL_MODEL_PARAMS = 30_000_000
#: below this many estimated seconds of training a worker pool's start-up (torch import per worker) is not worth it
MIN_POOL_SECONDS = 30.0
#: bytes a run process needs besides its model: the interpreter, torch, the dataset copy
PROCESS_BASE_BYTES = 400 * 2**20


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _available_memory() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return None


def run_bytes(num_params: int) -> int:
    """What one run of a model of `num_params` holds: fp32 weights, gradients and two AdamW moments, plus
    activations (about as much again) and the process itself."""
    return int(32 * num_params) + PROCESS_BASE_BYTES


def workers_blocker(objects: tuple[Any, ...]) -> str | None:
    """Why the run function's parts cannot go to a worker process, or None when they can.

    They must pickle, and what they reference in ``__main__`` must be importable by a
    spawned process: from a script that guards its entry point
    (``if __name__ == "__main__":``); never from a notebook or an interactive session.
    """
    import sys

    try:
        blob = pickle.dumps(objects)
    except Exception as exc:  # noqa: BLE001 - e.g. a lambda loss or a local class
        return f"the model, data or loss cannot be pickled ({type(exc).__name__}: {exc})"
    if b"__main__" not in blob:
        return None
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return "the model, data or loss is defined in an interactive session or notebook (define it in a module)"
    try:
        from pathlib import Path
        import re

        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"the model, data or loss is defined in {path}, which cannot be read"
    if not re.search(r"""if\s+__name__\s*==\s*['"]__main__['"]""", text):
        return (f"the model, data or loss is defined in {path}, which has no `if __name__ == \"__main__\":` guard "
                "(a worker process would run the whole script again)")
    return None


def cuda_mps_running() -> bool:
    """Whether a CUDA MPS control daemon is listening (its pipe directory from CUDA_MPS_PIPE_DIRECTORY, else
    the default /tmp/nvidia-mps). Under MPS the kernels of packed run processes run at once; without it the
    processes time-slice the GPU. Starting the daemon is the machine owner's call, not ours."""
    from pathlib import Path

    pipe_dir = Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or "/tmp/nvidia-mps")
    return (pipe_dir / "control").exists()


def threads_per_run(num_threads: int | None, max_params: int, device: str) -> int | None:
    """Threads each run gets: as asked, else one for a small CPU model (tiny matmuls do not scale across
    threads; the cores go to concurrent runs instead), else all (None). Decided before the cost probe, which
    must time the runs at the threads they will train with."""
    if num_threads is None and max_params <= SMALL_MODEL_PARAMS and not str(device).startswith("cuda"):
        return 1
    return num_threads


def choose_execution(
    workers: int | str,
    *,
    n_runs: int,
    max_params: int,
    device: str,
    num_threads: int | None,
    serial_seconds: float | None = None,
    blocker: str | None = None,
    cores: int | None = None,
    free_memory: int | None = None,
) -> dict[str, Any]:
    """How many runs train at once and with how many threads each: {"workers", "threads_per_run", "reason"}.

    `workers="auto"`: on a CPU, one run per core with one thread each when the models are
    small (tiny matmuls do not scale across threads, and a sweep is many independent runs),
    the sweep is long enough to pay for the workers' start-up, the runs can go to worker
    processes and memory allows; else one run at a time in this process. On CUDA, one run
    at a time unless asked: `workers=k` packs k runs on the device, checked against its
    free memory. An int is taken as asked, within the same checks.
    """
    cores = cores or usable_cores()
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers: expected 'auto' or a positive integer (runs at once), found {workers!r}")
    small = max_params <= SMALL_MODEL_PARAMS
    on_cuda = str(device).startswith("cuda")
    threads = threads_per_run(num_threads, max_params, device)
    if free_memory is None:
        free_memory = _available_memory()
    fit = n_runs if free_memory is None else max(1, int(0.8 * free_memory // run_bytes(max_params)))
    if workers == "auto":
        if on_cuda:
            return {"workers": 1, "threads_per_run": threads, "reason": "one run at a time on the GPU "
                    "(pass workers=k to pack k small runs on it)"}
        if not small:
            return {"workers": 1, "threads_per_run": threads,
                    "reason": f"one run at a time with all threads: models up to N={max_params:,} use several cores"}
        per_core = max(1, cores // (threads or cores))
        k = min(per_core, n_runs, fit)
        if k < 2:
            why = ("one core" if cores == 1 else "one run" if n_runs < 2 else
                   "memory allows one run" if fit < 2 else f"each run uses {threads or cores} threads")
            return {"workers": 1, "threads_per_run": threads, "reason": f"one run at a time: {why}"}
        if blocker:
            return {"workers": 1, "threads_per_run": threads, "reason": f"one run at a time: {blocker}"}
        if serial_seconds is not None and serial_seconds < MIN_POOL_SECONDS:
            return {"workers": 1, "threads_per_run": threads,
                    "reason": f"one run at a time: the sweep is short ({serial_seconds:.0f} s estimated)"}
        return {"workers": k, "threads_per_run": threads,
                "reason": f"{k} runs at once, {threads} thread(s) each, on {cores} cores"}
    if workers > 1 and blocker:
        raise ValueError(f"workers: {workers} runs at once need worker processes, but {blocker}")
    if workers > fit:
        raise ValueError(f"workers: {workers} runs at once need about {workers * run_bytes(max_params) / 2**30:.1f} "
                         f"GiB, but {free_memory / 2**30:.1f} GiB is free; pass workers={fit} or fewer")
    reason = f"{workers} run(s) at once, as asked"
    if on_cuda and workers > 1:
        reason += ("; CUDA MPS is running: their kernels overlap" if cuda_mps_running() else
                   "; CUDA MPS is not running: the runs time-slice the GPU (start it with "
                   "`nvidia-cuda-mps-control -d` to let their kernels overlap)")
    return {"workers": workers, "threads_per_run": threads, "reason": reason}


def makespan(seconds: list[float], workers: int) -> float:
    """Wall time of runs of these lengths on `workers` slots, longest first (what the driver does, roughly)."""
    if workers <= 1:
        return float(sum(seconds))
    slots = [0.0] * workers
    for s in sorted(seconds, reverse=True):
        i = slots.index(min(slots))
        slots[i] += s
    return float(max(slots))
