"""A real sweep in its own process, for the SIGKILL tests: python sweep_script_for_kill.py OUT_DIR [--process].

Appends "start <id>" to OUT_DIR/starts.log whenever a run function starts. With
--process every run goes to a ProcessExecutor child (the kill-storm test), and the
driver writes its pid to OUT_DIR/driver.pid.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from ff_train_helpers import TinyLM, TokenData, slow_lm_loss  # noqa: E402
from flops_fit.planning import Experiment, SweepPlan  # noqa: E402
from flops_fit.training.executors import ProcessExecutor  # noqa: E402
from flops_fit.training.local import make_run_fn  # noqa: E402
from flops_fit.training.store import ResultsStore  # noqa: E402
from flops_fit.training.sweep import run_sweep  # noqa: E402
from flops_fit.training.trainer import TrainConfig  # noqa: E402

SIZES = (4, 8, 12)
STEPS = 150  # per run, 64 tokens each


def plan() -> SweepPlan:
    exps = [Experiment(f"C1e9-d{s}", 1e9, 0, s, TinyLM(s).num_params(), 64.0 * STEPS, 1.0) for s in SIZES]
    return SweepPlan(budgets=[1e9], experiments=exps, size_param="d_model", model_name="TinyLM")


class Logged:
    """Picklable run function wrapper that logs each start."""

    def __init__(self, fn, log: Path) -> None:
        self.fn, self.log = fn, log

    def __call__(self, exp):
        with open(self.log, "a") as fh:
            fh.write(f"start {exp.experiment_id}\n")
        return self.fn(exp)


def main(out: Path, process: bool = False) -> None:
    torch.set_num_threads(1)
    p = plan()
    cfg = TrainConfig(batch_size=8, val_units=128, progress=False, checkpoint_every_steps=10)
    fn = make_run_fn(model_factory=TinyLM, size_param="d_model", model_kwargs={}, dataset=TokenData(2048),
                     loss_fn=slow_lm_loss, train_config=cfg, output_dir=out, seed=0)
    store = ResultsStore(out / "results.json", p.fingerprint())
    ex = ProcessExecutor() if process else None
    try:
        run_sweep(p, Logged(fn, out / "starts.log"), store, progress=False, executor=ex)
    finally:
        if ex is not None:
            ex.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), process="--process" in sys.argv[2:])
