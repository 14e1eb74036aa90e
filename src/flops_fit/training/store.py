"""results.json and its journal: one record per finished experiment.

The driver is the only writer. Each finished record is appended to
``results.journal.jsonl`` (one JSON line, fsync'd before the next run is awaited),
so a sweep of n runs writes O(n) bytes, not O(n^2); the journal is compacted into
results.json (atomically, then removed) when the sweep ends and when a store is
opened. Readers merge the two. A record, once written, is never lost: a kill
mid-append leaves a torn last line that is ignored (that run is redone), a failed
append is cut back off, a different plan is refused instead of mixed in, and
`resume=False` moves old results aside instead of deleting them.

The store also owns the driver's lock (:func:`driver_lock`) and the
per-experiment record files a job-array task writes (``records/<id>.json``,
:func:`write_record_file`), which the driver merges (:func:`merge_records`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import pandas as pd

from flops_fit import io
from flops_fit.layout import JOURNAL_SUFFIX, LOCK_FILE, RunDir, journal_path  # noqa: F401  (re-exported)

RESULTS_SCHEMA = 1
RESULTS_KIND = "flops-fit/results"

STATUS_COMPLETED = "completed"
STATUS_DIVERGED = "diverged"
STATUS_FAILED = "failed"
STATUSES = (STATUS_COMPLETED, STATUS_DIVERGED, STATUS_FAILED)


@dataclass
class RunRecord:
    """The outcome of one experiment, as stored in results.json.

    `details` holds what only some engines know (loss curve, train config,
    throughput, epochs, measured FLOPs, ...); its keys are documented in
    docs/file-formats.md.
    """

    experiment_id: str
    compute_budget: float
    size_value: int
    num_params: int
    num_tokens: float  # D the run was planned for (and, when completed, trained on)
    final_loss: float | None
    status: str
    flops: float
    flops_method: str  # "6ND" or "measured"
    units: str = "tokens"  # what D counts: tokens, samples, or mock
    error: str | None = None
    wall_time_s: float = 0.0
    timestamp: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, exp: Any, **outcome: Any) -> "RunRecord":
        """The record of planned experiment `exp` (its id, budget, size, N and D) with this outcome."""
        rec = cls(experiment_id=exp.experiment_id, compute_budget=exp.compute_budget, size_value=exp.size_value,
                  num_params=exp.num_params, num_tokens=exp.num_tokens, **outcome)
        if getattr(exp, "extra", False):  # on no IsoFLOP budget: the analysis fits it by Approach 3 only
            rec.details = {**rec.details, "extra": True}
        return rec

    def __post_init__(self) -> None:
        if not self.timestamp:
            self.timestamp = datetime.now(timezone.utc).isoformat(timespec="seconds")

    @property
    def ok(self) -> bool:
        return self.status == STATUS_COMPLETED and self.final_loss is not None and math.isfinite(
            self.final_loss
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str, index: int) -> "RunRecord":
        where = f"{source}: records[{index}]"
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected an object, found {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        required = names - {"units", "error", "wall_time_s", "timestamp", "details"}
        missing = sorted(required - set(d))
        if missing:
            raise ValueError(f"{where}: required field {missing[0]!r} is missing")
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{where}: unknown field {unknown[0]!r}")
        io.check_id(d["experiment_id"], f"{where}: field 'experiment_id'")
        if d["status"] not in STATUSES:
            raise ValueError(f"{where}: field 'status': expected one of {STATUSES}, found {d['status']!r}")
        for key in ("compute_budget", "num_params", "num_tokens", "flops"):
            v = d[key]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise ValueError(f"{where}: field {key!r}: expected a positive number, found {v!r}")
        loss = d["final_loss"]
        if loss is not None and (not isinstance(loss, (int, float)) or isinstance(loss, bool)):
            raise ValueError(f"{where}: field 'final_loss': expected a number or null, found {loss!r}")
        if d["status"] == STATUS_COMPLETED and (loss is None or not math.isfinite(loss) or loss <= 0):
            raise ValueError(f"{where}: field 'final_loss': a completed run needs a finite positive loss, "
                             f"found {loss!r}")
        if not isinstance(d.get("details", {}), dict):
            raise ValueError(f"{where}: field 'details': expected an object, found {type(d['details']).__name__}")
        return cls(**d)

    @property
    def transient(self) -> bool:
        """A failure that says nothing about the run (out of memory, killed, I/O error, worker lost)."""
        return self.status == STATUS_FAILED and bool(self.details.get("transient"))


def check_against_plan(records: Iterable[RunRecord], planned: Mapping[str, tuple[float, int, float]],
                       source: str) -> None:
    """Refuse, naming the record, any record the plan does not vouch for.

    `planned` maps experiment id -> (compute_budget, num_params, num_tokens[, extra]) of the plan.
    A record of an unknown experiment, or one whose budget, N or D differ from the plan
    (an edited or forged file), is an error, never silently fitted.
    """
    for r in records:
        plan = planned.get(r.experiment_id)
        if plan is None:
            raise ValueError(f"{source}: record {r.experiment_id!r} is not an experiment of the plan in sweep.json; "
                             "the file was edited, or comes from another sweep")
        got = (r.compute_budget, r.num_params, r.num_tokens)
        for name, want, have in zip(("compute_budget", "num_params", "num_tokens"), plan, got):
            if not math.isclose(float(want), float(have), rel_tol=1e-9):
                raise ValueError(f"{source}: record {r.experiment_id!r}: field {name!r} is {have!r}, but the plan "
                                 f"in sweep.json says {want!r}; refusing an edited record")
        extra = bool(r.details.get("extra", False)) if isinstance(r.details, dict) else False
        if len(plan) > 3 and extra != bool(plan[3]):
            raise ValueError(f"{source}: record {r.experiment_id!r}: details.extra is {extra}, but the plan in "
                             f"sweep.json says {bool(plan[3])}; refusing an edited record")



def read_journal(path: str | Path) -> list[tuple[str, RunRecord]]:
    """(plan fingerprint, record) of every complete line of a journal; [] when there is none.

    A last line without its newline is a write cut short by a kill: ignored. Any other
    malformed line is an error naming the file and the line.
    """
    p = Path(path)
    if p.is_symlink():
        raise ValueError(f"{p}: is a symbolic link; the results journal must be a plain file (remove it)")
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return []
    lines = raw.split(b"\n")
    if lines and lines[-1] != b"":  # torn tail
        lines = lines[:-1]
    out = []
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{p}: line {no}"
        try:
            d = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{where}: not a JSON record ({exc}); the journal is corrupt or was edited") from None
        if not isinstance(d, dict) or d.get("kind") != JOURNAL_KIND or d.get("schema") != RESULTS_SCHEMA:
            raise ValueError(f"{where}: expected a {JOURNAL_KIND!r} line of schema {RESULTS_SCHEMA}")
        fp = io.require(d, "plan_fingerprint", where)
        out.append((str(fp), RunRecord.from_dict(io.require(d, "record", where), where, 0)))
    return out


JOURNAL_KIND = "flops-fit/results-journal"


class ResultsStore:
    """The results of one plan (identified by its fingerprint): results.json plus its journal."""

    def __init__(self, path: str | Path, plan_fingerprint: str, *, resume: bool = True,
                 planned: Mapping[str, tuple[float, int, float]] | None = None) -> None:
        self.path = Path(path)
        self.journal = journal_path(self.path)
        self.fingerprint = plan_fingerprint
        self.planned = planned
        self._records: dict[str, RunRecord] = {}
        self.moved_aside: Path | None = None
        if self.path.exists() or self.journal.exists():
            if resume:
                found, records = self.read(self.path)
                if found != plan_fingerprint:
                    raise ValueError(
                        f"{self.path}: these results were made by a different plan "
                        f"(fingerprint {found}, this plan is {plan_fingerprint}); refusing to mix them. "
                        "Use a new output_dir, or resume=False to move the old results aside and start over."
                    )
                if planned is not None:
                    check_against_plan(records, planned, str(self.path))
                self._records = {r.experiment_id: r for r in records}
            else:
                self._move_aside()

    def _move_aside(self) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"results.{stamp}.json")
        k = 1
        while aside.exists() or journal_path(aside).exists():  # never overwrite an earlier set of results
            aside = self.path.with_name(f"results.{stamp}-{k}.json")
            k += 1
        if self.journal.exists():  # fold the journal in, so the old results are one plain file
            try:
                fp, records = self.read(self.path)
            except ValueError:  # unreadable: keep both files as they are, side by side
                self.journal.replace(journal_path(aside))
            else:
                io.atomic_write_json(aside, {"schema": RESULTS_SCHEMA, "kind": RESULTS_KIND, "plan_fingerprint": fp,
                                             "records": [r.to_dict() for r in records]})
                self.journal.unlink()
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        if self.path.exists():
            self.path.replace(aside)
        self.moved_aside = aside

    @staticmethod
    def read(path: str | Path) -> tuple[str, list[RunRecord]]:
        """(plan fingerprint, records) of a results file merged with its journal (a line there is newer
        than results.json); malformed files name the field."""
        source = str(path)
        fp, records = None, []
        if Path(path).exists() or not journal_path(path).exists():
            data = io.read_json(path)
            io.check_header(data, RESULTS_KIND, RESULTS_SCHEMA, source)
            fp = io.require(data, "plan_fingerprint", source)
            recs = io.require(data, "records", source)
            if not isinstance(recs, list):
                raise ValueError(f"{source}: field 'records': expected a list, found {type(recs).__name__}")
            records = [RunRecord.from_dict(r, source, i) for i, r in enumerate(recs)]
            ids = [r.experiment_id for r in records]
            if len(set(ids)) != len(ids):
                dup = next(i for i in ids if ids.count(i) > 1)
                raise ValueError(f"{source}: experiment {dup!r} appears more than once")
        merged = {r.experiment_id: r for r in records}
        jpath = journal_path(path)
        for jfp, rec in read_journal(jpath):
            if fp is None:
                fp = jfp
            elif jfp != fp:
                raise ValueError(f"{jpath}: a line of plan {jfp} beside results of plan {fp}; the two files come "
                                 "from different sweeps (move one away)")
            merged[rec.experiment_id] = rec
        return str(fp), list(merged.values())

    @property
    def records(self) -> list[RunRecord]:
        return list(self._records.values())

    def get(self, experiment_id: str) -> RunRecord | None:
        """The stored record of one experiment, or None."""
        return self._records.get(experiment_id)

    def done_ids(self, *, include_failed: bool = True) -> set[str]:
        """Ids that need no more training. Transient failures never count (they are retried on the next
        call); deterministic ones count unless `include_failed` is False (retry_failed)."""
        return {
            k for k, r in self._records.items()
            if not r.transient and (include_failed or r.status != STATUS_FAILED)
        }

    def add(self, record: RunRecord) -> None:
        """Record one finished experiment and make it durable (appended and fsync'd) before returning."""
        self._append([record])
        self._records[record.experiment_id] = record

    def add_many(self, records: Iterable[RunRecord]) -> None:
        records = list(records)
        if records:
            self._append(records)
            for r in records:
                self._records[r.experiment_id] = r

    def _append(self, records: list[RunRecord]) -> None:
        text = "".join(
            json.dumps(io._finite({"schema": RESULTS_SCHEMA, "kind": JOURNAL_KIND, "plan_fingerprint": self.fingerprint,
                                   "record": r.to_dict()}), allow_nan=False) + "\n"
            for r in records
        ).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.journal, flags, 0o666)
        except OSError:
            if self.journal.is_symlink():
                raise ValueError(f"{self.journal}: is a symbolic link; refusing to append through it") from None
            raise
        try:
            start = os.fstat(fd).st_size
            try:
                view = memoryview(text)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as exc:  # a full disk: cut the partial line off so the journal stays whole
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise OSError(exc.errno, f"{self.journal}: could not append a record ({exc.strerror or exc}); "
                                         "earlier records are intact") from exc
        finally:
            os.close(fd)

    def compact(self) -> None:
        """Fold the journal into results.json (atomically), then remove it. Safe to interrupt: until the
        journal is gone its lines repeat what results.json holds, and readers merge them."""
        if not self.journal.exists():
            return
        io.atomic_write_json(
            self.path,
            {
                "schema": RESULTS_SCHEMA,
                "kind": RESULTS_KIND,
                "plan_fingerprint": self.fingerprint,
                "records": [r.to_dict() for r in self._records.values()],
            },
        )
        with contextlib.suppress(FileNotFoundError):
            self.journal.unlink()


