"""The prepared GPU check (issue "Use the whole machine"): run once where a CUDA device is lent, in <= 5 minutes.

Prints every figure and writes benchmarks/results/gpu_check.json:

1. the README demo's sweep (built-in GPT, stdlib bytes) in bf16 on the GPU: wall time, the plan's
   estimate against it, the fitted exponent a and how many budgets bracket their optimum;
2. one mid-size GPT run (d_model 1024, 8 layers, seq 512) for achieved FLOP/s and MFU
   (6·N·tokens per second over the device's dense bf16 peak, from --peak-tflops or a table);
3. k tiny runs packed on the device (workers=k, one process each) against the same runs one at a time
   (the plan's execution reason says whether CUDA MPS was running);
4. the same tiny runs with TrainConfig(compile="reduce-overhead") (CUDA graphs) against eager: tokens/s
   of the training loop (compilation included), wall time and the losses.

    python benchmarks/gpu_check.py [--k 4] [--peak-tflops 989] [--skip-demo]

No test depends on this script; CI has no GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "gpu_check.json"
#: dense bf16 tensor-core peaks in TFLOP/s (vendor datasheets, without sparsity)
PEAKS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "RTX 4090": 165.0}


def peak_tflops(name: str, given: float | None) -> float | None:
    if given:
        return given
    return next((v for k, v in PEAKS.items() if k.lower() in name.lower()), None)


def demo(out: str) -> dict:
    import flops_fit as ff

    t0 = time.perf_counter()
    r = ff.find_optimal("gpt", model_kwargs={"n_layers": 2, "head_dim": 8, "max_seq_len": 64}, dataset="stdlib",
                        data_options={"seq_len": 64}, compute_budgets=[3e10, 1e11, 3e11], num_model_sizes=5,
                        span_decades=0.5, center_tokens_per_param=60, size_min=8, size_max=256,
                        train_config={"batch_size": 16, "val_units": 256 * 64, "device": "cuda", "dtype": "bf16"},
                        output_dir=out, progress=False, n_bootstrap=200)
    wall = time.perf_counter() - t0
    est = r.plan.cost_estimate or {}
    iso = r.analysis.isoflop
    p = r.predict(r.analysis.budgets[-1])
    return {"wall_s": wall, "estimate_s": est.get("wall_seconds", est.get("total_seconds")),
            "sum_run_wall_s": sum(x.wall_time_s for x in r.records), "runs": len(r.records),
            "bracketed": f"{sum(o.in_range for o in iso.optima)} of {len(iso.optima)}" if iso else None,
            "execution": r.plan.execution, "a": p.get("a"), "predict_with": r.predict_with}


def mfu(peak: float | None, steps: int = 30) -> dict:
    from flops_fit.models import GPT, causal_lm_loss

    torch.manual_seed(0)
    seq, batch = 512, 16
    model = GPT(d_model=1024, n_layers=8, vocab_size=256, max_seq_len=seq, head_dim=64).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    x = torch.randint(0, 256, (batch, seq + 1), device="cuda")
    batch_d = {"input_ids": x[:, :-1], "labels": x[:, 1:]}

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = causal_lm_loss(model(batch_d["input_ids"]), batch_d)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    n = model.num_params() if hasattr(model, "num_params") else sum(p.numel() for p in model.parameters())
    flops = 6.0 * n * batch * seq * steps / dt
    return {"num_params": int(n), "tokens_per_s": batch * seq * steps / dt, "achieved_tflops": flops / 1e12,
            "peak_tflops": peak, "mfu": None if not peak else flops / 1e12 / peak}


def _tiny_sweep(out: str, budgets: list[float], num_sizes: int, *, workers: int = 1, compile: bool | str = False,
                device: str = "cuda"):
    """The tiny GPT sweep parts 3 and 4 time: (its Result, wall seconds)."""
    import flops_fit as ff

    t0 = time.perf_counter()
    r = ff.find_optimal("gpt", model_kwargs={"n_layers": 2, "head_dim": 8, "max_seq_len": 64}, dataset="stdlib",
                        data_options={"seq_len": 64}, compute_budgets=budgets, num_model_sizes=num_sizes,
                        span_decades=0.5, center_tokens_per_param=60, size_min=8, size_max=128,
                        train_config={"batch_size": 16, "val_units": 64 * 64, "device": device, "dtype": "bf16",
                                      "compile": compile},
                        output_dir=out, progress=False, workers=workers, n_bootstrap=0, estimate_cost=False)
    return r, time.perf_counter() - t0


def packed(k: int, out: str) -> dict:
    res = {}
    for workers in (1, k):
        r, wall = _tiny_sweep(os.path.join(out, f"w{workers}"), [1e10, 3e10], 4, workers=workers)
        res[f"workers_{workers}"] = {"wall_s": wall, "runs": len(r.records), "execution": r.plan.execution,
                                     "losses": {x.experiment_id: x.final_loss for x in r.records}}
    res["speedup"] = res["workers_1"]["wall_s"] / res[f"workers_{k}"]["wall_s"]
    return res


def compiled(out: str) -> dict:
    import statistics

    res = {}
    for mode in (False, "reduce-overhead"):
        r, wall = _tiny_sweep(os.path.join(out, f"compile_{mode}"), [1e10, 3e10], 4, compile=mode)
        res[str(mode)] = {"wall_s": wall,
                          "median_units_per_s": statistics.median(x.details["units_per_s"] for x in r.records),
                          "losses": {x.experiment_id: x.final_loss for x in r.records}}
    res["units_per_s_ratio"] = res["reduce-overhead"]["median_units_per_s"] / res["False"]["median_units_per_s"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--skip-demo", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing to check")
    name = torch.cuda.get_device_name(0)
    out: dict = {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
                 "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    print(f"device: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    with tempfile.TemporaryDirectory() as tmp:
        out["mfu"] = mfu(peak_tflops(name, args.peak_tflops))
        m = out["mfu"]
        print(f"mid-size GPT (N={m['num_params']:,}): {m['tokens_per_s']:,.0f} tok/s, {m['achieved_tflops']:.1f} TFLOP/s"
              + (f", MFU {m['mfu']:.1%} of {m['peak_tflops']:.0f}" if m["mfu"] else ""))
        out["packed"] = packed(args.k, tmp)
        pk = out["packed"]
        print(f"tiny runs: one at a time {pk['workers_1']['wall_s']:.1f} s, {args.k} packed "
              f"{pk[f'workers_{args.k}']['wall_s']:.1f} s (x{pk['speedup']:.2f})")
        out["compile"] = compiled(tmp)
        cp = out["compile"]
        print(f"tiny runs, compile='reduce-overhead' vs eager: x{cp['units_per_s_ratio']:.2f} tokens/s "
              f"(wall {cp['reduce-overhead']['wall_s']:.1f} s vs {cp['False']['wall_s']:.1f} s)")
        if not args.skip_demo:
            out["demo"] = demo(os.path.join(tmp, "demo"))
            d = out["demo"]
            print(f"demo sweep (bf16): {d['wall_s']:.0f} s (estimate {d['estimate_s']}), {d['runs']} runs, "
                  f"bracketed {d['bracketed']}, a={d['a']}, headline {d['predict_with']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
