"""A train_fn sweep in its own process, for the SIGKILL test: python train_fn_script_for_kill.py OUT_DIR.

The user's loop is ff_train_helpers.plain_train, slowed by 0.3 s per run so the test can kill the sweep
between runs; every run start is appended to OUT_DIR/starts.log (a tracker).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import ff_train_helpers as H  # noqa: E402

import flops_fit as ff  # noqa: E402
from flops_fit.tracking import Callback  # noqa: E402


def slow_train(model, experiment, context):
    time.sleep(0.3)
    return H.plain_train(model, experiment, context)


class Starts(Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_run_start(self, experiment, config) -> None:
        with open(self.out / "starts.log", "a") as fh:
            fh.write(experiment.experiment_id + "\n")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ff.find_optimal(H.TinyLM, "d_model", dataset=H.TokenData(512), val_dataset=H.ValSlice(64, seed=9),
                    compute_budgets=[3e7, 1e8], num_model_sizes=3, span_decades=0.5, size_min=4, size_max=128,
                    n_bootstrap=0, progress=False, workers=1, train_fn=slow_train, trackers=[Starts(out)],
                    output_dir=out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
