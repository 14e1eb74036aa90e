"""Track every run of a sweep in TensorBoard and MLflow (local files only, nothing leaves the machine).

    python examples/tracking.py [--output-dir outputs/tracking]
    tensorboard --logdir outputs/tracking/tracking/tensorboard
    mlflow ui --backend-store-uri sqlite:///outputs/tracking/tracking/mlflow/mlflow.db
"""

from __future__ import annotations

import argparse

import flops_fit as ff
from flops_fit.tracking import Callback


class PrintEnds(Callback):
    """Your own tracker: any object with the four hooks (here, one line per finished run)."""

    def on_run_end(self, experiment, record):
        print(f"ended {experiment.experiment_id}: {record.status}, loss {record.final_loss:.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output-dir", default="outputs/tracking")
    args = p.parse_args()
    result = ff.find_optimal("gpt", compute_budgets=[1e17, 1e18, 1e19], mode="mock", num_model_sizes=5,
                             n_bootstrap=50, progress=False, output_dir=args.output_dir,
                             trackers=["tensorboard", "mlflow", PrintEnds()])
    print(result.chinchilla_table())


if __name__ == "__main__":
    main()
