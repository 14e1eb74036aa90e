"""Results are written in linear time: the training stage of a 3,000-run mock sweep against 30 x a 100-run one.

Each finished run is one fsync'd line in results.journal.jsonl, folded into results.json once at the end
(before: results.json rewritten after every run, O(n^2): 1.9 -> 80 ms per run from 10 to 3,000 runs).
Runs the mock engine through the real driver (run_sweep with a ResultsStore), so the time is the
driver's bookkeeping and the store's writes. Target: t(3000) <= 2 x 30 x t(100).

    python benchmarks/bench_results_scaling.py [--sizes 10 100 1000 3000]

Writes benchmarks/results/results_scaling.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from flops_fit.planning import Experiment, SweepPlan
from flops_fit.training.mock import MockLaw, mock_run
from flops_fit.training.store import ResultsStore
from flops_fit.training.sweep import run_sweep

RESULTS = Path(__file__).parent / "results" / "results_scaling.json"


def plan_of(n: int) -> SweepPlan:
    exps = [Experiment(f"C1e18-w{k}", 1e18, 0, k, 10**6 + 1000 * k, 1e18 / (6 * (10**6 + 1000 * k)), 1e6)
            for k in range(1, n + 1)]
    return SweepPlan(budgets=[1e18], experiments=exps, size_param="w", model_name="m")


def stage_seconds(n: int) -> float:
    plan = plan_of(n)
    run = functools.partial(mock_run, law=MockLaw(), seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultsStore(Path(tmp) / "results.json", plan.fingerprint())
        t0 = time.perf_counter()
        recs = run_sweep(plan, run, store, progress=False)
        dt = time.perf_counter() - t0
        assert len(recs) == n and len(ResultsStore.read(Path(tmp) / "results.json")[1]) == n
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 3000])
    args = ap.parse_args()
    rows = {}
    for n in args.sizes:
        t = min(stage_seconds(n) for _ in range(3 if n <= 100 else 1))
        rows[str(n)] = {"seconds": t, "ms_per_run": 1000 * t / n}
        print(f"{n:5d} runs: {t:7.2f} s, {1000 * t / n:6.2f} ms per run", flush=True)
    ratio = rows["3000"]["seconds"] / (30 * rows["100"]["seconds"]) if "3000" in rows and "100" in rows else None
    if ratio is not None:
        print(f"t(3000) / (30 x t(100)) = {ratio:.2f} (target <= 2)")
    out = {"benchmark": "bench_results_scaling", "rows": rows, "ratio_3000_vs_30x100": ratio,
           "target_met": ratio is not None and ratio <= 2.0,
           "machine": {"platform": platform.platform(), "cores": os.cpu_count(), "python": platform.python_version(),
                       "load_average_1min": os.getloadavg()[0], "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
