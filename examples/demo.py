"""The README demo: a real IsoFLOP sweep of the built-in GPT on built-in data, then the Chinchilla table.

The data is the running Python's standard-library source, byte-level (no
download). Sized to finish in under 10 minutes on 2 CPU cores; uses a GPU when
there is one. `--mock` runs the same pipeline on a seeded Chinchilla loss law in
seconds instead.

    python examples/demo.py [--output-dir outputs/demo] [--mock] [--design separate|branches] [--extra-branches K]
"""

from __future__ import annotations

import argparse
import json
import time

import flops_fit as ff

# Tuned so that every budget's IsoFLOP minimum falls inside its sampled sizes: tiny byte-level models
# are compute-optimal far above Chinchilla's 20 tokens/parameter, so the sweep is centred at 60.
BUDGETS = [3e10, 1e11, 3e11]
MODEL_KWARGS = {"n_layers": 2, "head_dim": 8, "max_seq_len": 64}
SEQ_LEN, BATCH_SIZE = 64, 16  # 1,024 tokens per optimizer step


def real_sweep(output_dir: str, *, design: str = "branches", extra_branches: int = 2, threads: int | None = None,
               resume: bool = True, progress: bool | None = None) -> ff.Result:
    """The demo's real sweep (benchmarks/bench_extra_branches.py runs it too, with and without extras)."""
    return ff.find_optimal(
        "gpt",
        model_kwargs=MODEL_KWARGS,
        dataset="stdlib",
        data_options={"seq_len": SEQ_LEN},
        compute_budgets=BUDGETS,
        num_model_sizes=5,
        span_decades=0.5,
        center_tokens_per_param=60,
        size_min=8,
        size_max=256,
        train_config={"batch_size": BATCH_SIZE, "val_units": 256 * SEQ_LEN, "num_threads": threads,
                      "progress": progress},
        output_dir=output_dir, design=design, extra_branches=extra_branches, resume=resume, progress=progress,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output-dir", default="outputs/demo")
    p.add_argument("--mock", action="store_true", help="seeded loss law instead of training (seconds)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all)")
    p.add_argument("--design", choices=["separate", "branches"], default="branches",
                   help="branches (default): one constant-LR trunk per size, every point a WSD cooldown branch "
                        "(the same answer within its intervals for ~0.8x the FLOPs, measured in "
                        "benchmarks/results/demo_log_*.json); separate: one run per point")
    p.add_argument("--extra-branches", type=int, default=None,
                   help="with branches: this many more cooldown branches per gap between a size's budgets, fitted by "
                        "Approach 3 (default 2: on the demo's real runs they narrow N_opt's interval at the top "
                        "budget from x2.77 to x1.70 for 1.22x the FLOPs, benchmarks/results/extra_branches.json)")
    p.add_argument("--fresh", action="store_true",
                   help="start over: move the results of an earlier demo aside (needed after an upgrade that "
                        "changes the demo's plan; otherwise a rerun resumes)")
    args = p.parse_args()
    extra = args.extra_branches if args.extra_branches is not None else (2 if args.design == "branches" else 0)
    t0 = time.perf_counter()
    if args.mock:
        result = ff.find_optimal("gpt", model_kwargs={"n_layers": 4, "vocab_size": 32000},
                                 min_flops=1e17, max_flops=1e21, num_budgets=5, mode="mock",
                                 output_dir=args.output_dir + "-mock", resume=not args.fresh)
    else:
        result = real_sweep(args.output_dir, design=args.design, extra_branches=extra, threads=args.threads,
                            resume=not args.fresh)
    wall = time.perf_counter() - t0
    print()
    print(result.summary())
    print(result.chinchilla_table())
    result.plot()
    runs = [r for r in result.records if r.ok]
    iso = result.analysis.isoflop
    inside = sum(o.in_range for o in iso.optima)
    line = {"wall_time_s": round(wall, 1), "runs": len(result.records),
            "minimum_inside_range": f"{inside} of {len(iso.optima)} budgets"}
    if not args.mock:
        tokens = sum(r.num_tokens for r in runs)
        line["tokens_per_s"] = round(tokens / max(1e-9, sum(r.wall_time_s for r in runs)))
    design = result.plan.design
    if design:
        fl = design["flops"]
        on_budget = [e for e in result.plan.runnable if not e.extra]
        alone = sum(e.flops for e in on_budget)  # the IsoFLOP points as separate runs: what a plain sweep costs
        line["compute_saved"] = f"{1 - fl['ratio']:.0%} of {fl['separate_runs']:.3g} FLOPs (trunks and branches)"
        print(f"design: trunks and cooldown branches spent {fl['total']:.3g} FLOPs, {1 - fl['ratio']:.0%} less than "
              f"the same {len(result.records)} points as separate runs ({fl['separate_runs']:.3g})"
              + (f"; {len(result.records) - len(on_budget)} of them are extra branches for Approach 3, and the whole "
                 f"design cost ×{fl['total'] / alone:.2f} of the {len(on_budget)} IsoFLOP points alone as separate "
                 f"runs ({alone:.3g})" if len(on_budget) < len(result.records) else ""))
    print(json.dumps(line))
    print(f"files: {result.output_dir}/{{sweep.json,results.json,analysis/scaling_laws.json,plots/*.png}}")


if __name__ == "__main__":
    main()
