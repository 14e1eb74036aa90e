"""Scale-out executors: the same sweep on Ray, Dask or SLURM (through submitit).

Each executor satisfies :class:`~flops_fit.training.executors.Executor`
(``capacity``, ``submit(fn, *args) -> concurrent.futures.Future``,
``shutdown()``), so the sweep driver is unchanged and stays the only writer of
results.json: workers return RunRecords, the driver stores each one as its
future completes.

What every engine here adds on top of its own futures (class ``_ClusterExecutor``):

- **Retries.** A run whose worker dies or raises is resubmitted, up to
  ``max_retries`` times (default 2). The real run function resumes from
  ``output_dir/checkpoints/<experiment_id>/`` when a checkpoint exists, so a
  retry continues instead of restarting. After the last attempt the future
  fails with :class:`RunFailedError` (the driver records the run as failed and
  the sweep goes on). The engines' own retries are switched off where they
  can be (Ray ``max_retries=0``, Dask ``retries=0``) so attempts are counted
  in one place; a completed record says how many it took in
  ``details["attempts"]``. (Dask's scheduler reschedules a task whose worker
  died by itself, up to its ``allowed-failures``; that happens before our
  count.)
- **Picklability, checked before anything is sent.** The run function (and
  the model factory, dataset and loss inside it) is pickled with cloudpickle
  once per sweep; if it fails, :class:`NotPicklableError` names the object
  that cannot be sent, e.g. ``run_fn.keywords['inp'].loss_fn.__closure__['lock']``.
- **Shared storage.** When the run function writes (it carries an
  ``output_dir``, as :func:`flops_fit.training.local.make_run_fn`'s does), a
  probe task must read a file the driver wrote under ``output_dir`` and write
  one back, or :class:`SharedStorageError` says that workers cannot reach it.
  On one machine this trivially passes.

Data: built-in corpora travel by path, not by value. ``corpus.dataset("train",
seq_len)`` is a :class:`~flops_fit.data.corpus.TokenWindowDataset`, which
pickles as (token file path, dtype, start, stop) and reopens the memory-mapped
cached token file on the worker, so the cache directory must be on shared
storage too (``FLOPS_FIT_CACHE``). A whole ``TokenCorpus`` or in-memory
tensors pickle by value; a payload over ``large_payload_mb`` triggers a
warning that names its largest part.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from flops_fit.training.executors import register_executor

DEFAULT_MAX_RETRIES = 2
PROBE_DIR = ".flops_fit_probe"

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DaskExecutor",
    "NotPicklableError",
    "RayExecutor",
    "RunFailedError",
    "SharedStorageError",
    "SubmititExecutor",
    "check_picklable",
    "find_output_dir",
]


class RunFailedError(RuntimeError):
    """A run failed on every attempt; the message carries the last error."""


class SharedStorageError(RuntimeError):
    """Workers cannot read or write the sweep's output_dir."""


class NotPicklableError(TypeError):
    """Something the run function needs cannot be sent to workers."""


# ---------------------------------------------------------------------------
# what travels to workers


def _dumps(obj: Any) -> bytes:
    try:
        import cloudpickle
    except ImportError:  # ray alone vendors its own copy
        from ray import cloudpickle  # type: ignore[no-redef]

    return cloudpickle.dumps(obj)


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    """(path suffix, child) pairs that a pickle of `obj` would contain, for blame."""
    if isinstance(obj, functools.partial):
        yield ".func", obj.func
        for i, a in enumerate(obj.args):
            yield f".args[{i}]", a
        for k, v in (obj.keywords or {}).items():
            yield f".keywords[{k!r}]", v
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield f"[{k!r}]", v
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for i, v in enumerate(obj):
            yield f"[{i}]", v
        return
    if callable(obj) and hasattr(obj, "__code__"):  # a function: its closure and defaults
        cells = obj.__closure__ or ()
        for name, cell in zip(obj.__code__.co_freevars, cells):
            try:
                yield f".__closure__[{name!r}]", cell.cell_contents
            except ValueError:  # empty cell
                continue
        for i, d in enumerate(obj.__defaults__ or ()):
            yield f".__defaults__[{i}]", d
        return
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield f".{f.name}", getattr(obj, f.name, None)
        return
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict) and not isinstance(obj, type):
        for k, v in state.items():
            yield f".{k}", v


