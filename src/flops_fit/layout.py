"""Every file name of an output directory, in one place, and the rule that nothing escapes it.

An output directory is shared, copied and synced, so it is untrusted input:
ids read from its files are validated and every path built from them must
resolve inside the directory (:func:`flops_fit.io.inside`).

::

    sweep.json                    the plan (ff-plan / find_optimal)
    results.json                  finished runs (driver), + results.journal.jsonl while a sweep runs
    .results.lock                 the driver's lock
    records/<id>.json             one finished run of a job-array task (merged by the driver)
    checkpoints/<id>/             a run in progress (state, and its record until the driver stores it)
    analysis/scaling_laws.json    fits, optima, intervals, bootstrap samples
    plots/*.png                   the three figures
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flops_fit import io

SWEEP_FILE = "sweep.json"
RESULTS_FILE = "results.json"
JOURNAL_SUFFIX = ".journal.jsonl"
LOCK_FILE = ".results.lock"
RECORDS_DIR = "records"
CHECKPOINT_DIR = "checkpoints"
ANALYSIS_FILE = "analysis/scaling_laws.json"
PLOTS_DIR = "plots"
PLOT_FILES = ("isoflops_curves.png", "scaling_laws.png", "tokens_per_param.png")


def journal_path(path: str | Path) -> Path:
    """The journal beside a results file: results.json -> results.journal.jsonl."""
    p = Path(path)
    return p.with_name(p.stem + JOURNAL_SUFFIX)


@dataclass(frozen=True)
class RunDir:
    """The files of one output directory (paths only: nothing here reads or writes them)."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def sweep(self) -> Path:
        return self.root / SWEEP_FILE

    @property
    def results(self) -> Path:
        return self.root / RESULTS_FILE

    @property
    def journal(self) -> Path:
        return journal_path(self.results)

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def records_dir(self) -> Path:
        return self.root / RECORDS_DIR

    @property
    def analysis(self) -> Path:
        return self.root / ANALYSIS_FILE

    @property
    def plots_dir(self) -> Path:
        return self.root / PLOTS_DIR

    @property
    def plots(self) -> list[Path]:
        return [self.plots_dir / name for name in PLOT_FILES]

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / CHECKPOINT_DIR

    def has_results(self) -> bool:
        return self.results.exists() or self.journal.exists()

    def record(self, experiment_id: str) -> Path:
        """records/<id>.json; the id is validated and the path must stay inside the directory."""
        return io.inside(self.root, RECORDS_DIR, f"{io.check_id(experiment_id, 'experiment_id')}.json")

    def checkpoint(self, experiment_id: str) -> Path:
        """checkpoints/<id>/ of one experiment, validated like :meth:`record`."""
        return io.inside(self.root, CHECKPOINT_DIR, io.check_id(experiment_id, "experiment_id"))

    def check_usable(self) -> None:
        """Refuse a path that exists but is not a directory (before any work)."""
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"output_dir: expected a directory, found a file at {self.root}")
