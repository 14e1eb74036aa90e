"""Per-run scheduling overhead of the Ray executor against the local one, on a 35-run mock sweep.

A mock run takes microseconds, so (Ray sweep time - local sweep time) / 35 is
what Ray adds per run: pickling, task submission, result transfer, the
driver's wake-up. Ray's start-up (ray.init) is reported separately, and so
is the first ("cold") sweep, whose tasks also pay for importing flops_fit in
fresh worker processes. Target: under 0.5 s per run.

    python benchmarks/bench_ray_overhead.py [--num-cpus 2] [--repeats 3]

Writes benchmarks/results/ray_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray

import flops_fit as ff
import flops_fit.training
from flops_fit.training.cluster import RayExecutor
from flops_fit.training.executors import LocalExecutor

BUDGETS = [1e17, 1e18, 1e19, 1e20, 1e21]  # 5 budgets x 7 sizes = 35 runs
TARGET_S = 0.5


class ToyModel:
    def __init__(self, d_model: int, n_layers: int = 4, vocab: int = 256) -> None:
        self.d_model, self.n_layers, self.vocab = d_model, n_layers, vocab

    def num_params(self) -> int:
        return 12 * self.n_layers * self.d_model**2 + self.vocab * self.d_model


def sweep_seconds(executor) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        res = ff.find_optimal(ToyModel, "d_model", compute_budgets=BUDGETS, num_model_sizes=7, mode="mock",
                              output_dir=out, progress=False, executor=executor)
        dt = time.perf_counter() - t
        return dt, len(res.records) if hasattr(res, "records") else 35


def round_trips(executor, n: int = 35) -> list[float]:
    """Seconds from submit() to result() of one mock run, one at a time (no overlap)."""
    import functools

    plan = ff.find_optimal(ToyModel, "d_model", compute_budgets=BUDGETS, num_model_sizes=7, mode="mock",
                           output_dir=tempfile.mkdtemp(), train=False)
    fn = functools.partial(ff.training.mock_run, law=ff.MockLaw(), seed=0)
    out = []
    for exp in plan.runnable[:n]:
        t = time.perf_counter()
        executor.submit(fn, exp).result()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ray_overhead.json"))
    args = ap.parse_args()

    local = [sweep_seconds(LocalExecutor())[0] for _ in range(args.repeats)]
    t = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - t
    ex = RayExecutor()
    cold, n_runs = sweep_seconds(ex)
    warm = [sweep_seconds(ex)[0] for _ in range(args.repeats)]
    ex.shutdown()
    serial_ex = RayExecutor(capacity=1)  # one run in flight: pure per-run latency, no parallel speed-up
    serial = [sweep_seconds(serial_ex)[0] for _ in range(args.repeats)]
    rt_ray = round_trips(serial_ex)
    serial_ex.shutdown()
    rt_local = round_trips(LocalExecutor())
    ray.shutdown()

    local_s, warm_s = statistics.median(local), statistics.median(warm)
    per_run_parallel = (warm_s - local_s) / n_runs
    per_run = (statistics.median(serial) - local_s) / n_runs  # the headline figure
    per_run_cold = (cold - local_s) / n_runs
    result = {
        "benchmark": "ray_overhead",
        "runs_per_sweep": n_runs,
        "ray_capacity": ex.capacity,
        "local_sweep_s": local,
        "ray_init_s": init_s,
        "ray_cold_sweep_s": cold,
        "ray_warm_sweep_s": warm,
        "ray_serial_sweep_s": serial,
        "overhead_per_run_s": per_run,
        "overhead_per_run_parallel_s": per_run_parallel,
        "overhead_per_run_cold_s": per_run_cold,
        "round_trip_ray_median_s": statistics.median(rt_ray),
        "round_trip_ray_p90_s": sorted(rt_ray)[int(0.9 * len(rt_ray))],
        "round_trip_local_median_s": statistics.median(rt_local),
        "target_per_run_s": TARGET_S,
        "meets_target": per_run < TARGET_S,
        "note": "overhead_per_run_s = (median Ray sweep with capacity=1 - median local sweep) / runs, i.e. the "
                "latency Ray adds to each run when nothing overlaps; *_parallel_s uses capacity=num_cpus (runs "
                "overlap, so it can be below zero); *_cold_s is the first sweep on fresh workers. Every sweep "
                "also plans, writes results.json after each run and analyses, identically for both executors.",
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(),
            "ray_num_cpus": args.num_cpus,
            "ray": ray.__version__,
            "load_average_1m": os.getloadavg()[0],
            "processor": platform.processor() or platform.machine(),
        },
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"local sweep (35 mock runs): {local_s:.2f} s (median of {args.repeats})")
    print(f"ray.init: {init_s:.1f} s; first Ray sweep (cold workers): {cold:.2f} s")
    print(f"Ray sweep (warm, {ex.capacity} in flight): {warm_s:.2f} s; one in flight: "
          f"{statistics.median(serial):.2f} s (medians of {args.repeats})")
    print(f"Ray scheduling overhead: {per_run * 1000:.0f} ms per run (one in flight), "
          f"{per_run_parallel * 1000:.0f} ms with {ex.capacity} in flight, {per_run_cold * 1000:.0f} ms cold "
          f"(target < {TARGET_S * 1000:.0f} ms): {'OK' if per_run < TARGET_S else 'MISSED'}")
    print(f"submit->result round trip of one mock run: Ray {statistics.median(rt_ray) * 1000:.1f} ms median "
          f"(p90 {sorted(rt_ray)[int(0.9 * len(rt_ray))] * 1000:.1f} ms), local "
          f"{statistics.median(rt_local) * 1000:.2f} ms")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