def _culprit(obj: Any, path: str, depth: int = 0) -> tuple[str, Any, BaseException | None]:
    """The deepest part of `obj` that does not pickle (path, object, error)."""
    try:
        _dumps(obj)
        return path, obj, None
    except Exception as exc:  # noqa: BLE001 - any pickling failure is what we look for
        err: BaseException = exc
    if depth < 12:
        try:
            kids = list(_children(obj))
        except Exception:  # noqa: BLE001 - an object whose attributes cannot be listed is its own culprit
            kids = []
        for suffix, child in kids:
            p, o, e = _culprit(child, path + suffix, depth + 1)
            if e is not None:
                return p, o, e
    return path, obj, err


def check_picklable(obj: Any, name: str = "run_fn", *, engine: str = "workers") -> int:
    """Pickle `obj` as the engine will (cloudpickle); returns its size in bytes.

    Raises NotPicklableError naming the innermost object that cannot be sent.
    """
    try:
        return len(_dumps(obj))
    except Exception:  # noqa: BLE001
        pass
    path, bad, err = _culprit(obj, name)
    raise NotPicklableError(
        f"{name}: cannot be sent to {engine}: {path} (a {type(bad).__module__}.{type(bad).__qualname__}) "
        f"cannot be pickled ({type(err).__name__}: {err}). Define model classes, datasets and loss functions "
        "at module level and keep locks, open files, generators and connections out of them "
        "(open them lazily on the worker instead)."
    ) from None


def _largest_part(obj: Any, name: str) -> tuple[str, int]:
    """(path, bytes) of the biggest direct part of `obj`, for the large-payload warning."""
    best = (name, 0)
    for suffix, child in _children(obj):
        try:
            size = len(_dumps(child))
        except Exception:  # noqa: BLE001
            continue
        if size > best[1]:
            best = (name + suffix, size)
    if best[1] > 0 and best[0] != name:
        inner = _largest_part(dict(_children(obj)).get(best[0][len(name):]), best[0])
        return inner if inner[1] >= 0.5 * best[1] else best
    return best


def find_output_dir(fn: Any, depth: int = 0) -> Path | None:
    """The output_dir a run function writes to, if it carries one (e.g. make_run_fn's RunInputs)."""
    value = getattr(fn, "output_dir", None) if not isinstance(fn, dict) else fn.get("output_dir")
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    if depth >= 3:
        return None
    try:
        kids = list(_children(fn))
    except Exception:  # noqa: BLE001
        return None
    for _, child in kids:
        if isinstance(child, (str, bytes, int, float, type(None))):
            continue
        found = find_output_dir(child, depth + 1)
        if found is not None:
            return found
    return None


def _probe_storage(probe: str, token: str) -> str:
    """Runs on a worker: read the driver's probe file, write the reply; returns the host name."""
    host = socket.gethostname()
    path = Path(probe)
    try:
        seen = path.read_text()
    except OSError as exc:
        raise SharedStorageError(
            f"worker on host {host!r} cannot read {path} ({type(exc).__name__}: {exc})"
        ) from None
    if seen != token:
        raise SharedStorageError(f"worker on host {host!r} read a different {path} than the driver wrote")
    try:
        path.with_name(path.name + ".reply").write_text(token + host)
    except OSError as exc:
        raise SharedStorageError(
            f"worker on host {host!r} cannot write under {path.parent} ({type(exc).__name__}: {exc})"
        ) from None
    return host


