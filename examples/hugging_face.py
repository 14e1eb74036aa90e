"""A Hugging Face Llama swept over hidden_size on an in-memory datasets.Dataset: no factory, no glue.

    python examples/hugging_face.py [--output-dir outputs/hf-llama]
"""

from __future__ import annotations

import argparse

import datasets

import flops_fit as ff


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output-dir", default="outputs/hf-llama")
    args = p.parse_args()
    # token windows of a noiseless cycle (next token = token + 1 mod 16): labels are made here, shifted once
    windows = [[(i + t) % 16 for t in range(17)] for i in range(512)]
    result = ff.find_optimal(
        "hf:LlamaForCausalLM", model_kwargs={"num_hidden_layers": 1, "head_dim": 4, "mlp_ratio": 2, "vocab_size": 16},
        dataset=datasets.Dataset.from_dict({"input_ids": windows}), compute_budgets=[1e8, 3e8], size_min=4,
        size_max=128, num_model_sizes=5, train_config={"batch_size": 8}, n_bootstrap=50, progress=False,
        output_dir=args.output_dir,
    )
    print(result.summary())
    print(f"best loss {min(r.final_loss for r in result.records):.3f} (ln 16 = 2.773)")


if __name__ == "__main__":
    main()
