"""Cross-architecture validation: every shipped example config trained on the same corpus for the same tokens.

    python benchmarks/bench_architectures.py [--tokens 200000] [--out benchmarks/results]

The text models (GPT, GPT-2, BERT, LSTM, bidirectional LSTM, GRU, RNN) train on the same 1 MB of the
standard library's source for the same number of tokens, each with its example's tokenizer and
objective; ViT (digits) and the Gaussian-mixture models (synthetic sets) train on their own data for
their example's length. Prints, side by side, the final validation loss (masked-token loss for the
bidirectional models, with their masked accuracy), throughput (data units/s), peak memory and wall
time; draws every loss curve in one plot; records both with the machine. Each model trains in a fresh
process, so its peak resident memory is its own (torch's own footprint included); `state_MiB` is what
the model adds: parameters, gradients and AdamW's two moments in fp32. Losses compare across
architectures only where tokenizer and objective are the same (per-token losses of a BPE or masked
model measure something else than a byte-level causal one).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from flops_fit.experiment import EXAMPLES, load_experiment, train_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=200_000, help="tokens per text model")
    p.add_argument("--out", default=str(Path(__file__).with_name("results")))
    args = p.parse_args()
    rows, curves = [], {}
    ctx = multiprocessing.get_context("spawn")
    for name in sorted(q.stem for q in EXAMPLES.glob("*.yaml")):
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:  # a fresh process: its own peak memory
            row, curve = pool.submit(_one, name, args.tokens).result()
        rows.append(row)
        curves[name] = curve
        shown = "  ".join(f"{k} {row[k]:.3g}" for k in ("perplexity", "masked_accuracy", "pseudo_perplexity") if k in row)
        print(f"{name:26s} {row['architecture']:5s} N={row['N']:>8,} D={row['D']:>9,.0f} {row['units']:7s} "
              f"loss {row['initial_loss']:.3f} -> {row['final_val_loss']:.3f}  {shown}  {row['units_per_s']:,.0f} "
              f"{row['units']}/s  peak {row['peak_memory_MiB']:.0f} MiB (state {row['state_MiB']:.1f})  "
              f"{row['wall_s']:.1f} s", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "bench_architectures", "tokens_per_text_model": args.tokens, "rows": rows,
              "machine": {"platform": platform.platform(), "cores": os.cpu_count(), "python": platform.python_version()}}
    (out / "architectures.json").write_text(json.dumps(result, indent=1) + "\n")
    _plot(curves, out / "architectures.png")
    doc = Path(__file__).resolve().parents[1] / "docs" / "models.md"
    doc.write_text(_page(result))
    print(f"wrote {out / 'architectures.json'}, {out / 'architectures.png'} and {doc}")


def _page(d: dict) -> str:
    """docs/models.md: the recorded figures, side by side."""
    m = d["machine"]
    lines = [
        "# Built-in architectures side by side", "",
        "`python benchmarks/bench_architectures.py` trains every shipped example config",
        "(`src/flops_fit/conf/experiments/`) — the text models on the same 1 MB of the standard library's",
        f"source for the same {d['tokens_per_text_model']:,} tokens, ViT on digits and the Gaussian-mixture models on",
        f"their synthetic sets — each in a fresh process, and writes this page. Recorded on {m['platform']},",
        f"{m['cores']} cores, Python {m['python']} ([JSON](../benchmarks/results/architectures.json)). Losses",
        "compare only where tokenizer and objective are the same (byte-level causal: GPT, GRU); a per-token loss",
        "over BPE, sentencepiece or character tokens, or over masked tokens, measures something else.", "",
        "| example | arch | tokenizer | objective | N | loss: first step → validation | evaluation | units/s |"
        " peak RSS (state) |",
        "|---|---|---|---|---:|---|---|---:|---:|",
    ]
    for r in d["rows"]:
        ev = ", ".join(f"{k.replace('_', ' ')} {r[k]:.3g}" for k in ("perplexity", "masked_accuracy",
                                                                    "pseudo_perplexity") if k in r) or "—"
        lines.append(f"| `{r['example']}` | {r['architecture']} | {r['tokenizer'] or '—'} | "
                     f"{r['objective'] or 'the model’s'} | {r['N']:,} | {r['initial_loss']:.3f} → "
                     f"{r['final_val_loss']:.3f} | {ev} | {r['units_per_s']:,.0f} {r['units']}/s | "
                     f"{r['peak_memory_MiB']:.0f} MiB ({r['state_MiB']:.1f}) |")
    lines += ["", "![loss curves](../benchmarks/results/architectures.png)", "",
              "Peak RSS is the training process's high-water mark, torch's own footprint included; the state",
              "column is what the model adds (fp32 parameters, gradients and AdamW's two moments). The default",
              "test run trains each example for a few thousand tokens and checks that every loss falls and that",
              "the bidirectional models are evaluated on masked tokens (`tests/test_experiment.py`).", ""]
    return "\n".join(lines)


def _one(name: str, tokens: int) -> tuple[dict, list]:
    """Train one example (in a worker process) and return its row and loss curve."""
    cfg = load_experiment(name)
    over = {"training.tokens": tokens} if cfg["data"].get("name", "stdlib") == "stdlib" else {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        run = train_model(name, output_dir=tmp, overrides=over)
        wall = time.perf_counter() - t
    r = run.record
    row = {"example": name, "architecture": cfg["model"]["architecture"],
           "objective": run.config["training"].get("objective"), "data": cfg["data"].get("name", "stdlib"),
           "tokenizer": (cfg["tokenizer"] or {}).get("tokenizer_type"), "N": r.num_params, "D": r.num_tokens,
           "units": r.units, "initial_loss": r.details["initial_loss"], "final_val_loss": r.final_loss,
           **run.evaluation, "units_per_s": r.details["units_per_s"],
           "peak_memory_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "state_MiB": 16 * r.num_params / 2**20, "wall_s": wall}
    return row, r.details["loss_curve"]


def _plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, curve in curves.items():
        if curve:
            ax.plot([s for s, _ in curve], [v for _, v in curve], label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.set_title("every shipped architecture, same corpus and tokens (text models)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
