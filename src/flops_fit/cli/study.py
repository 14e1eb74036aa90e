"""A composed configuration (plain dict) turned into the arguments of the library's stages.

No computing happens here: every value is checked for its key and handed to
:mod:`flops_fit.stages`, which does the work (and which a Python user can call
directly with the same dict: ``Study(config).plan()``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from flops_fit import stages
from flops_fit.planning import PlanSettings, SweepPlan
from flops_fit.result import Result
from flops_fit.training.mock import MockLaw

MISSING = "???"


from flops_fit.cli import ConfigError  # noqa: E402  (defined in the light package module, raised here)

# keys of the fixed-shape sections (model, data and loss are checked by the stages)
TOP_KEYS = {
    "model", "data", "loss", "output_dir", "mode", "seed", "flops_accounting", "verbose", "progress",
    "experiment_id", "resume", "retry_failed", "confirm", "confirm_above_s", "compute", "planning", "executor", "mock_law", "analysis",
    "training", "preset", "table",
}
COMPUTE_KEYS = {"budgets", "min_flops", "max_flops", "num_budgets"}
PLANNING_KEYS = {
    "num_model_sizes", "span_decades", "center_tokens_per_param", "size_multiple", "size_values",
    "size_min", "size_max", "probe_size", "min_steps",
}
EXECUTOR_KEYS = {"name", "workers", "options"}
MOCK_LAW_KEYS = {f.name for f in dataclasses.fields(MockLaw)}
ANALYSIS_KEYS = {"exclude_outliers", "n_bootstrap", "seed", "confidence"}
#: ff-analyze table=runs.csv: how a table of runs a user already has is read (ff.analyze's arguments)
TABLE_KEYS = {"n_col", "d_col", "c_col", "loss_col", "budget_col", "budget_tolerance", "best_of"}


def _unknown(section: Mapping[str, Any], allowed: set[str], where: str) -> None:
    import difflib

    if not isinstance(section, Mapping):
        raise ConfigError(f"config: {where} must be a mapping, found {type(section).__name__}")
    for key in sorted(set(section) - allowed, key=str):
        close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
        hint = f"; did you mean {(where + '.' if where else '') + close[0]!r}?" if close else f"; expected one of {sorted(allowed)}"
        raise ConfigError(f"config: unknown key {(where + '.' if where else '') + str(key)!r}{hint}")


def _missing(section: Any, where: str) -> None:
    """Name the first mandatory value (???) still unset in a section that is used."""
    if isinstance(section, Mapping):
        for k, v in section.items():
            _missing(v, f"{where}.{k}")
    elif isinstance(section, list):
        for i, v in enumerate(section):
            _missing(v, f"{where}[{i}]")
    elif section == MISSING:
        raise ConfigError(f"config: {where} is required (it is '???'); set it, e.g. {where}=...")


def _train_config_cls() -> Any:
    try:
        from flops_fit.training.trainer import TrainConfig
    except ImportError as exc:  # pragma: no cover - depends on the training engine being installed
        raise RuntimeError(f"mode: 'local' training is not available in this installation ({exc})") from None
    return TrainConfig


@dataclass
class Study:
    """One study's configuration, checked, with a method per stage."""

    config: dict[str, Any]

    def __post_init__(self) -> None:
        c = self.config
        _unknown(c, TOP_KEYS, "")
        _unknown(c["compute"], COMPUTE_KEYS, "compute")
        _unknown(c["planning"], PLANNING_KEYS, "planning")
        _unknown(c["executor"], EXECUTOR_KEYS, "executor")
        _unknown(c["mock_law"], MOCK_LAW_KEYS, "mock_law")
        _unknown(c["analysis"], ANALYSIS_KEYS | TABLE_KEYS, "analysis")
        _unknown(c["loss"], {"_target_"}, "loss")
        for section in ("output_dir", "mode", "seed", "compute", "planning", "executor", "mock_law", "model"):
            _missing(c[section], section)
        if self.mode not in stages.MODES:
            raise ValueError(f"mode: expected one of {stages.MODES}, found {self.mode!r}")
        if self.mode == "local":
            _missing(c["data"], "data")
            _missing(c["loss"], "loss")
            _missing(c["training"], "training")
            fields = {f.name for f in dataclasses.fields(_train_config_cls())}
            _unknown(c["training"], fields, "training")

    # ---- simple values ------------------------------------------------------
    @property
    def output_dir(self) -> Path:
        return Path(str(self.config["output_dir"]))

    @property
    def mode(self) -> str:
        return self.config["mode"]

    @property
    def verbose(self) -> bool:
        return bool(self.config.get("verbose"))

    # ---- objects -----------------------------------------------------------
    def objective_hint(self) -> str | None:
        m = self.config["model"]
        if m.get("_target_") is not None or m.get("architecture") is None:
            return None
        from flops_fit.models import model_objective

        return model_objective(m["architecture"], m)  # the one rule the library uses too

    def model(self) -> stages.ModelChoice:
        vocab = stages.tokenizer_vocab_size(self.config["data"], self.objective_hint()) if self._data_is_known() else None
        return stages.resolve_model(self.config["model"], vocab_size=vocab)

    def _data_is_known(self) -> bool:
        d = self.config["data"]
        return isinstance(d, Mapping) and d.get("name") in ("stdlib", "text") and MISSING not in d.values()

    def train_config(self) -> Any:
        t = dict(self.config["training"])
        if t.get("progress") is None and self.config.get("progress") is not None:
            t["progress"] = self.config["progress"]
        cls = _train_config_cls()
        try:
            return cls(**t)
        except TypeError as exc:
            raise ConfigError(f"training: {exc}") from None

    def settings(self) -> PlanSettings:
        p = dict(self.config["planning"])
        p.pop("probe_size", None)
        if p.get("size_values") is not None:
            p["size_values"] = [int(v) for v in p["size_values"]]
        if self.mode == "local":
            ups = stages.units_per_sample_of(self.config["data"])
            t = self.config["training"]
            if ups is not None:
                p["units_per_step"] = int(t["batch_size"]) * int(t["grad_accum_steps"]) * ups
        return PlanSettings(**p)

    def run_settings(self) -> dict[str, Any]:
        """What identifies the runs besides the experiments (part of the plan's fingerprint)."""
        if self.mode == "mock":
            return {}
        return {
            "train_config": self.train_config().identity(),
            "data": stages.describe_data(self.config["data"]),
            "loss": self.config["loss"].get("_target_") or "default",
        }

    def mock_law(self) -> MockLaw:
        return MockLaw(**{k: float(v) for k, v in self.config["mock_law"].items()})

    # ---- stages --------------------------------------------------------------
    def _plugins(self) -> stages.ModelChoice:
        """The model, with the data and loss plugins import-checked (before anything runs)."""
        model = self.model()
        if self.mode == "local":
            stages.describe_data(self.config["data"])
            stages.resolve_loss(self.config["loss"].get("_target_"), model)
        return model

    def _identity_args(self) -> dict[str, Any]:
        """The plan's identity arguments, one source for ff-plan and for ff-train's check against sweep.json."""
        return dict(
            settings=self.settings(),
            probe_size=self.config["planning"].get("probe_size"),
            mode=self.mode,
            seed=self.config["seed"],
            mock_law=self.mock_law() if self.mode == "mock" else None,
            run_settings=self.run_settings(),
            flops_accounting=self.config["flops_accounting"],
        )

    def identity(self) -> SweepPlan:
        """What this configuration would plan, minus the experiments (see stages.plan_identity)."""
        return stages.plan_identity(self._plugins(), **self._identity_args())

    def plan(self, *, save: bool = True) -> SweepPlan:
        c = self.config["compute"]
        model = self._plugins()
        return stages.plan_stage(
            model,
            self.output_dir,
            compute_budgets=c.get("budgets"),
            min_flops=c.get("min_flops") if c.get("budgets") is None else None,
            max_flops=c.get("max_flops") if c.get("budgets") is None else None,
            num_budgets=c.get("num_budgets"),
            save=save,
            **self._identity_args(),
        )

    def train(self) -> stages.TrainReport:
        """Train sweep.json's experiments (all, resuming, or config experiment_id only)."""
        sweep = self.output_dir / "sweep.json"
        if not sweep.exists():
            raise FileNotFoundError(f"{sweep}: file not found; run ff-plan first (with the same configuration)")
        plan = stages.load_plan(self.output_dir)
        stages.check_plan_matches(plan, self.identity(), str(self.output_dir / "sweep.json"))
        ex = self.config["executor"]
        name, options = ex["name"], dict(ex.get("options") or {})
        workers = ex.get("workers", "auto")
        if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"executor.workers: expected auto or a positive integer (runs at once), found {workers!r}")
        if self.mode == "mock":
            run_fn = stages.make_mock_run_fn(plan)
        else:
            model = self.model()
            loss = stages.resolve_loss(self.config["loss"].get("_target_"), model)
            data = stages.load_dataset(self.config["data"], objective=model.objective, seed=self.config["seed"])
            tc = self.train_config()
            driver = self.config.get("experiment_id") is None
            parts = (model.factory, data.train, loss, data.val)
            local = driver and name == "local" and plan.runnable
            if local:  # the same decision as find_optimal's (stages.plan_execution): threads first, then workers
                tc = stages.plan_execution(plan, workers, tc, parts, None)
            run_fn = stages.make_real_run_fn(
                plan, model, data, loss, tc, self.output_dir,
                probe_size=self.config["planning"].get("probe_size"),
            )
            if driver:  # the driver: say what the sweep will cost first
                est = stages.estimate_sweep(plan, model, data, loss, tc)
                if local:
                    stages.plan_execution(plan, workers, tc, parts, est)
                    if plan.execution and plan.execution["workers"] > 1:
                        name = "pool"
                        options = {"workers": plan.execution["workers"],
                                   "threads_per_run": plan.execution["threads_per_run"]}
                    print(f"execution: {plan.execution['reason']}", flush=True)
                self._confirm_cost(est)
        return stages.train_stage(
            self.output_dir,
            run_fn,
            plan=plan,
            experiment_id=self.config.get("experiment_id"),
            resume=bool(self.config["resume"]),
            retry_failed=bool(self.config["retry_failed"]),
            executor=name,
            executor_options=options,
            progress=self.config.get("progress"),
        )

    def _confirm_cost(self, estimate: dict) -> None:
        """Print the estimate; above confirm_above_s ask on a terminal, refuse elsewhere, unless confirm=false."""
        total = float(estimate.get("wall_seconds", estimate.get("total_seconds", 0.0)))
        print(f"estimated wall time: {total:.0f} s on {estimate.get('device', '?')} "
              f"({len(estimate.get('per_experiment', {}))} runs)", flush=True)
        limit = float(self.config.get("confirm_above_s") or 1800)
        if not self.config.get("confirm", True) or total <= limit:
            return
        import sys

        if sys.stdin is not None and sys.stdin.isatty():
            answer = input(f"this sweep is estimated at {total / 60:.0f} min (above {limit / 60:.0f} min); train it? [y/N] ")
            if answer.strip().lower() in ("y", "yes"):
                return
        raise ConfigError(
            f"confirm: the sweep is estimated at {total:.0f} s, above confirm_above_s={limit:.0f}; pass confirm=false "
            "to train it without asking (or answer y on a terminal)"
        )

    def analyze(self) -> Result:
        a = self.config["analysis"]
        opts = dict(
            exclude_outliers=bool(a["exclude_outliers"]),
            n_bootstrap=_as_int(a.get("n_bootstrap", 1000), "analysis.n_bootstrap"),
            seed=_as_int(a.get("seed", 0), "analysis.seed"),
            confidence=float(a.get("confidence", 0.90)),
        )
        table = self.config.get("table")
        if table:  # runs the user already has: the same analysis as the library's ff.analyze
            from flops_fit.api import analyze

            reading = {k: a[k] for k in TABLE_KEYS if a.get(k) is not None}
            result = analyze(str(table), **reading, **opts, output_dir=self.output_dir)
            result.save()
            return result
        return stages.analyze_stage(self.output_dir, **opts)

    def visualize(self) -> list[Path]:
        if self.config.get("table"):  # no results.json behind a table: analyse it again, then draw
            import matplotlib.pyplot as plt

            for fig in self.analyze().plot(show=False, save=True):
                plt.close(fig)
            return [self.output_dir / "plots" / name for name in stages.PLOT_FILES]
        return stages.visualize_stage(self.output_dir)


def _as_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"config: {where} must be an integer, found {value!r}")
    return value
