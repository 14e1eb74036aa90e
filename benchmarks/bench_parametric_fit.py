"""Benchmark: Approach 3 on Epoch AI's 240 Chinchilla points.

Times, in one process:
1. flops-fit's full fit (4,500-start grid scored in numpy, L-BFGS-B with analytic
   gradients from the best ``DEFAULT_N_BEST_STARTS``), repeated;
2. the same with L-BFGS-B from *all* 4,500 starts (checks that the best-K shortcut
   loses nothing);
3. a reference: scipy L-BFGS-B with finite-difference gradients and default
   settings, start by start, on a seeded random subset of the grid, scaled to 4,500;
4. a 1,000-resample bootstrap (batched Newton, all resamples at once);
5. ``method="vpnls"`` (variable projection), its objective and parameters;
6. the bootstrap against the tolerance-matched reference (the previous method: one
   L-BFGS-B refit per resample from the same warm starts, serial) on Chinchilla's
   240 points, on a 15-run mock sweep and on the demo's 14 real runs
   (tests/analysis/fixtures/demo_sweep_14.json): time, intervals and, per resample,
   whether the batched fit is at least as good as the reference's; and ``Result.load``
   of the mock sweep (which reuses the stored samples).

Targets (2 CPU cores): full fit < 2 s; 1,000-resample bootstrap <= 2 s on every data
set, with intervals equal to the reference's to 3 significant digits where E is pinned
(Chinchilla, the mock sweep; on the demo's runs a sixth of the resamples have their
optimum at E -> 0, where the reference's L-BFGS-B stops early, so there every resample's
fit is compared instead); Result.load < 1 s; objective no worse than the
finite-difference reference's.
Writes benchmarks/results/parametric_fit.json.

    python benchmarks/bench_parametric_fit.py [--reference-starts 100] [--skip-all-starts]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy
from scipy.optimize import minimize

from flops_fit.analysis.bootstrap import bootstrap_parametric
from flops_fit.analysis.data_io import load_chinchilla
from flops_fit.analysis.parametric import (
    DEFAULT_N_BEST_STARTS,
    chinchilla_grid,
    fit_parametric,
    huber_log_objective,
    single_thread_blas,
    solve,
)

EPOCH = {"E": 1.817, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
OUT = Path(__file__).resolve().parent / "results" / "parametric_fit.json"


def _machine() -> dict:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cores": cores,
        "load_average_1min_at_start": load,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _params(fit) -> dict:
    return {k: float(getattr(fit, k)) for k in ("E", "A", "B", "alpha", "beta", "a", "b")}


def _versus_reference(df, n_resamples: int) -> dict:
    """The batched bootstrap against one L-BFGS-B refit per resample from the same starts (the previous method)."""
    from flops_fit.analysis.bootstrap import _params_from_theta, _refit_chunk, _warm_starts, bootstrap_indices
    from flops_fit.analysis.parametric import PARAM_NAMES, _weighted_terms

    fit = fit_parametric(df)
    t0 = time.perf_counter()
    bs = bootstrap_parametric(df, n_resamples=n_resamples, seed=0, fit=fit, confidence=0.9)
    t_new = time.perf_counter() - t0
    kept = df.drop(index=[p.index for p in fit.excluded])
    lN, lD, lL = (np.log(kept[c].to_numpy(float)) for c in ("N", "D", "loss"))
    groups = kept["budget"].to_numpy() if "budget" in kept.columns else len(kept)
    idx = np.stack(list(bootstrap_indices(groups, n_resamples, 0)))
    t0 = time.perf_counter()
    th, _ = _refit_chunk((lN, lD, lL, idx, _warm_starts(fit, lN, lD, 3), "lbfgs", fit.huber_delta))
    t_ref = time.perf_counter() - t0
    ref_all = _params_from_theta(th)
    ref = ref_all[np.all(np.isfinite(ref_all), axis=1)]
    # each resample's fit quality, batched against reference (the same weights, the same objective)
    W = np.zeros((n_resamples, len(kept)))
    np.add.at(W, (np.arange(n_resamples)[:, None], idx), 1.0)

    def objective(p):  # the solvers' own weighted Huber objective, at (log A, log B, log E, alpha, beta)
        theta = np.column_stack([np.log(p[:, 1]), np.log(p[:, 2]), np.log(p[:, 0]), p[:, 3], p[:, 4]])
        return _weighted_terms(theta, W, lN, lD, lL, fit.huber_delta, hessian=False)

    f_new, f_ref = objective(bs.samples), objective(ref_all)
    no_worse = float(np.mean(f_new <= f_ref + 1e-12 * np.maximum(1.0, f_ref))) if len(bs.samples) == n_resamples \
        else None
    at_zero_e = float(np.mean(bs.samples[:, 0] < 1e-12))
    rows, worst = {}, 0.0
    for name in ("E", "alpha", "beta", "a", "b"):
        j = PARAM_NAMES.index(name)
        lo, hi = np.quantile(ref[:, j], [0.05, 0.95])
        new = bs.interval(name, 0.9)
        rel = max(abs(new[0] - lo) / abs(lo), abs(new[1] - hi) / abs(hi))
        worst = max(worst, rel)
        rows[name] = {"batched": list(new), "reference": [float(lo), float(hi)], "relative_difference": rel}
    print(f"bootstrap {len(kept)} points x {n_resamples}: batched {t_new:.2f} s (restarted {bs.n_restarted}), "
          f"reference {t_ref:.1f} s (x{t_ref / t_new:.0f}); largest interval difference {worst:.1e}; "
          f"fit no worse than the reference's in {no_worse:.1%} of resamples; E at 0 in {at_zero_e:.1%}")
    return {"points": int(len(kept)), "seconds_batched": t_new, "seconds_reference_serial": t_ref,
            "n_restarted": bs.n_restarted, "n_not_converged": bs.n_not_converged,
            "share_objective_no_worse_than_reference": no_worse, "share_E_at_zero": at_zero_e,
            "intervals_90": rows, "max_relative_difference": worst}


def _mock_sweep_and_load(n_bootstrap: int):
    """A 15-run mock sweep (3 budgets x 5 sizes), its runs table, and how long Result.load takes."""
    import tempfile

    import pandas as pd

    import flops_fit as ff

    class Toy:
        def __init__(self, d_model: int) -> None:
            self.d_model = d_model

        def num_params(self) -> int:
            return 12 * 4 * self.d_model**2 + 256 * self.d_model

    with tempfile.TemporaryDirectory() as tmp:
        r = ff.find_optimal(Toy, "d_model", mode="mock", output_dir=tmp, progress=False, n_bootstrap=n_bootstrap,
                            compute_budgets=[1e15, 1e16, 1e17], num_model_sizes=5)
        t0 = time.perf_counter()
        ff.Result.load(tmp)
        t_load = time.perf_counter() - t0
    rows = [{"N": x.num_params, "D": x.num_tokens, "loss": x.final_loss, "budget": x.compute_budget}
            for x in r.records if x.ok]
    return pd.DataFrame(rows), t_load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference-starts", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--skip-all-starts", action="store_true", help="skip the all-4,500-starts check (~1 min)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    machine = _machine()
    df = load_chinchilla(drop_highest_loss=5)
    lN, lD, lL = (np.log(df[c].to_numpy(float)) for c in ("N", "D", "loss"))
    grid = chinchilla_grid()
    delta = 1e-3
    print(f"machine: {machine['platform']}, {machine['usable_cores']} usable cores, load {machine['load_average_1min_at_start']}")

    # 1. flops-fit full fit --------------------------------------------------
    fit_parametric(df)  # warm-up: imports, first-call costs
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fit = fit_parametric(df)
        times.append(time.perf_counter() - t0)
    print(f"full fit ({grid.shape[0]} starts scored, L-BFGS-B from best {DEFAULT_N_BEST_STARTS}): "
          f"median {statistics.median(times):.3f} s, min {min(times):.3f} s; objective {fit.objective:.10g}")
    print(f"  E={fit.E:.4f} A={fit.A:.1f} B={fit.B:.1f} alpha={fit.alpha:.4f} beta={fit.beta:.4f}")

    # 2. all 4,500 starts, analytic gradients -----------------------------------
    all_starts = None
    if not args.skip_all_starts:
        t0 = time.perf_counter()
        sol = solve(lN, lD, lL, method="lbfgs", delta=delta, starts=grid, n_best=grid.shape[0])
        t_all = time.perf_counter() - t0
        all_starts = {
            "seconds": t_all,
            "objective": sol.objective,
            "best_k_objective_minus_all": fit.objective - sol.objective,
            "alpha": float(sol.theta[3]),
            "beta": float(sol.theta[4]),
        }
        print(f"all {grid.shape[0]} starts (analytic): {t_all:.1f} s, objective {sol.objective:.10g} "
              f"(best-K minus all: {fit.objective - sol.objective:+.3g})")

    # 3. reference: finite differences, start by start -------------------------
    rng = np.random.default_rng(0)
    subset = grid[rng.choice(grid.shape[0], size=args.reference_starts, replace=False)]
    fun = lambda th: huber_log_objective(th, lN, lD, lL, delta)[0]
    ref_best = np.inf
    ref_x = None
    t0 = time.perf_counter()
    with single_thread_blas():  # the same BLAS setting, so the comparison is of the methods
        for th in subset:
            r = minimize(fun, th, method="L-BFGS-B")
            if np.isfinite(r.fun) and r.fun < ref_best:
                ref_best, ref_x = float(r.fun), r.x
    t_ref = time.perf_counter() - t0
    t_ref_scaled = t_ref * grid.shape[0] / args.reference_starts
    print(f"reference (finite-difference L-BFGS-B, {args.reference_starts} random starts): {t_ref:.1f} s "
          f"-> {t_ref_scaled:.0f} s scaled to {grid.shape[0]}; best objective {ref_best:.10g}")

    # 4. bootstrap -------------------------------------------------------------
    t0 = time.perf_counter()
    bs = bootstrap_parametric(df, n_resamples=args.resamples, seed=0, fit=fit, targets=[1e21, 5.76e23])
    t_bs = time.perf_counter() - t0
    intervals = {k: list(bs.interval(k)) for k in ("E", "A", "B", "alpha", "beta", "a", "b")}
    print(f"bootstrap ({args.resamples} resamples, all cores): {t_bs:.1f} s; failed {bs.n_failed}, "
          f"not converged {bs.n_not_converged}")
    for k in ("alpha", "beta", "E"):
        print(f"  95% {k}: {intervals[k][0]:.4f} - {intervals[k][1]:.4f}")

    # 5. vpnls -----------------------------------------------------------------
    fit_parametric(df, method="vpnls")
    vtimes = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        vfit = fit_parametric(df, method="vpnls")
        vtimes.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    vbs = bootstrap_parametric(df, n_resamples=args.resamples, seed=0, fit=vfit, method="vpnls")
    t_vbs = time.perf_counter() - t0
    print(f"vpnls: median {statistics.median(vtimes):.3f} s; SSE(relative) {vfit.objective:.6g}, "
          f"summed Huber {vfit.huber_objective:.10g} (lbfgs: {fit.huber_objective:.10g})")
    print(f"  E={vfit.E:.4f} A={vfit.A:.1f} B={vfit.B:.1f} alpha={vfit.alpha:.4f} beta={vfit.beta:.4f}; "
          f"bootstrap {t_vbs:.1f} s")

    # 6. bootstrap vs the tolerance-matched reference; Result.load ------------------
    versus = {"chinchilla_240": _versus_reference(df, args.resamples)}
    sweep_df, t_load = _mock_sweep_and_load(args.resamples)
    versus["mock_sweep_15"] = _versus_reference(sweep_df, args.resamples)
    print(f"Result.load of the 15-run mock sweep (stored samples): {t_load:.2f} s")
    # a real 14-run sweep (the demo's runs; tests/analysis/fixtures has its provenance): E is not pinned, so a
    # quarter of the resamples have their optimum at E -> 0, where the reference's L-BFGS-B stops early
    demo = json.loads((Path(__file__).parent.parent / "tests" / "analysis" / "fixtures" / "demo_sweep_14.json")
                      .read_text())
    versus["demo_sweep_14"] = _versus_reference(pd.DataFrame(demo["runs"]), args.resamples)

    targets_met = {
        "full_fit_under_2s": statistics.median(times) < 2.0,
        "bootstrap_under_2s": all(v["seconds_batched"] <= 2.0 for v in versus.values()),
        # where E is pinned (Chinchilla, the mock sweep); on the demo's runs the reference stops early in E's
        # flat valley, so there the batched fits are checked to fit every resample at least as well instead
        "intervals_equal_to_3_digits": all(versus[k]["max_relative_difference"] <= 1e-3
                                           for k in ("chinchilla_240", "mock_sweep_15")),
        "demo_sweep_fits_no_worse_than_reference": (versus["demo_sweep_14"]["share_objective_no_worse_than_reference"]
                                                    or 0) >= 0.98,
        "result_load_under_1s": t_load < 1.0,
        "objective_no_worse_than_reference": fit.objective <= ref_best * (1 + 1e-9),
    }
    result = {
        "benchmark": "bench_parametric_fit",
        "data": "Epoch AI Chinchilla SVG extraction, 240 points (5 highest-loss dropped)",
        "machine": machine,
        "full_fit": {
            "method": "lbfgs",
            "grid_starts": int(grid.shape[0]),
            "lbfgs_starts": DEFAULT_N_BEST_STARTS,
            "seconds_median": statistics.median(times),
            "seconds_all": times,
            "objective": fit.objective,
            "converged": fit.converged,
            "params": _params(fit),
            "epoch_ai_params": EPOCH,
        },
        "all_starts_analytic": all_starts,
        "reference_finite_difference": {
            "starts_timed": args.reference_starts,
            "seconds_timed": t_ref,
            "seconds_scaled_to_grid": t_ref_scaled,
            "best_objective": ref_best,
            "best_alpha": None if ref_x is None else float(ref_x[3]),
            "best_beta": None if ref_x is None else float(ref_x[4]),
            "speedup_full_fit_vs_scaled_reference": t_ref_scaled / statistics.median(times),
        },
        "bootstrap": {
            "n_resamples": args.resamples,
            "seconds": t_bs,
            "n_failed": bs.n_failed,
            "n_not_converged": bs.n_not_converged,
            "intervals_95": intervals,
            "epoch_ai_intervals_95": {"alpha": [0.317, 0.373], "beta": [0.331, 0.415], "E": [1.769, 1.871],
                                      "A": [285, 744], "B": [1042, 5810]},
        },
        "vpnls": {
            "seconds_median": statistics.median(vtimes),
            "objective_sse_relative": vfit.objective,
            "huber_objective": vfit.huber_objective,
            "lbfgs_huber_objective": fit.huber_objective,
            "converged": vfit.converged,
            "params": _params(vfit),
            "bootstrap_seconds": t_vbs,
            "bootstrap_intervals_95": {k: list(vbs.interval(k)) for k in ("E", "alpha", "beta", "a")},
        },
        "bootstrap_vs_reference": versus,
        "result_load_seconds": t_load,
        "targets_met": targets_met,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"targets: {targets_met}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
