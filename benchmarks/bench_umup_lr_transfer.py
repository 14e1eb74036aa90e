"""Does one learning rate transfer across widths with u-μP? A small LR sweep at two widths.

For the compact GPT (``flops_fit.models.gpt.GPT``) in its u-μP parametrisation and,
for contrast, in the standard parametrisation, train the same short run (byte-level
LM on source files of the running Python's standard library, no download) at every
learning rate of a grid spaced by factors of 2, at two widths, and report the best
learning rate per width: the grid minimum and the vertex of a parabola fitted to
validation loss vs log2(lr) around it. Target: for u-μP the best learning rates at
the two widths lie within a factor of 2 of each other.

The optimiser is AdamW over ``model.optimizer_param_groups(lr)`` (u-μP: per-parameter
scaling by ``unit_scaling.optim.scaled_parameters``), betas (0.9, 0.95), no weight
decay, linear warmup then cosine decay to 10% at the run's last step, clipping 1.0.

Run: ``python benchmarks/bench_umup_lr_transfer.py [--steps 80] [--widths 32 128]`` (about
1.5 min on one CPU thread; one thread is faster than two on a loaded 2-core machine).
Writes ``benchmarks/results/umup_lr_transfer.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch

from flops_fit.models.gpt import GPT
from flops_fit.models.losses import causal_lm_loss

RESULTS = Path(__file__).resolve().parent / "results" / "umup_lr_transfer.json"
STDLIB_FILES = ["typing.py", "argparse.py", "dataclasses.py", "inspect.py", "functools.py", "pathlib.py"]


def load_bytes(max_bytes: int) -> torch.Tensor:
    """Concatenated bytes of a fixed list of stdlib files (deterministic)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    data = b"".join((root / name).read_bytes() for name in STDLIB_FILES if (root / name).is_file())
    return torch.frombuffer(bytearray(data[:max_bytes]), dtype=torch.uint8).long()


def batches(tokens: torch.Tensor, n: int, batch: int, seq: int, seed: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        starts = torch.randint(0, len(tokens) - seq - 1, (batch,), generator=g)
        window = torch.stack([tokens[s : s + seq + 1] for s in starts.tolist()])
        out.append({"input_ids": window[:, :-1], "labels": window[:, 1:]})
    return out


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup - 1)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train_once(width: int, umup: bool, lr: float, args, train, val) -> float:
    torch.manual_seed(args.seed)
    model = GPT(width, n_layers=args.layers, head_dim=16, vocab_size=256, max_seq_len=args.seq, umup=umup)
    groups = model.optimizer_param_groups(lr, weight_decay=0.0)
    base = [g["lr"] for g in groups]
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.95))
    warmup = max(1, args.steps // 10)
    model.train()
    for step in range(args.steps):
        factor = lr_at(step, args.steps, 1.0, warmup)
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * factor
        batch = train[step % len(train)]
        loss = causal_lm_loss(model(batch["input_ids"]), batch)
        if not torch.isfinite(loss):
            return float("nan")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    with torch.no_grad():
        vals = [causal_lm_loss(model(b["input_ids"]), b).item() for b in val]
    return float(np.mean(vals))


def best_lr(lrs: list[float], losses: list[float]) -> tuple[float, float]:
    """(grid argmin, parabola vertex in log2(lr) through the argmin and its neighbours)."""
    finite = [(lr, l) for lr, l in zip(lrs, losses) if math.isfinite(l)]
    i = int(np.argmin([l for _, l in finite]))
    grid = finite[i][0]
    lo, hi = max(0, i - 1), min(len(finite), i + 2)
    if hi - lo < 3:
        return grid, grid
    x = np.log2([lr for lr, _ in finite[lo:hi]])
    y = np.array([l for _, l in finite[lo:hi]])
    a, b, _ = np.polyfit(x, y, 2)
    if a <= 0:
        return grid, grid
    vertex = float(np.clip(-b / (2 * a), x.min(), x.max()))
    return grid, float(2.0**vertex)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs=2, default=[32, 128])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--umup-lrs", type=float, nargs="+", default=[2.0**k for k in range(-2, 4)])
    parser.add_argument("--standard-lrs", type=float, nargs="+", default=[2.0**k for k in range(-10, -4)])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tokens = load_bytes(400_000)
    split = int(0.9 * len(tokens))
    train = batches(tokens[:split], args.steps, args.batch, args.seq, seed=1)
    val = batches(tokens[split:], 8, 32, args.seq, seed=2)

    t0 = time.perf_counter()
    sweeps = []
    for umup, lrs in ((True, args.umup_lrs), (False, args.standard_lrs)):
        for width in args.widths:
            losses = []
            for lr in lrs:
                loss = train_once(width, umup, lr, args, train, val)
                losses.append(loss)
                print(f"umup={umup!s:5} width={width:4d} lr=2^{math.log2(lr):+.1f} val_loss={loss:.4f}", flush=True)
            grid, vertex = best_lr(lrs, losses)
            n = GPT(width, n_layers=args.layers, max_seq_len=args.seq, umup=umup).num_params()
            sweeps.append(dict(umup=umup, width=width, num_params=n, lrs=lrs, val_losses=losses, best_lr_grid=grid, best_lr_fit=vertex))
            print(f"  -> best lr: grid 2^{math.log2(grid):+.1f}, fitted 2^{math.log2(vertex):+.2f}", flush=True)

    summary = {}
    for umup in (True, False):
        rows = [s for s in sweeps if s["umup"] == umup]
        key = "umup" if umup else "standard"
        summary[key] = dict(
            best_lr_grid=[r["best_lr_grid"] for r in rows],
            best_lr_fit=[r["best_lr_fit"] for r in rows],
            ratio_grid=rows[1]["best_lr_grid"] / rows[0]["best_lr_grid"],
            ratio_fit=rows[1]["best_lr_fit"] / rows[0]["best_lr_fit"],
        )
    passed = 0.5 <= summary["umup"]["ratio_fit"] <= 2.0 and 0.5 <= summary["umup"]["ratio_grid"] <= 2.0
    wall = time.perf_counter() - t0
    record = {
        "schema": 1,
        "benchmark": "umup_lr_transfer",
        "target": "u-μP best learning rate at the two widths within a factor of 2",
        "passed": passed,
        "summary": summary,
        "sweeps": sweeps,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "data": {"corpus": "bytes of stdlib files " + ", ".join(STDLIB_FILES), "train_tokens": split, "val_tokens": len(tokens) - split},
        "wall_time_s": round(wall, 1),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "device": "cpu",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    for key in ("umup", "standard"):
        s = summary[key]
        print(f"{key:8s}: best lr per width {args.widths}: grid {s['best_lr_grid']}, fitted "
              f"{[round(v, 5) for v in s['best_lr_fit']]}; ratio (fitted) {s['ratio_fit']:.2f}")
    print(f"u-μP within a factor of 2: {passed}; wall time {wall:.0f} s; written to {args.out}")


if __name__ == "__main__":
    main()
