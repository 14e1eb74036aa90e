"""One model from an experiment config (the multi-architecture framework's unit of work), then the same
config as the fixed part of a sweep.

    python examples/experiment_config.py [--config tiny_lstm] [--tokens 50000] [--output-dir outputs/experiment]
"""

from __future__ import annotations

import argparse

import flops_fit as ff


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="tiny_lstm", help="an experiment YAML or a shipped example's name")
    p.add_argument("--tokens", type=int, default=50_000)
    p.add_argument("--output-dir", default="outputs/experiment")
    args = p.parse_args()
    run = ff.train_model(args.config, output_dir=f"{args.output_dir}/model",
                         overrides={"training.tokens": args.tokens})
    print(run.summary())
    plan = ff.find_optimal(**ff.experiment_study(args.config), compute_budgets=[1e11, 3e11], train=False,
                           output_dir=f"{args.output_dir}/sweep")
    print(plan.summary().splitlines()[0])


if __name__ == "__main__":
    main()
