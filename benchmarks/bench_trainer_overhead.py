"""Trainer overhead: units/s of flops-fit's trainer vs a minimal hand-written PyTorch loop.

Same process, same model (built-in GPT), same data (stdlib byte corpus), same
batch size and AdamW settings; the two are interleaved `--reps` times and the
median throughput of each is compared. The trainer's figure is its own
record (training loop only: no model build, FLOPs measurement or validation):
``details["units_per_s"]`` by wall time and ``units_trained / details["cpu_time_train_s"]``
by this process's CPU time; the loop's is timed the same two ways. The target is
judged on CPU time: on a shared machine wall time swings by 2x between identical
reps (other processes take the core), while at one thread the CPU seconds a loop
uses are its work. Both figures are printed and recorded.

    python benchmarks/bench_trainer_overhead.py [--steps 300] [--reps 3] [--d-models 16 56 256] [--threads 1]

Target: the trainer at >= 0.97x the same-math loop (with gradient clipping, as the trainer does).

Writes benchmarks/results/trainer_overhead.json.
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

import torch
from torch.utils.data import DataLoader

from flops_fit.models import GPT, causal_lm_loss
from flops_fit.planning import Experiment
from flops_fit.training.local import make_run_fn
from flops_fit.training.trainer import TrainConfig

RESULTS = Path(__file__).parent / "results" / "trainer_overhead.json"


def dataset(seq_len: int):
    try:
        from flops_fit.data import load_corpus

        c = load_corpus("stdlib", tokenizer="byte")
        return c.dataset("train", seq_len), c.dataset("validation", seq_len), c.vocab_size, "stdlib byte corpus"
    except Exception:  # noqa: BLE001 - fall back to random tokens

        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (20000, seq_len + 1), generator=g)

        class D(torch.utils.data.Dataset):
            def __len__(self):
                return len(x)

            def __getitem__(self, i):
                return {"input_ids": x[i, :-1], "labels": x[i, 1:]}

        return D(), None, 256, "random tokens"


def hand_loop(model_kwargs, train, steps, batch_size, cfg: TrainConfig, clip: bool) -> tuple[float, float]:
    """The minimal loop: DataLoader(shuffle), forward, loss, backward, (clip), AdamW step; (units per wall
    second, units per CPU second)."""
    torch.manual_seed(0)
    model = GPT(**model_kwargs)
    opt = torch.optim.AdamW(model.optimizer_param_groups(cfg.lr, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas,
                            foreach=True)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    units = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        batch = next(it)
        loss = causal_lm_loss(model(batch["input_ids"]), batch)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        units += batch["input_ids"].numel()
    return units / (time.perf_counter() - t0), units / (time.process_time() - c0)


def trainer(model_kwargs, train, val, steps, batch_size, seq_len, cfg: TrainConfig, out: Path,
            rep: int) -> tuple[float, float]:
    fn = make_run_fn(model_factory=GPT, size_param="d_model", model_kwargs={k: v for k, v in model_kwargs.items()
                                                                            if k != "d_model"},
                     dataset=train, loss_fn=causal_lm_loss, train_config=cfg, output_dir=out / f"r{rep}", seed=0,
                     val_dataset=val)
    n = GPT(**model_kwargs).num_params()
    exp = Experiment(f"bench{rep}", 1.0, 0, model_kwargs["d_model"], n, float(steps * batch_size * seq_len), 1.0)
    rec = fn(exp)
    assert rec.status == "completed", rec.error
    d = rec.details
    return float(d["units_per_s"]), float(d["units_trained"]) / float(d["cpu_time_train_s"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--d-models", type=int, nargs="+", default=[16, 56, 256])
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, val, vocab, data_name = dataset(args.seq_len)
    cfg = TrainConfig(batch_size=args.batch_size, val_units=16 * args.seq_len, progress=False, device="cpu")
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for d in args.d_models:
            mk = {"d_model": d, "n_layers": 2, "head_dim": 8, "vocab_size": vocab, "max_seq_len": args.seq_len}
            wall = {"trainer": [], "loop": [], "loop_clip": []}
            cpu = {k: [] for k in wall}
            hand_loop(mk, train, 20, args.batch_size, cfg, True)  # warm-up
            for rep in range(args.reps):  # interleaved, so drift in the machine's speed hits all three alike
                for name, f in (("loop", lambda: hand_loop(mk, train, args.steps, args.batch_size, cfg, False)),
                                ("trainer", lambda: trainer(mk, train, val, args.steps, args.batch_size, args.seq_len,
                                                            cfg, Path(tmp) / f"d{d}", rep)),
                                ("loop_clip", lambda: hand_loop(mk, train, args.steps, args.batch_size, cfg, True))):
                    w, c = f()
                    wall[name].append(w)
                    cpu[name].append(c)
            med = {k: statistics.median(v) for k, v in cpu.items()}
            med_wall = {k: statistics.median(v) for k, v in wall.items()}
            sizes[str(d)] = {"num_params": GPT(**mk).num_params(), "units_per_cpu_s": cpu, "units_per_s": wall,
                             "median_units_per_cpu_s": med, "median_units_per_s": med_wall,
                             "trainer_vs_same_math_loop": med["trainer"] / med["loop_clip"],
                             "trainer_vs_minimal_loop": med["trainer"] / med["loop"],
                             "trainer_vs_same_math_loop_wall": med_wall["trainer"] / med_wall["loop_clip"]}
            print(f"d_model {d:4d}: per CPU second: trainer {med['trainer']:,.0f} tok, same-math loop (grad clip) "
                  f"{med['loop_clip']:,.0f}, minimal loop {med['loop']:,.0f}: trainer at "
                  f"x{sizes[str(d)]['trainer_vs_same_math_loop']:.3f} of the same-math loop "
                  f"(by wall time x{sizes[str(d)]['trainer_vs_same_math_loop_wall']:.3f})", flush=True)
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    report = {
        "benchmark": "trainer_overhead",
        "model": {"class": "GPT", "n_layers": 2, "head_dim": 8, "vocab_size": vocab, "max_seq_len": args.seq_len},
        "data": data_name,
        "batch_size": args.batch_size,
        "steps_per_rep": args.steps,
        "reps": args.reps,
        "sizes": sizes,
        "target": ">= 0.97 of a same-math hand-written loop at d_model 16, 56 and 256 (issue 'Use the whole machine'), "
                  "judged on units per CPU second (median of the interleaved reps)",
        "target_met": all(v["trainer_vs_same_math_loop"] >= 0.97 for v in sizes.values()),
        "machine": {
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "loadavg_at_end": load,
            "note": "shared machine: other processes were running" if load and load[0] > (os.cpu_count() or 1) * 0.5
            else "",
        },
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"target met: {report['target_met']}; wrote {args.out}")


if __name__ == "__main__":
    main()