def records_to_dataframe(records: Iterable[RunRecord]) -> pd.DataFrame:
    """Flat table of records with the column names the analysis uses (N, D, loss)."""
    rows = []
    for r in records:
        rows.append(
            {
                "experiment_id": r.experiment_id,
                "compute_budget": r.compute_budget,
                "size_value": r.size_value,
                "N": float(r.num_params),
                "D": float(r.num_tokens),
                "C": float(r.flops),
                "loss": float("nan") if r.final_loss is None else float(r.final_loss),
                "status": r.status,
                "error": r.error,
                "transient": r.transient,
                "flops_method": r.flops_method,
                "units": r.units,
                "wall_time_s": r.wall_time_s,
                "initial_loss": r.details.get("initial_loss", float("nan")),
                "extra": bool(r.details.get("extra", False)),
            }
        )
    cols = [
        "experiment_id", "compute_budget", "size_value", "N", "D", "C", "loss", "status",
        "error", "transient", "flops_method", "units", "wall_time_s", "initial_loss",
    ]
    if any(row["extra"] for row in rows):  # a design's extra branches (flops_fit.design): on no IsoFLOP budget
        cols.append("extra")
    return pd.DataFrame(rows, columns=cols)


@contextlib.contextmanager
def driver_lock(output_dir: str | Path, *, wait: bool = False) -> Iterator[bool]:
    """Exclusive lock making this process the one writer of results.json; yields whether it was acquired."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, single driver assumed
        yield True
        return
    with io.open_lock_file(out / LOCK_FILE) as fd:  # O_NOFOLLOW: a planted symlink is refused
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------
# per-experiment record files (job-array tasks), merged by the driver

RECORD_KIND = "flops-fit/record"
RECORD_SCHEMA = 1


def write_record_file(out: Path, record: RunRecord, plan_fingerprint: str) -> Path:
    """records/<id>.json: one finished run of a job-array task, written atomically by its only writer."""
    path = RunDir(out).record(record.experiment_id)
    io.atomic_write_json(
        path,
        {"schema": RECORD_SCHEMA, "kind": RECORD_KIND, "plan_fingerprint": plan_fingerprint, "record": record.to_dict()},
    )
    return path


def read_record_file(path: Path) -> tuple[str, RunRecord]:
    """(plan fingerprint, record) of a records/<id>.json file; malformed files name the field."""
    source = str(path)
    data = io.read_json(path)
    io.check_header(data, RECORD_KIND, RECORD_SCHEMA, source)
    fp = io.require(data, "plan_fingerprint", source)
    rec = RunRecord.from_dict(io.require(data, "record", source), source, 0)
    return fp, rec


def merge_records(output_dir: str | Path, store: ResultsStore) -> int:
    """Add every per-experiment record file not yet in `store` (caller holds the driver lock)."""
    out = Path(output_dir)
    folder = RunDir(out).records_dir
    if not folder.is_dir():
        return 0
    new = []
    for path in sorted(folder.glob("*.json")):
        if path.is_symlink():
            raise ValueError(f"{path}: is a symbolic link; record files must be plain files (remove it)")
        fp, rec = read_record_file(path)
        if fp != store.fingerprint:
            raise ValueError(
                f"{path}: field 'plan_fingerprint' is {fp}, but sweep.json describes plan {store.fingerprint}; "
                "this record belongs to another sweep (move it away)"
            )
        if path.stem != rec.experiment_id:
            raise ValueError(f"{path}: holds the record of {rec.experiment_id!r}, not of {path.stem!r}")
        if store.planned is not None:
            check_against_plan([rec], store.planned, str(path))
        old = store.get(rec.experiment_id)
        if old is None or old.to_dict() != rec.to_dict():
            new.append(rec)
    if new:
        store.add_many(new)
    return len(new)
