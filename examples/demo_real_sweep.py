"""A real IsoFLOP sweep: the built-in GPT on the Python standard library's source, byte-level.

Sized to finish in under 10 minutes on 2 CPU cores (and to use a GPU when
there is one). Prints the plan with its estimated wall time, trains every run,
then the per-budget parabola fits (Chinchilla Approach 2) and the wall time
and throughput.

    python examples/demo_real_sweep.py [--out runs/demo-real] [--budgets 3e10 1e11 3e11]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from flops_fit.analysis.isoflop import fit_budget
from flops_fit.data import load_corpus
from flops_fit.models import GPT, causal_lm_loss
from flops_fit.planning import PlanSettings, plan_sweep
from flops_fit.training.checkpoint import cleanup_checkpoints
from flops_fit.training.cost import estimate_cost
from flops_fit.training.executors import get_executor
from flops_fit.training.local import check_data_contract, make_run_fn
from flops_fit.training.store import ResultsStore, records_to_dataframe
from flops_fit.training.sweep import run_sweep
from flops_fit.training.trainer import TrainConfig

# Tuned settings: 3 of 3 IsoFLOP minima inside the sampled range, ~410 s on a loaded 2-core CPU with 1 thread
# (benchmarks/results/demo_real_sweep.json).
BUDGETS = [3e10, 1e11, 3e11]
SIZE_MULTIPLE, SIZE_MIN, SIZE_MAX = 8, 8, 256  # d_model: multiples of head_dim in [8, 256]
MODEL_KWARGS = {"n_layers": 2, "head_dim": 8, "max_seq_len": 64}
SEQ_LEN = 64
BATCH_SIZE = 16  # 1,024 tokens per step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/demo-real")
    ap.add_argument("--budgets", type=float, nargs="+", default=BUDGETS)
    ap.add_argument("--sizes", type=int, default=5, help="model sizes per budget")
    ap.add_argument("--span", type=float, default=0.5, help="decades of N each side of the centre guess")
    ap.add_argument("--tokens-per-param", type=float, default=60.0,
                    help="centre guess of D/N (tiny byte-level models are optimal well above 20)")
    ap.add_argument("--executor", default="local")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    t0 = time.perf_counter()

    corpus = load_corpus("stdlib", tokenizer="byte")
    train, val = corpus.dataset("train", SEQ_LEN), corpus.dataset("validation", SEQ_LEN)
    kwargs = {**MODEL_KWARGS, "vocab_size": corpus.vocab_size}
    cfg = TrainConfig(batch_size=BATCH_SIZE, val_units=256 * SEQ_LEN, num_threads=args.threads)
    info = check_data_contract(GPT, "d_model", kwargs, SIZE_MIN, train, causal_lm_loss, cfg)

    def count(d: int) -> int:
        with torch.device("meta"):
            return GPT(d_model=d, **kwargs).num_params()

    settings = PlanSettings(
        num_model_sizes=args.sizes, span_decades=args.span, center_tokens_per_param=args.tokens_per_param,
        size_multiple=SIZE_MULTIPLE, size_min=SIZE_MIN, size_max=SIZE_MAX, units_per_step=BATCH_SIZE * SEQ_LEN, min_steps=50,
    )
    plan = plan_sweep(sorted(args.budgets), count, size_param="d_model", model_name="GPT",
                      model_kwargs=kwargs, settings=settings)
    plan.cost_estimate = estimate_cost(plan, GPT, "d_model", kwargs, train, causal_lm_loss, cfg)
    print(plan.summary())
    out.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(out / "results.json", plan.fingerprint())  # refuses another plan's results first
    plan.save(out / "sweep.json")

    run = make_run_fn(model_factory=GPT, size_param="d_model", model_kwargs=kwargs, dataset=train,
                      loss_fn=causal_lm_loss, train_config=cfg, output_dir=out, seed=args.seed,
                      val_dataset=val, data_info=info)
    t_train = time.perf_counter()
    run_sweep(plan, run, store, executor=get_executor(args.executor))
    cleanup_checkpoints(out, store.done_ids())
    wall_train = time.perf_counter() - t_train

    df = records_to_dataframe(store.records)
    recs = {r.experiment_id: r for r in store.records}
    df["units_per_s"] = [recs[i].details.get("units_per_s", math.nan) for i in df.experiment_id]
    print(df[["compute_budget", "size_value", "N", "D", "loss", "status", "wall_time_s", "units_per_s"]]
          .to_string(index=False))
    ok = df[df.status == "completed"]
    fits = []
    for c, g in ok.groupby("compute_budget"):
        f = fit_budget(float(c), g.N.to_numpy(), g.loss.to_numpy())
        fits.append(f)
        flag = "inside" if f.in_range else "OUTSIDE"
        print(f"C={c:.2e}: N_opt={f.n_opt:,.0f} D_opt={f.d_opt:,.0f} loss={f.loss_opt:.4f} "
              f"(vertex {flag} the sampled range) {f.warning}")
    inside = sum(f.in_range for f in fits)
    tokens = float((ok.D).sum())
    summary = {
        "budgets": plan.budgets,
        "size_values": [e.size_value for e in plan.runnable],
        "model_kwargs": kwargs,
        "seq_len": SEQ_LEN,
        "batch_size": BATCH_SIZE,
        "runs": len(df),
        "minimum_inside_range": f"{inside} of {len(fits)} budgets",
        "wall_time_total_s": time.perf_counter() - t0,
        "wall_time_training_s": wall_train,
        "estimated_s": plan.cost_estimate["total_seconds"],
        "tokens_trained": tokens,
        "mean_tokens_per_s": tokens / max(1e-9, float(ok.wall_time_s.sum())),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpu_threads": torch.get_num_threads(), "device": plan.cost_estimate["device"],
                    "processor": platform.processor() or platform.machine()},
        "optima": [{"C": f.compute_budget, "N_opt": f.n_opt, "loss": f.loss_opt, "in_range": f.in_range}
                   for f in fits],
    }
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=1))
    print(f"minimum inside the sampled range for {inside} of {len(fits)} budgets; "
          f"wall time {summary['wall_time_total_s']:.0f} s (estimated {summary['estimated_s']:.0f} s for training), "
          f"{summary['mean_tokens_per_s']:,.0f} tokens/s")


if __name__ == "__main__":
    main()
