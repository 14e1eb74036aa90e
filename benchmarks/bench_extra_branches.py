"""Extra cooldown branches on real training: the demo's sweep (the built-in GPT on stdlib, trunks and branches)
with extra_branches=0 and with k extra branches per gap between a size's budgets.

    python benchmarks/bench_extra_branches.py [--extra 2] [--threads 1]

Prints and records, per setting: the design's FLOPs against the same points as separate runs, the wall time,
how many runs Approach 3 fitted, the headline approach, N_opt and its 90% interval at the largest budget and
at 1000x it, and the interval of the exponent a (N_opt ∝ C^a); and whether the two settings' answers lie in
each other's intervals. Writes benchmarks/results/extra_branches.json with the machine it ran on.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "extra_branches.json"
DEMO = Path(__file__).parents[1] / "examples" / "demo.py"


def _demo():
    spec = importlib.util.spec_from_file_location("ff_demo", DEMO)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sweep(out: str, extra: int, threads: int | None) -> dict:
    demo = _demo()
    t0 = time.perf_counter()
    r = demo.real_sweep(out, extra_branches=extra, threads=threads, progress=False)
    wall = time.perf_counter() - t0
    top = max(demo.BUDGETS)
    row = {"extra_branches": extra, "wall_s": wall, "runs": len(r.records),
           "extra_runs": sum(bool(x.details.get("extra")) for x in r.records),
           "flops": r.plan.design["flops"], "approach_3_points": r.analysis.parametric.n_points,
           "headline": r.analysis.predict_with}
    for name, c in (("at_top", top), ("at_1000x", 1000 * top)):
        p = r.predict(c)
        row[name] = {"compute": c, "N_opt": p["optimal_params"], "N_opt_ci": p["optimal_params_ci"],
                     "exponent_a": p["exponent_a"], "exponent_a_ci": p["exponent_a_ci"],
                     "findings": [f.severity + ": " + f.message for f in p["findings"]]}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extra", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cores": os.cpu_count(), "python": platform.python_version(),
               "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in (0, args.extra):
            row = sweep(f"{tmp}/k{k}", k, args.threads)
            rows.append(row)
            for name in ("at_top", "at_1000x"):
                x = row[name]
                lo, hi = x["N_opt_ci"]
                print(f"extra_branches={k}: {row['runs']} runs ({row['extra_runs']} extra), FLOPs "
                      f"{row['flops']['total']:.3g} (×{row['flops']['ratio']:.2f} of separate runs), {row['wall_s']:.0f} s; "
                      f"{row['headline']}; C={x['compute']:.3g}: N_opt {x['N_opt']:.4g} [{lo:.4g}, {hi:.4g}] "
                      f"(×{hi / lo:.2f}), a {x['exponent_a']:.3f} {x['exponent_a_ci']}", flush=True)
    a, b = rows
    agree = {}
    for name in ("at_top", "at_1000x"):
        (alo, ahi), (blo, bhi) = a[name]["N_opt_ci"], b[name]["N_opt_ci"]
        agree[name] = {"each_inside_the_other": alo <= b[name]["N_opt"] <= ahi and blo <= a[name]["N_opt"] <= bhi,
                       "width_ratio": (bhi / blo) / (ahi / alo)}
    out = {"benchmark": "bench_extra_branches", "machine": machine, "rows": rows, "comparison": agree,
           "flops_ratio": b["flops"]["total"] / a["flops"]["total"], "wall_ratio": b["wall_s"] / a["wall_s"]}
    print(json.dumps({"comparison": agree, "flops_ratio": out["flops_ratio"], "wall_ratio": out["wall_ratio"]},
                     indent=1))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
