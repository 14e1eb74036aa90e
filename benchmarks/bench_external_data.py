"""Benchmark: flops-fit's default answer against published values, on data nobody here made.

Per data set it prints the published figure beside ours (the default, i.e. the
approach the evidence picks, and both approaches), and writes
benchmarks/results/external_data.json with the machine it ran on:

1. Chinchilla / Epoch AI (240 points; Besiroglu et al. 2024): Epoch's re-fit of
   L(N, D) against our Approach 3 (lbfgs and vpnls), and the compute-optimal N the
   Epoch fit implies at Chinchilla's 5.76e23 FLOPs against our default.
2. Llama 3 (133 IsoFLOP runs from Figure 2 of arXiv:2407.21783): the paper's
   D*(C) = 0.29·C^0.53 and its 402B / 16.55T at 3.8e25 FLOPs against ours.
3. Kaplan et al. (2020)'s law (another functional form), 1% noise, the default
   planner grid, 20 seeds: N_opt at 1000× the largest budget against the truth.

    python benchmarks/bench_external_data.py [--n-bootstrap 1000] [--seeds 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import flops_fit as ff
from flops_fit.analysis.data_io import LLAMA3_PUBLISHED, KaplanLaw, synthetic_isoflop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_parametric_fit import EPOCH, _machine

OUT = Path(__file__).resolve().parent / "results" / "external_data.json"
CHINCHILLA_C = 5.76e23  # Gopher's budget, the one the Chinchilla paper allocates


def law_n_opt(p: dict, c: float) -> float:
    a = p["beta"] / (p["alpha"] + p["beta"])
    g = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    return g * (c / 6) ** a


def both(res: ff.Result, c: float) -> dict:
    out = {"default_approach": res.predict_with}
    for ap in ("approach_2", "approach_3"):
        try:
            p = res.predict(c, ap)
        except ValueError:
            continue
        out[ap] = {"N_opt": p["optimal_params"], "N_opt_ci": p["optimal_params_ci"], "D_opt": p["optimal_tokens"]}
    d = res.predict(c)
    out["default"] = {"N_opt": d["optimal_params"], "N_opt_ci": d["optimal_params_ci"], "D_opt": d["optimal_tokens"],
                      "findings": [f.to_dict() for f in d["findings"]]}
    return out


def chinchilla(n_boot: int) -> dict:
    data = ff.load_chinchilla(drop_highest_loss=5)
    lb, vp = ff.fit_parametric(data), ff.fit_parametric(data, method="vpnls")
    res = ff.analyze(data, n_bootstrap=n_boot)
    pub_n = law_n_opt(EPOCH, CHINCHILLA_C)
    ours = both(res, CHINCHILLA_C)
    print(f"Chinchilla / Epoch AI, {len(data)} points")
    print(f"  {'':8} {'Epoch':>10} {'lbfgs':>10} {'vpnls':>10}")
    for k in ("E", "A", "B", "alpha", "beta"):
        print(f"  {k:8} {EPOCH[k]:>10.4g} {getattr(lb, k):>10.4g} {getattr(vp, k):>10.4g}")
    print(f"  N_opt at {CHINCHILLA_C:.3g}: Epoch fit {pub_n / 1e9:.1f}B, ours (default, {res.predict_with}) "
          f"{ours['default']['N_opt'] / 1e9:.1f}B (ratio {ours['default']['N_opt'] / pub_n:.3f})")
    return {"n_points": len(data), "published": EPOCH, "published_N_opt": pub_n,
            "lbfgs": {k: getattr(lb, k) for k in EPOCH}, "vpnls": {k: getattr(vp, k) for k in EPOCH},
            "at": CHINCHILLA_C, "ours": ours, "ratio_default_to_published": ours["default"]["N_opt"] / pub_n}


def llama3(n_boot: int) -> dict:
    res = ff.analyze(ff.load_llama3(), n_bootstrap=n_boot)
    pub = LLAMA3_PUBLISHED
    ours = both(res, pub["compute"])
    d_fit = res.analysis.isoflop.d_opt_fit
    print(f"Llama 3, {len(res.analysis.table)} IsoFLOP runs, {len(res.analysis.isoflop.optima)} budgets")
    print(f"  D_opt = k·C^b: paper {pub['D_coefficient']}·C^{pub['D_exponent']}, "
          f"ours (Approach 2) {d_fit.coefficient_k:.3f}·C^{d_fit.exponent_a:.3f}")
    for name in ("default", "approach_2", "approach_3"):
        o = ours[name]
        print(f"  N_opt at {pub['compute']:.2g}: paper {pub['N_opt'] / 1e9:.0f}B, {name:10} {o['N_opt'] / 1e9:6.0f}B "
              f"(ratio {o['N_opt'] / pub['N_opt']:.2f}); D_opt {o['D_opt'] / 1e12:.2f}T vs {pub['D_opt'] / 1e12}T")
    print(f"  default = {res.predict_with}: {res.analysis.evidence.reason}")
    return {"published": pub, "ours": ours, "D_fit": {"k": d_fit.coefficient_k, "b": d_fit.exponent_a},
            "reason": res.analysis.evidence.reason,
            "ratio_default_to_published": ours["default"]["N_opt"] / pub["N_opt"]}


def kaplan(n_boot: int, seeds: int) -> dict:
    law, budgets = KaplanLaw(), [1e17, 1e18, 1e19, 1e20, 1e21]
    target = 1000 * budgets[-1]
    truth = law.n_opt(target)
    rows = []
    for seed in range(seeds):
        df = synthetic_isoflop(law=law, budgets=budgets, noise=0.01, seed=seed).rename(
            columns={"budget": "compute_budget"})
        res = ff.analyze(df[["compute_budget", "N", "D", "loss"]], n_bootstrap=n_boot, seed=seed)
        p = {ap: res.predict(target, ap) for ap in ("approach_2", "approach_3")}
        d = res.predict(target)
        lo, hi = d["optimal_params_ci"] or (float("nan"),) * 2
        rows.append({"seed": seed, "default": res.predict_with, "ratio_default": d["optimal_params"] / truth,
                     "ratio_approach_2": p["approach_2"]["optimal_params"] / truth,
                     "ratio_approach_3": p["approach_3"]["optimal_params"] / truth,
                     "ci_covers_truth": bool(lo <= truth <= hi),
                     "flagged": any(f.severity == "disagree" or f.code == "not_informative"
                                    for f in d["findings"] + res.analysis.findings)})
    within = sum(1 / 1.5 <= r["ratio_default"] <= 1.5 for r in rows)
    med = {k: statistics.median(r[k] for r in rows) for k in ("ratio_default", "ratio_approach_2", "ratio_approach_3")}
    cover = sum(r["ci_covers_truth"] for r in rows)
    print(f"Kaplan et al. law, {seeds} seeds, N_opt at {target:.0e} vs truth {truth:.3g}:")
    print(f"  default within 1.5x: {within}/{seeds}; median ratio default {med['ratio_default']:.2f}, "
          f"Approach 2 {med['ratio_approach_2']:.2f}, Approach 3 {med['ratio_approach_3']:.2f}; "
          f"90% interval covers the truth in {cover}/{seeds}; "
          f"outside 1.5x and unflagged: {sum(not (1 / 1.5 <= r['ratio_default'] <= 1.5) and not r['flagged'] for r in rows)}")
    return {"truth": truth, "target": target, "within_1_5x": within, "seeds": seeds, "median_ratios": med,
            "interval_covers_truth": cover, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-bootstrap", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    machine = _machine()
    print(f"machine: {machine['platform']}, {machine['usable_cores']} usable cores")
    t0 = time.perf_counter()
    out = {
        "benchmark": "external_data",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "n_bootstrap": args.n_bootstrap,
        "chinchilla_epoch": chinchilla(args.n_bootstrap),
        "llama3": llama3(args.n_bootstrap),
        "kaplan_law": kaplan(min(args.n_bootstrap, 200), args.seeds),
    }
    out["wall_s"] = time.perf_counter() - t0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(f"wrote {OUT} ({out['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
