"""Trunk-and-branch against separate runs, on real training: the same (N, D) points of the built-in GPT on the
stdlib byte corpus trained three ways — design="branches", separate cosine runs, separate WSD runs — at a
short, a long and a longer run length (45 to 9,000 steps), one run at a time with one thread (so wall times
compare like with like), at the trainer's default peak LR (3e-3) and at the LR best for both schedules at
these sizes (1.2e-2; the default is too low for models this small, which favours WSD's longer time at the
peak).

    python benchmarks/bench_design_cost.py [--quick] [--lengths short long longer]

Prints, per run length: the FLOPs of the design against the same points as separate runs (the plan's own
accounting, and the records': trunks + branch_flops), the wall-time ratio, and the branch losses against
the separate cosine and WSD runs (median and largest relative difference). Targets (issue "Same certainty
for a fraction of the compute"): FLOPs <= 0.65x separate runs, losses within 2% of separate cosine runs
(median). Writes benchmarks/results/design_cost.json with the machine it ran on.
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

RESULTS = Path(__file__).parent / "results" / "design_cost.json"
MODEL_KWARGS = {"n_layers": 2, "head_dim": 8, "max_seq_len": 64}
# 3 sizes at each of 4 budgets (size_values pins them, so each size's trunk serves 4 points)
LENGTHS = {"short": ([6e9, 9e9, 1.2e10, 1.5e10], 16), "long": ([2.4e10, 3.6e10, 4.8e10, 6e10], 64),
           "longer": ([9.6e10, 1.44e11, 1.92e11, 2.4e11], 256)}
#: the trainer's default peak LR, and the best of 3e-3, 6e-3, 1.2e-2, 2.4e-2 for both schedules at these sizes
#: (measured on the short length: mean loss over the 12 points, separate cosine and separate WSD runs alike)
LRS = {"short": [3e-3, 1.2e-2], "long": [3e-3, 1.2e-2], "longer": [1.2e-2]}


def sweep(out: str, budgets: list[float], tpp: float, design: str, schedule: str, lr: float):
    import flops_fit as ff

    t0 = time.perf_counter()
    r = ff.find_optimal("gpt", model_kwargs=MODEL_KWARGS, dataset="stdlib", data_options={"seq_len": 64},
                        compute_budgets=budgets, size_values=[8, 16, 24], num_model_sizes=3, span_decades=0.35,
                        center_tokens_per_param=tpp, design=design, align_sizes=False,
                        train_config={"batch_size": 16, "val_units": 64 * 64, "num_threads": 1, "schedule": schedule,
                                      "lr": lr},
                        output_dir=out, resume=False, progress=False, workers=1, n_bootstrap=0)
    return r, time.perf_counter() - t0


def compare(branch, other) -> dict:
    o = {x.experiment_id: x.final_loss for x in other.records}
    rel = [x.final_loss / o[x.experiment_id] - 1 for x in branch.records]
    return {"median_rel_diff": statistics.median(rel), "max_abs_rel_diff": max(abs(v) for v in rel),
            "per_point": {x.experiment_id: v for x, v in zip(branch.records, rel)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the short run length only")
    ap.add_argument("--lengths", nargs="+", choices=list(LENGTHS), default=list(LENGTHS))
    args = ap.parse_args()
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cores": os.cpu_count(), "load_average_1min_at_start": os.getloadavg()[0],
               "python": platform.python_version(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    import torch

    machine["torch"] = torch.__version__
    print(f"machine: {machine['platform']}, {machine['cores']} cores, load {machine['load_average_1min_at_start']:.2f}")
    out: dict = {"benchmark": "bench_design_cost", "machine": machine, "lengths": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, lr in [(n, lr) for n in LENGTHS for lr in LRS[n]]:
            budgets, tpp = LENGTHS[name]
            if (args.quick and name != "short") or name not in args.lengths:
                continue
            br, t_br = sweep(f"{tmp}/{name}{lr}-br", budgets, tpp, "branches", "wsd", lr)
            cos, t_cos = sweep(f"{tmp}/{name}{lr}-cos", budgets, tpp, "separate", "cosine", lr)
            wsd, t_wsd = sweep(f"{tmp}/{name}{lr}-wsd", budgets, tpp, "separate", "wsd", lr)
            d = br.plan.design
            spent = sum(x.details["branch_flops"] for x in br.records) + d["flops"]["trunks"]
            row = {
                "lr": lr, "budgets": budgets, "points": len(br.records), "steps_per_run": [
                    min(x.details["steps"] for x in cos.records), max(x.details["steps"] for x in cos.records)],
                "flops_ratio_plan": d["flops"]["ratio"], "flops_ratio_records": spent / br.plan.total_flops,
                "wall_s": {"branches": t_br, "separate_cosine": t_cos, "separate_wsd": t_wsd},
                "wall_ratio_vs_cosine": t_br / t_cos,
                "vs_separate_cosine": compare(br, cos), "vs_separate_wsd": compare(br, wsd),
            }
            key = f"{name}@lr={lr:g}"
            out["lengths"][key] = row
            print(f"{key}: {row['points']} points, {row['steps_per_run'][0]}-{row['steps_per_run'][1]} steps per run; "
                  f"FLOPs ×{row['flops_ratio_plan']:.3f} of separate runs (records: ×{row['flops_ratio_records']:.3f}); "
                  f"wall {t_br:.0f} s vs {t_cos:.0f} s cosine (×{row['wall_ratio_vs_cosine']:.2f}); losses vs cosine: "
                  f"median {100 * row['vs_separate_cosine']['median_rel_diff']:+.2f}%, "
                  f"max |{100 * row['vs_separate_cosine']['max_abs_rel_diff']:.2f}|%; vs WSD: median "
                  f"{100 * row['vs_separate_wsd']['median_rel_diff']:+.2f}%, "
                  f"max |{100 * row['vs_separate_wsd']['max_abs_rel_diff']:.2f}|%")
    rows = out["lengths"].values()
    out["targets_met"] = {
        "flops_at_most_0.65x": all(r["flops_ratio_plan"] <= 0.65 for r in rows),
        "median_loss_within_2pct_of_cosine": {k: abs(r["vs_separate_cosine"]["median_rel_diff"]) <= 0.02
                                              for k, r in out["lengths"].items()},
    }
    print("targets:", out["targets_met"])
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