def _experiment_id(args: tuple[Any, ...]) -> str:
    eid = getattr(args[0], "experiment_id", None) if args else None
    return str(eid) if eid is not None else "run"


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """What every task runs: the run function itself (module-level, so it pickles by reference)."""
    return fn(*args, **kwargs)


# ---------------------------------------------------------------------------
# the common part: retries, checks, bookkeeping


class _ClusterExecutor:
    """Retries, picklability and shared-storage checks around an engine's `_launch`.

    Subclasses implement ``_launch(fn, args, kwargs) -> concurrent.futures.Future``
    (one attempt on the engine) and ``_close()``.
    """

    name = "cluster"
    engine = "workers"

    def __init__(
        self,
        *,
        max_retries: int = DEFAULT_MAX_RETRIES,
        output_dir: str | os.PathLike | None = None,
        check_storage: bool = True,
        probe_timeout_s: float = 300.0,
        large_payload_mb: float = 64.0,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries: expected an integer >= 0, found {max_retries!r}")
        if output_dir is not None and not isinstance(output_dir, (str, os.PathLike)):
            raise TypeError(f"output_dir: expected a path or None, found {type(output_dir).__name__}")
        if not isinstance(probe_timeout_s, (int, float)) or not probe_timeout_s > 0:
            raise ValueError(f"probe_timeout_s: expected a positive number of seconds, found {probe_timeout_s!r}")
        self.max_retries = max_retries
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.check_storage = bool(check_storage)
        self.probe_timeout_s = float(probe_timeout_s)
        self.large_payload_mb = float(large_payload_mb)
        self._checked: dict[int, Any] = {}  # id(fn) -> fn (kept alive so ids stay unique)
        self._checked_dirs: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.capacity = 1

    # -- engine hooks -------------------------------------------------------
    def _launch(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    # -- the Executor protocol ---------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """One run on the engine, retried up to max_retries; fails with RunFailedError after that."""
        if self._closed:
            raise RuntimeError(f"{type(self).__name__}: submit() after shutdown()")
        if not callable(fn):
            raise TypeError(f"fn: expected a callable run function, found {type(fn).__name__}")
        self._prepare(fn)
        outer: Future = Future()
        self._attempt(outer, fn, args, kwargs, 1)
        return outer

    def shutdown(self, wait: bool = True) -> None:
        """Close the engine's client; jobs already submitted are the engine's (SLURM jobs outlive the driver)."""
        if self._closed:
            return
        self._closed = True
        self._close()

    def __enter__(self) -> _ClusterExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- internals ----------------------------------------------------------
    def _prepare(self, fn: Callable[..., Any]) -> None:
        """Checks done once per run function: picklable, small enough, output_dir reachable."""
        if id(fn) in self._checked and self._checked[id(fn)] is fn:
            return
        size = check_picklable(fn, "run_fn", engine=f"{self.engine} workers")
        if size > self.large_payload_mb * 2**20:
            part, part_size = _largest_part(fn, "run_fn")
            warnings.warn(
                f"run_fn: pickles to {size / 2**20:.0f} MB, shipped to every worker; its largest part is {part} "
                f"({part_size / 2**20:.0f} MB). For text corpora pass corpus.dataset('train', seq_len) "
                "(it pickles as the path of the cached token file) instead of the corpus or in-memory tensors.",
                UserWarning,
                stacklevel=3,
            )
        out = self.output_dir or find_output_dir(fn)
        if out is not None and self.check_storage and str(out) not in self._checked_dirs:
            self.check_shared_storage(out)
            self._checked_dirs.add(str(out))
        self._checked[id(fn)] = fn

    def check_shared_storage(self, output_dir: str | os.PathLike) -> str:
        """Run a probe task that reads a file written here under `output_dir` and writes one back.

        Returns the worker's host name; raises SharedStorageError if workers
        cannot reach `output_dir` (it must be on storage every node mounts).
        """
        out = Path(output_dir)
        probe_dir = out / PROBE_DIR
        probe_dir.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        probe = probe_dir / f"{token}.probe"
        probe.write_text(token)
        hint = (
            f"output_dir {out} must be on storage that the driver and every worker mount at the same path "
            "(NFS, Lustre, a shared home); checkpoints and run records are written there."
        )
        try:
            fut = self._launch(_probe_storage, (str(probe.resolve()), token), {})
            try:
                host = fut.result(timeout=self.probe_timeout_s)
            except FutureTimeout:
                raise SharedStorageError(
                    f"output_dir: the storage probe did not come back from {self.engine} within "
                    f"{self.probe_timeout_s:g} s (raise probe_timeout_s, or pass check_storage=False to skip it)"
                ) from None
            except SharedStorageError as exc:
                raise SharedStorageError(f"output_dir: not reachable from {self.engine} workers: {exc}. {hint}") from None
            except Exception as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, SharedStorageError) or "SharedStorageError" in type(exc).__name__ + str(exc):
                    raise SharedStorageError(
                        f"output_dir: not reachable from {self.engine} workers: {cause or exc}. {hint}"
                    ) from None
                raise
            reply = probe.with_name(probe.name + ".reply")
            deadline = time.monotonic() + 10.0  # NFS attribute caches may lag a little
            while not reply.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            if not reply.exists() or reply.read_text() != token + str(host):
                raise SharedStorageError(
                    f"output_dir: a worker on host {host!r} wrote under {probe_dir} but the driver does not see it. {hint}"
                )
            return str(host)
        finally:
            for p in (probe, probe.with_name(probe.name + ".reply")):
                try:
                    p.unlink()
                except OSError:
                    pass
            try:
                probe_dir.rmdir()
            except OSError:
                pass

    def _attempt(self, outer: Future, fn: Callable[..., Any], args: tuple, kwargs: dict, attempt: int) -> None:
        try:
            inner = self._launch(fn, args, kwargs)
        except Exception as exc:  # noqa: BLE001 - a failed submission (e.g. sbatch refused) is an attempt too
            if attempt <= self.max_retries and not self._closed:
                self._attempt(outer, fn, args, kwargs, attempt + 1)
            else:
                self._finish_failed(outer, args, attempt, exc)
            return

        def done(f: Future) -> None:
            try:
                exc = f.exception()
            except BaseException as e:  # noqa: BLE001 - cancelled
                exc = e
            if exc is None:
                result = f.result()
                details = getattr(result, "details", None)
                if isinstance(details, dict):
                    details["attempts"] = attempt
                    details["executor"] = self.name
                outer.set_result(result)
            elif attempt <= self.max_retries and not self._closed:
                self._attempt(outer, fn, args, kwargs, attempt + 1)
            else:
                self._finish_failed(outer, args, attempt, exc)

        inner.add_done_callback(done)

    def _finish_failed(self, outer: Future, args: tuple, attempts: int, exc: BaseException) -> None:
        msg = str(exc).strip().splitlines()
        last = msg[-1] if msg else ""
        first = msg[0] if msg else ""
        text = first if first == last else f"{first} ... {last}"
        err = RunFailedError(
            f"{_experiment_id(args)}: failed on {self.engine} after {attempts} attempt(s) "
            f"(max_retries={self.max_retries}); last error {type(exc).__name__}: {text}"
        )
        err.__cause__ = exc
        outer.set_exception(err)


def _check_positive(name: str, value: Any, *, allow_zero: bool = False, integer: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if integer:
        ok = ok and isinstance(value, int)
    if ok:
        ok = value >= 0 if allow_zero else value > 0
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name}: expected {kind} {'>= 0' if allow_zero else '> 0'}, found {value!r}")


def _need(module: str, extra: str, executor: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"executor={executor!r} needs the {module!r} package: pip install 'flops-fit[{extra}]'"
        ) from None


# ---------------------------------------------------------------------------
# Ray


class RayExecutor(_ClusterExecutor):
    """Each run is one Ray task asking for `num_cpus` CPUs and `num_gpus` GPUs.

    address: None starts (or joins, if already initialised, or if RAY_ADDRESS
    is set) a local Ray instance; "auto" or "ray://host:10001" joins an
    existing cluster. capacity: runs kept in flight; None means as many as the
    cluster's CPUs (and GPUs) can hold at once.
    """

    name = "ray"
    engine = "Ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: float = 1,
        num_gpus: float = 0,
        memory: int | None = None,
        resources: dict[str, float] | None = None,
        capacity: int | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        output_dir: str | os.PathLike | None = None,
        check_storage: bool = True,
        runtime_env: dict[str, Any] | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(max_retries=max_retries, output_dir=output_dir, check_storage=check_storage)
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address: expected a Ray address string or None, found {type(address).__name__}")
        _check_positive("num_cpus", num_cpus, allow_zero=True)
        _check_positive("num_gpus", num_gpus, allow_zero=True)
        if capacity is not None:
            _check_positive("capacity", capacity, integer=True)
        if resources is not None and not isinstance(resources, dict):
            raise TypeError(f"resources: expected a dict of custom resource amounts, found {type(resources).__name__}")
        ray = _need("ray", "ray", "ray")
        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, **(init_kwargs or {})}
            if runtime_env is not None:
                kwargs["runtime_env"] = runtime_env
            ray.init(address=address, **kwargs)
            self._owns_ray = True
        options: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_retries": 0,
                                   "retry_exceptions": False}
        if memory is not None:
            options["memory"] = memory
        if resources:
            options["resources"] = dict(resources)
        self.task_options = options
        self._remote = ray.remote(_call).options(**options)
        self._fn_refs: dict[int, tuple[Any, Any]] = {}
        self.capacity = capacity if capacity is not None else self._fit_capacity(num_cpus, num_gpus)

    def _fit_capacity(self, num_cpus: float, num_gpus: float) -> int:
        total = self._ray.cluster_resources()
        fits = []
        if num_cpus > 0:
            fits.append(int(total.get("CPU", 0) // num_cpus))
        if num_gpus > 0:
            fits.append(int(total.get("GPU", 0) // num_gpus))
        return max(1, min(fits) if fits else int(total.get("CPU", 1)))

    def _launch(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Future:
        key = id(fn)
        if key not in self._fn_refs or self._fn_refs[key][0] is not fn:
            self._fn_refs[key] = (fn, self._ray.put(fn))  # ship the run function once, not per task
        ref = self._remote.remote(self._fn_refs[key][1], *args, **kwargs)
        return ref.future()

    def _close(self) -> None:
        self._fn_refs.clear()
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()


# ---------------------------------------------------------------------------
# Dask


def _local_cluster_security(processes: bool) -> dict[str, Any]:
    """A LocalCluster that no other local user can submit tasks to.

    An open TCP scheduler on 127.0.0.1 runs any task sent to it as the sweep's user,
    for anyone on the machine. With worker processes the cluster therefore gets TLS
    with a temporary self-signed certificate (mutual authentication: only holders of
    this process's key connect); without worker processes it uses in-process transport,
    which nothing outside this process can reach. No ``cryptography`` package: refused.
    """
    if not processes:
        return {"protocol": "inproc://"}
    try:
        from distributed.security import Security

        return {"security": Security.temporary(), "protocol": "tls://", "host": "127.0.0.1"}
    except ImportError:
        raise RuntimeError(
            "executor='dask': a local Dask cluster with worker processes needs TLS so that no other user on this "
            "machine can run tasks as you, and TLS needs the 'cryptography' package (pip install "
            "'flops-fit[dask]'); or pass processes=False (threads, in-process transport), or the address/client "
            "of a cluster you secured yourself"
        ) from None


class DaskExecutor(_ClusterExecutor):
    """Each run is one task on a dask.distributed cluster.

    address: a scheduler address ("tcp://host:8786"); None starts a
    LocalCluster of `n_workers` single-threaded worker processes. client: an
    existing distributed.Client instead. capacity: runs kept in flight; None
    means the cluster's total worker threads.
    """

    name = "dask"
    engine = "Dask"

    def __init__(
        self,
        address: str | None = None,
        *,
        client: Any = None,
        n_workers: int | None = None,
        threads_per_worker: int = 1,
        processes: bool = True,
        resources: dict[str, float] | None = None,
        capacity: int | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        output_dir: str | os.PathLike | None = None,
        check_storage: bool = True,
        cluster_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(max_retries=max_retries, output_dir=output_dir, check_storage=check_storage)
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address: expected a scheduler address string or None, found {type(address).__name__}")
        if n_workers is not None:
            _check_positive("n_workers", n_workers, integer=True)
        _check_positive("threads_per_worker", threads_per_worker, integer=True)
        if capacity is not None:
            _check_positive("capacity", capacity, integer=True)
        distributed = _need("distributed", "dask", "dask")
        self._cluster = None
        self._owns_client = client is None
        if client is not None:
            self.client = client
        elif address is not None:
            self.client = distributed.Client(address)
        else:
            kw = {"n_workers": n_workers or min(2, os.cpu_count() or 1), "threads_per_worker": threads_per_worker,
                  "processes": processes, "dashboard_address": None, **_local_cluster_security(processes),
                  **(cluster_kwargs or {})}
            self._cluster = distributed.LocalCluster(**kw)
            self.client = distributed.Client(self._cluster, security=kw.get("security"))
        self.resources = dict(resources) if resources else None
        if capacity is None:
            capacity = max(1, sum(self.client.nthreads().values()))
        self.capacity = capacity

    def _launch(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Future:
        dfut = self.client.submit(_call, fn, *args, pure=False, retries=0, resources=self.resources, **kwargs)
        out: Future = Future()

        def relay(f: Any) -> None:
            try:
                out.set_result(f.result())
            except BaseException as exc:  # noqa: BLE001 - the task's error (or its cancellation)
                out.set_exception(exc)

        dfut.add_done_callback(relay)
        out._dask_future = dfut  # type: ignore[attr-defined]  # keep the task alive until it is read
        return out

    def _close(self) -> None:
        if self._owns_client:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()


# ---------------------------------------------------------------------------
# SLURM through submitit


class SubmititExecutor(_ClusterExecutor):
    """Each run is one SLURM job (submitit); cluster="local" runs jobs as local processes (tests).

    folder: where submitit keeps job pickles and logs (shared storage on
    SLURM); "%j" in it is replaced by the job id. partition, time_min,
    gpus_per_node, cpus_per_task, mem_gb map onto the SLURM job; any other
    submitit parameter goes in `parameters` (e.g. {"slurm_account": "abc"}).
    capacity: jobs kept in the queue at once (default 16; 2 with cluster="local").
    poll_interval_s: how often job states are polled (submitit rate-limits
    its own squeue/sacct calls); results_timeout_s: how long a finished job's
    result file is awaited before the job counts as lost (submitit's 15 s on
    SLURM, for NFS lag; 1 s with cluster="local").
    """

    name = "slurm"
    engine = "SLURM"

    def __init__(
        self,
        folder: str | os.PathLike = "submitit",
        *,
        cluster: str | None = None,
        partition: str | None = None,
        time_min: int = 60,
        gpus_per_node: int = 0,
        cpus_per_task: int = 1,
        mem_gb: float | None = None,
        capacity: int | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        output_dir: str | os.PathLike | None = None,
        check_storage: bool = True,
        poll_interval_s: float | None = None,
        results_timeout_s: float | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(max_retries=max_retries, output_dir=output_dir, check_storage=check_storage)
        if cluster not in (None, "slurm", "local", "debug"):
            raise ValueError(f"cluster: expected None, 'slurm', 'local' or 'debug', found {cluster!r}")
        if not isinstance(folder, (str, os.PathLike)):
            raise TypeError(f"folder: expected a path, found {type(folder).__name__}")
        _check_positive("time_min", time_min, integer=True)
        _check_positive("gpus_per_node", gpus_per_node, allow_zero=True, integer=True)
        _check_positive("cpus_per_task", cpus_per_task, integer=True)
        if mem_gb is not None:
            _check_positive("mem_gb", mem_gb)
        if capacity is not None:
            _check_positive("capacity", capacity, integer=True)
        if partition is not None and not isinstance(partition, str):
            raise TypeError(f"partition: expected a SLURM partition name, found {type(partition).__name__}")
        submitit = _need("submitit", "slurm", "slurm")
        local = cluster in ("local", "debug")
        self.engine = "submitit-local" if local else "SLURM"
        self.folder = Path(folder)
        self._executor = submitit.AutoExecutor(folder=self.folder, cluster=cluster)
        params: dict[str, Any] = {"timeout_min": time_min, "cpus_per_task": cpus_per_task, "name": "flops-fit"}
        if gpus_per_node:
            params["gpus_per_node"] = gpus_per_node
        if mem_gb is not None:
            params["mem_gb"] = mem_gb
        if partition is not None:
            params["slurm_partition"] = partition
        params.update(parameters or {})
        self._executor.update_parameters(**params)
        self.capacity = capacity if capacity is not None else (2 if local else 16)
        self.poll_interval_s = poll_interval_s if poll_interval_s is not None else (0.1 if local else 2.0)
        # how long submitit waits for a finished job's result file (NFS lag) before calling it lost;
        # a local disk has no lag, so a killed local job is retried at once instead of after 15 s
        self.results_timeout_s = results_timeout_s if results_timeout_s is not None else (1.0 if local else None)
        self._jobs: list[tuple[Any, Future]] = []
        self._jobs_lock = threading.Lock()
        self._wake = threading.Event()
        self._watcher: threading.Thread | None = None

    def _launch(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Future:
        job = self._executor.submit(_call, fn, *args, **kwargs)
        if self.results_timeout_s is not None and hasattr(job, "_results_timeout_s"):
            job._results_timeout_s = self.results_timeout_s
        out: Future = Future()
        with self._jobs_lock:
            self._jobs.append((job, out))
            if self._watcher is None or not self._watcher.is_alive():
                self._watcher = threading.Thread(target=self._watch, name="flops-fit-submitit", daemon=True)
                self._watcher.start()
        self._wake.set()
        return out

    def _watch(self) -> None:
        """Poll submitted jobs and settle their futures (submitit jobs have no callbacks)."""
        while True:
            with self._jobs_lock:
                jobs = list(self._jobs)
                if not jobs or self._closed:
                    self._watcher = None
                    return
            finished = []
            for job, fut in jobs:
                try:
                    is_done = job.done()
                except Exception:  # noqa: BLE001 - a flaky squeue/sacct call: ask again next round
                    continue
                if not is_done:
                    continue
                finished.append((job, fut))
                try:
                    result = job.result()
                except BaseException as exc:  # noqa: BLE001
                    fut.set_exception(exc)
                else:
                    fut.set_result(result)
            if finished:
                gone = {id(f) for _, f in finished}
                with self._jobs_lock:
                    self._jobs = [p for p in self._jobs if id(p[1]) not in gone]
            self._wake.wait(self.poll_interval_s)
            self._wake.clear()

    def _close(self) -> None:
        with self._jobs_lock:
            jobs, self._jobs = list(self._jobs), []
        for job, fut in jobs:
            try:
                job.cancel(check=False)
            except Exception:  # noqa: BLE001
                pass
            if not fut.done():
                fut.set_exception(RuntimeError(f"job {job.job_id} cancelled by shutdown()"))


register_executor("ray", RayExecutor)
register_executor("dask", DaskExecutor)
register_executor("slurm", SubmititExecutor)
register_executor("submitit", SubmititExecutor)
