"""Your own Hugging Face Trainer as the training loop of a sweep: train_fn wraps transformers.Trainer in a few
lines, and flops-fit plans the sizes, hands each run its model and exact token budget, resumes, and fits.

    python examples/hf_trainer.py [--output-dir outputs/hf-trainer]

The data are HF-style: labels equal to input_ids (unshifted), because a transformers causal LM given labels
shifts them itself; the library's own loss is not used here, so nothing is shifted twice.
"""

from __future__ import annotations

import argparse
import math

import datasets

import flops_fit as ff

BATCH, SEQ = 8, 16


def train_with_hf_trainer(model, experiment, context):
    """One run: a transformers.Trainer on exactly experiment.num_tokens tokens, then its eval loss."""
    from transformers import Trainer, TrainingArguments

    steps = math.ceil(experiment.num_tokens / (BATCH * SEQ))
    args = TrainingArguments(
        output_dir=str(context.checkpoint_dir), max_steps=steps, warmup_steps=max(1, steps // 10),
        per_device_train_batch_size=BATCH, per_device_eval_batch_size=64, learning_rate=3e-3,
        lr_scheduler_type="cosine", weight_decay=0.1, seed=context.seed, data_seed=context.seed, report_to=[],
        save_strategy="no", logging_strategy="no", disable_tqdm=True, use_cpu=context.device == "cpu",
    )
    trainer = Trainer(model=model.hf, args=args, train_dataset=context.dataset, eval_dataset=context.val_dataset)
    trainer.train()
    return {"loss": trainer.evaluate()["eval_loss"], "details": {"steps": trainer.state.global_step}}


def windows(n: int, seed: int) -> datasets.Dataset:
    """Token windows of a noiseless cycle (next token = token + 1 mod 16), labels = input_ids (HF style)."""
    rows = [[(seed + 7 * i + t) % 16 for t in range(SEQ)] for i in range(n)]
    return datasets.Dataset.from_dict({"input_ids": rows, "labels": rows})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output-dir", default="outputs/hf-trainer")
    args = p.parse_args()
    result = ff.find_optimal(
        "hf:LlamaForCausalLM", model_kwargs={"num_hidden_layers": 1, "head_dim": 4, "mlp_ratio": 2, "vocab_size": 16},
        dataset=windows(512, 0), val_dataset=windows(64, 3), train_fn=train_with_hf_trainer,
        compute_budgets=[1e8, 3e8], size_min=4, size_max=128, num_model_sizes=5, n_bootstrap=50, progress=False,
        output_dir=args.output_dir,
    )
    print(result.summary())
    print(f"runs {len(result.records)}, best loss {min(r.final_loss for r in result.records):.3f} (ln 16 = 2.773)")


if __name__ == "__main__":
    main()
