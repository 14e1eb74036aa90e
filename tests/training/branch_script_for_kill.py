"""A branched sweep in its own process, for the SIGKILL test: python branch_script_for_kill.py OUT_DIR.

Two sizes, three budgets; trunks checkpoint every 5 steps and the loss is slowed down a little so that the
test can kill the sweep inside a trunk. Appends each run's id to OUT_DIR/starts.log when it starts and to
OUT_DIR/ends.log when its record is stored (a tracker: the library's own callback protocol).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from ff_train_helpers import TinyLM, TokenData, slow_lm_loss  # noqa: E402

import flops_fit as ff  # noqa: E402
from flops_fit.tracking import Callback  # noqa: E402


class Log(Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_run_start(self, experiment, settings) -> None:
        with open(self.out / "starts.log", "a") as fh:
            fh.write(experiment.experiment_id + "\n")

    def on_run_end(self, experiment, record) -> None:
        with open(self.out / "ends.log", "a") as fh:
            fh.write(experiment.experiment_id + "\n")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ff.find_optimal(TinyLM, "d_model", dataset=TokenData(2000), loss_fn=slow_lm_loss, output_dir=out,
                    compute_budgets=[1e7, 1.5e7, 2e7], size_values=[4, 8, 16], num_model_sizes=3, span_decades=0.4,
                    train_config={"batch_size": 8, "val_units": 256, "progress": False, "num_threads": 1,
                                  "checkpoint_every_steps": 5},
                    progress=False, n_bootstrap=0, workers=1, design="branches", trackers=[Log(out)])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
