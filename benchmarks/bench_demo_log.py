"""The README demo run the way `make demo > log.txt` runs it — output to a file, not a terminal — and its log
lines checked: one per finished run, each with FLOPs done and time left; the time left announced when half
the FLOPs are done against the time the sweep then really took.

    python benchmarks/bench_demo_log.py [--design separate|branches]

Target (issue "Fits a researcher's stack"): the time left at 50% of FLOPs within 2x of the real remaining
time. Also records the demo's answer (N_opt at 1e12 with its interval, the exponent, budgets bracketed) and
its cost estimate against its wall time, so that designs can be compared. Writes
benchmarks/results/demo_log_<design>.json with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^\[flops-fit\] (\d+)/(\d+) \S+: .*\| (\d+)% of FLOPs done, (\S+) elapsed, about (\S+) left")


def seconds(text: str) -> float:
    """'1m02s' / '3m' / '45s' / '1h02m' -> seconds."""
    total = 0.0
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)([hms])", text):
        total += float(value) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--design", default="separate")
    args = ap.parse_args()
    machine = {"platform": platform.platform(), "cores": os.cpu_count(), "python": platform.python_version(),
               "load_average_1min_at_start": os.getloadavg()[0], "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log.txt"
        t0 = time.perf_counter()
        with open(log, "w") as fh:  # not a terminal: what nohup and SLURM see
            proc = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--output-dir",
                                   f"{tmp}/demo", "--design", args.design], stdout=fh, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
        text = log.read_text()
        if proc.returncode != 0:
            raise SystemExit(text[-3000:])
        sys.path.insert(0, str(ROOT / "src"))
        import flops_fit as ff

        res = ff.Result.load(f"{tmp}/demo")
        lines = [m for m in map(LINE.match, text.splitlines()) if m]
        runs = len(res.records)
        half = next(m for m in lines if int(m.group(3)) >= 50)
        end = seconds(lines[-1].group(4))
        eta, real = seconds(half.group(5)), end - seconds(half.group(4))
        p = res.predict(1e12)
        est = res.plan.cost_estimate or {}
        out = {
            "benchmark": "bench_demo_log", "design": args.design, "machine": machine,
            "runs": runs, "log_lines": len(lines), "one_line_per_run": len(lines) == runs,
            "at_half": {"line": half.group(0), "eta_s": eta, "real_remaining_s": real,
                        "ratio": eta / real if real > 0 else None},
            "eta_within_2x": real > 0 and 0.5 <= eta / real <= 2.0,
            "wall_s": wall, "estimated_wall_s": est.get("wall_seconds"),
            "estimate_over_training_wall": (est.get("wall_seconds") or 0) / end if end else None,
            "compute_flops": (res.plan.design or {}).get("flops", {}).get("total", res.plan.total_flops),
            "separate_runs_flops": res.plan.total_flops,
            "answer": {"N_opt_1e12": p["optimal_params"], "N_opt_1e12_ci": p["optimal_params_ci"],
                       "exponent_a": p["exponent_a"], "exponent_a_ci": p["exponent_a_ci"],
                       "predict_with": res.predict_with,
                       "bracketed": sum(o.in_range for o in res.analysis.isoflop.optima)},
        }
    print(json.dumps({k: v for k, v in out.items() if k != "machine"}, indent=1))
    path = ROOT / "benchmarks" / "results" / f"demo_log_{args.design}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
