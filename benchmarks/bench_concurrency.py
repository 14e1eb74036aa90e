"""Concurrent runs: the demo's sweep with the default execution (workers="auto") against one run at a
time with all of torch's threads (the previous default), interleaved pairs, same machine, same process.

    python benchmarks/bench_concurrency.py [--pairs 3] [--budgets 3e10 1e11] [--full]

`--full` runs the README demo's three budgets (about 3 x 2 x 200 s on 2 cores); the default drops the
largest budget to fit a benchmark session. Prints each pair's wall times and the median speed-up, the
execution each chose, and how the losses compare: with the same threads per run, runs in parallel
give bit-identical losses to runs one at a time (checked here against a serial 1-thread sweep); with a
different number of threads, float reductions run in another order and the losses differ in the 4th-5th
digit. Target (issue "Use the whole machine"): >= 1.6x on 2 cores.
Writes benchmarks/results/concurrency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "concurrency.json"
MODEL_KWARGS = {"n_layers": 2, "head_dim": 8, "max_seq_len": 64}


def sweep(out: str, budgets: list[float], workers, threads):
    import flops_fit as ff

    t0 = time.perf_counter()
    r = ff.find_optimal("gpt", model_kwargs=MODEL_KWARGS, dataset="stdlib", data_options={"seq_len": 64},
                        compute_budgets=budgets, num_model_sizes=5, span_decades=0.5, center_tokens_per_param=60,
                        size_min=8, size_max=256,
                        train_config={"batch_size": 16, "val_units": 256 * 64, "num_threads": threads},
                        output_dir=out, resume=False, progress=False, workers=workers, n_bootstrap=100)
    wall = time.perf_counter() - t0
    losses = {x.experiment_id: x.final_loss for x in r.records}
    train_s = sum(x.wall_time_s for x in r.records)
    return {"wall_s": wall, "execution": r.plan.execution, "estimate": {k: r.plan.cost_estimate.get(k) for k in
            ("total_seconds", "wall_seconds", "workers", "num_threads")}, "sum_run_wall_s": train_s}, losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--budgets", type=float, nargs="+", default=[3e10, 1e11])
    ap.add_argument("--full", action="store_true", help="the README demo's budgets 3e10, 1e11, 3e11")
    args = ap.parse_args()
    budgets = [3e10, 1e11, 3e11] if args.full else args.budgets
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "usable_cores": cores, "load_average_1min_at_start": os.getloadavg()[0],
               "python": platform.python_version(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    print(f"machine: {machine['platform']}, {cores} cores, load {machine['load_average_1min_at_start']:.2f}; "
          f"budgets {budgets}")
    pairs, loss_auto, loss_serial = [], None, None
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            order = [("auto", "auto", None), ("serial_all_threads", 1, cores)]
            if i % 2:
                order.reverse()
            pair = {}
            for name, workers, threads in order:
                res, losses = sweep(os.path.join(tmp, f"{name}{i}"), budgets, workers, threads)
                pair[name] = res
                if name == "auto":
                    loss_auto = losses
                else:
                    loss_serial = losses
                print(f"pair {i}: {name:18s} {res['wall_s']:7.1f} s  ({res['execution']['reason']})")
            pair["speedup"] = pair["serial_all_threads"]["wall_s"] / pair["auto"]["wall_s"]
            pairs.append(pair)
            print(f"pair {i}: speed-up x{pair['speedup']:.2f}")
        threads_auto = pairs[0]["auto"]["execution"]["threads_per_run"]
        same_threads, same_losses = sweep(os.path.join(tmp, "serial_same_threads"), budgets, 1, threads_auto)
    identical = same_losses == loss_auto
    worst = max(abs(loss_auto[k] - loss_serial[k]) / loss_serial[k] for k in loss_auto)
    med = statistics.median(p["speedup"] for p in pairs)
    print(f"median speed-up x{med:.2f} (target >= 1.6 on 2 cores)")
    print(f"losses: default vs one at a time with {threads_auto} thread(s): "
          f"{'bit-identical' if identical else 'DIFFERENT'}; vs all threads: largest relative difference {worst:.1e}")
    out = {"benchmark": "bench_concurrency", "machine": machine, "budgets": budgets, "pairs": pairs,
           "median_speedup": med, "serial_same_threads": same_threads,
           "losses_bit_identical_same_threads": identical, "losses_max_rel_diff_vs_all_threads": worst,
           "target_met": {"speedup_at_least_1.6": med >= 1.6, "bit_identical_same_threads": identical}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
