"""Result.load on a finished sweep: how long it takes, and whether it gives back the numbers that were saved.

    python benchmarks/bench_result_load.py [OUTPUT_DIR]      # default: outputs/demo (make demo writes it)

Result.load reads sweep.json, results.json and analysis/scaling_laws.json. The point fits are
recomputed from the runs (the stored file is untrusted input, so its numbers are not taken on
trust; the fits are seeded and deterministic), and the stored bootstrap samples are reused only
when they belong to exactly these runs and options. Prints the median of 5 loads and the largest
relative difference between the saved and the reloaded analysis; records both in
benchmarks/results/result_load.json with the machine.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import flops_fit as ff


def _numbers(obj, path=""):
    """Every finite number of a JSON tree, by its path."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k != "bootstrap_samples":
                yield from _numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and math.isfinite(obj):
        yield path, float(obj)


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/demo")
    saved = json.loads((out / "analysis" / "scaling_laws.json").read_text())
    times = []
    for _ in range(5):
        t = time.perf_counter()
        result = ff.Result.load(out)
        times.append(time.perf_counter() - t)
    again = dict(_numbers(result.to_dict()))
    worst, where, compared = 0.0, "", 0
    for key, v in _numbers(saved):
        if key in again and not key.startswith((".created", ".timing")):
            compared += 1
            d = abs(again[key] - v) / max(abs(v), 1e-300)
            if d > worst:
                worst, where = d, key
    row = {"benchmark": "bench_result_load", "output_dir": str(out), "runs": len(result.records),
           "median_seconds": statistics.median(times), "seconds": times, "numbers_compared": compared,
           "max_relative_difference": worst, "at": where, "target_met": statistics.median(times) < 1.0 and worst < 1e-9,
           "machine": {"platform": platform.platform(), "cores": os.cpu_count(), "python": platform.python_version()}}
    print(json.dumps(row, indent=1))
    Path(__file__).with_name("results").joinpath("result_load.json").write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
