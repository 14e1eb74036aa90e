"""A composed configuration (plain dict) turned into one call of the library's study resolution.

No computing happens here: every key is checked, the sections are handed to
:func:`flops_fit.study.resolve_study` — the same resolution ``find_optimal``
uses — and the stages of :mod:`flops_fit.pipeline` do the work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from flops_fit import pipeline
from flops_fit.cli import ConfigError
from flops_fit.layout import RunDir
from flops_fit.planning import PlanSettings, SweepPlan, check_trainable
from flops_fit.result import Result
from flops_fit.study import CONFIDENCE, MODES, N_BOOTSTRAP, StudySpec, resolve_study
from flops_fit.training.config import TrainConfig
from flops_fit.training.mock import MockLaw

MISSING = "???"

# keys of the fixed-shape sections (model, data and loss are checked by the study resolution)
TOP_KEYS = {
    "model", "data", "loss", "output_dir", "mode", "seed", "flops_accounting", "design", "extra_branches", "verbose",
    "progress",
    "experiment_id", "resume", "retry_failed", "confirm", "confirm_above_s", "compute", "planning", "executor",
    "mock_law", "analysis", "training", "preset", "table", "allow_repeat", "experiment", "size_param",
    "tracking", "adaptive", "target", "forecast",
}
COMPUTE_KEYS = {"budgets", "min_flops", "max_flops", "num_budgets"}
#: PlanSettings' fields (units_per_step is measured from the data, not set) and the probe size
PLANNING_KEYS = {f.name for f in dataclasses.fields(PlanSettings)} - {"units_per_step"} | {"probe_size"}
TRAINING_KEYS = {f.name for f in dataclasses.fields(TrainConfig)}
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


@dataclass
class Study:
    """One study's configuration, checked, with a method per stage."""

    config: dict[str, Any]
    _spec: StudySpec | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        c = self.config
        _unknown(c, TOP_KEYS, "")
        _unknown(c["compute"], COMPUTE_KEYS, "compute")
        _unknown(c["planning"], PLANNING_KEYS, "planning")
        _unknown(c["executor"], EXECUTOR_KEYS, "executor")
        _unknown(c["mock_law"], MOCK_LAW_KEYS, "mock_law")
        _unknown(c["analysis"], ANALYSIS_KEYS | TABLE_KEYS, "analysis")
        _unknown(c["loss"], {"_target_"}, "loss")
        _unknown(c["tracking"], {"trackers"}, "tracking")
        self._forecast_request()  # checked before any stage works, used by ff-analyze / ff-run
        from flops_fit.tracking import TRACKERS

        bad = [t for t in c["tracking"]["trackers"] or [] if t not in TRACKERS]
        if bad:
            raise ConfigError(f"tracking.trackers: expected names from {', '.join(TRACKERS)}, found {bad[0]!r}")
        for section in ("output_dir", "mode", "seed", "compute", "planning", "executor", "mock_law", "model"):
            _missing(c[section], section)
        if self.mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, found {self.mode!r}")
        if self.mode == "local":
            _missing(c["data"], "data")
            _missing(c["loss"], "loss")
            _missing(c["training"], "training")
            _unknown(c["training"], TRAINING_KEYS, "training")
        workers = c["executor"].get("workers", "auto")
        if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"executor.workers: expected auto or a positive integer (runs at once), found {workers!r}")

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

    def _executor(self) -> str | None:
        """None: this machine, runs at once as executor.workers says (the library's default)."""
        name = self.config["executor"]["name"]
        return None if name == "local" else name

    # ---- the study ----------------------------------------------------------
    def spec(self) -> StudySpec:
        """The study, resolved once by the library's own resolution (same arguments, same identity)."""
        if self._spec is None:
            c = self._with_experiment(self.config)
            training = dict(c["training"])
            if training.get("progress") is None and c.get("progress") is not None:
                training["progress"] = c["progress"]
            compute = c["compute"]
            explicit = compute.get("budgets") is not None
            self._spec = resolve_study(
                c["model"], dataset=c["data"], loss=c["loss"].get("_target_"),
                compute=dict(compute_budgets=compute.get("budgets"),
                             min_flops=None if explicit else compute.get("min_flops"),
                             max_flops=None if explicit else compute.get("max_flops"),
                             num_budgets=None if explicit else compute.get("num_budgets")),
                planning=c["planning"], mode=self.mode, seed=c["seed"],
                mock_law=MockLaw(**{k: float(v) for k, v in c["mock_law"].items()}) if self.mode == "mock" else None,
                train_config=training if self.mode == "local" else None,
                flops_accounting=c["flops_accounting"], allow_repeat=bool(c.get("allow_repeat", True)),
                design=c.get("design") or "separate", extra_branches=c.get("extra_branches") or 0,
            )
        return self._spec

    @staticmethod
    def _with_experiment(c: dict[str, Any]) -> dict[str, Any]:
        """experiment=FILE|name: that experiment config's model, data, tokenizer, objective and seed replace the
        model, data and loss sections, its training fields override training.*; size_param names what is swept
        (nested names work: transformer.hidden_size). Without it, the configuration as composed."""
        if not c.get("experiment"):
            if c.get("size_param") is not None:
                raise ConfigError("size_param: only used with experiment=... (a model section names its own)")
            return c
        from flops_fit.experiment import experiment_study

        exp = experiment_study(c["experiment"])
        model = {**exp["model_cls"], **({"size_param": c["size_param"]} if c.get("size_param") else {})}
        data = {"name": exp["dataset"], **exp["data_options"]}
        if data["name"] not in ("stdlib", "gmm", "digits"):
            data = {**data, "name": "text", "paths": data["name"]}
        return {**c, "model": model, "data": data, "loss": {"_target_": None}, "seed": exp["seed"],
                "training": {**c["training"], **exp["train_config"]}}

    # ---- stages --------------------------------------------------------------
    def plan(self, *, save: bool = True) -> SweepPlan:
        return pipeline.plan_stage(self.spec(), self.output_dir, workers=self.config["executor"].get("workers", "auto"),
                                   executor=self._executor(), save=save)

    def _forecast_request(self) -> tuple[float, float | None] | None:
        """(compute, max_ratio) of the forecast section, checked; None when no compute is given."""
        from flops_fit.validation import check_flops, check_number

        f = self.config.get("forecast") or {}
        _unknown(f, {"compute", "max_ratio"}, "forecast")
        if f.get("compute") is None:
            return None
        return (check_flops(f["compute"], "forecast.compute"),
                check_number(f.get("max_ratio"), "forecast.max_ratio", min=1.0, min_inclusive=False, allow_none=True,
                             what="an interval ratio above 1 (upper / lower bound)"))

    def forecast(self, result: Result) -> str | None:
        """ff-analyze/ff-run with forecast.compute: how much more would pin N_opt there (ff.precision_forecast)."""
        request = self._forecast_request()
        if request is None:
            return None
        from flops_fit.forecast import precision_forecast

        return precision_forecast(result, *request).summary()

    def _target(self) -> dict[str, Any] | None:
        t = {k: v for k, v in dict(self.config.get("target") or {}).items() if v is not None}
        return t or None

    def train(self) -> pipeline.TrainReport | SweepPlan:
        """Train sweep.json's experiments (all, resuming, or config experiment_id only); adaptive=true or a
        target: the adaptive rounds, decided from the runs (``flops_fit.adaptive``)."""
        if self.config.get("adaptive") or self._target():
            return self._train_adaptive()
        run = RunDir(self.output_dir)
        if not run.sweep.exists():
            raise FileNotFoundError(f"{run.sweep}: file not found; run ff-plan first (with the same configuration)")
        plan = pipeline.load_plan(run.root)
        spec = self.spec()
        pipeline.check_plan_matches(plan, spec.identity_plan(), str(run.sweep))
        ex = self.config["executor"]
        driver = self.config.get("experiment_id") is None
        if driver:
            check_trainable(plan)  # before the cost probe: a plan that pins down no law is refused first
        if driver and self.mode == "local":  # decided again on the machine that trains, and said first
            plan.execution = plan.cost_estimate = None
            pipeline.prepare_execution(plan, spec, workers=ex.get("workers", "auto"), executor=self._executor())
            if plan.execution:
                print(f"execution: {plan.execution['reason']}", flush=True)
            if plan.cost_estimate:
                self._confirm_cost(plan.cost_estimate)
        return pipeline.train(
            spec, plan, run.root, experiment_id=self.config.get("experiment_id"), executor=self._executor(),
            executor_options=dict(ex.get("options") or {}) or None, resume=bool(self.config["resume"]),
            retry_failed=bool(self.config["retry_failed"]), progress=self.config.get("progress"),
            trackers=self.config["tracking"]["trackers"] or None,
        )

    def _train_adaptive(self) -> SweepPlan:
        if self.config.get("experiment_id") is not None:
            raise ConfigError("experiment_id: an adaptive sweep decides its runs round by round in one driver; "
                              "train it without experiment_id")
        spec = self.spec()
        static = self.plan(save=False)
        if static.cost_estimate:
            self._confirm_cost(static.cost_estimate)
        ex, a = self.config["executor"], self.config["analysis"]
        return pipeline.train_adaptive(
            spec, static, self.output_dir, target=self._target(), resume=bool(self.config["resume"]),
            executor=self._executor(), executor_options=dict(ex.get("options") or {}) or None,
            retry_failed=bool(self.config["retry_failed"]), progress=self.config.get("progress"),
            trackers=self.config["tracking"]["trackers"] or None,
            analysis={k: a[k] for k in ("exclude_outliers", "n_bootstrap", "seed", "confidence")})

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
            n_bootstrap=_as_int(a.get("n_bootstrap", N_BOOTSTRAP), "analysis.n_bootstrap"),
            seed=_as_int(a.get("seed", 0), "analysis.seed"),
            confidence=float(a.get("confidence", CONFIDENCE)),
        )
        table = self.config.get("table")
        if table:  # runs the user already has: the same analysis as the library's ff.analyze
            from flops_fit.api import analyze

            reading = {k: a[k] for k in TABLE_KEYS if a.get(k) is not None}
            result = analyze(str(table), **reading, **opts, output_dir=self.output_dir)
            result.save()
            return result
        result = pipeline.analyze_stage(self.output_dir, **opts)
        if self.config["tracking"]["trackers"]:  # the sweep's summary run
            from flops_fit.tracking import make_trackers, notify

            notify(make_trackers(self.config["tracking"]["trackers"], self.output_dir), "on_sweep_end", result)
        return result

    def visualize(self, result: Result | None = None) -> list[Path]:
        """Draw from the analysis on disk, or from `result` just fitted (ff-run fits once)."""
        if result is None and self.config.get("table"):  # no results.json behind a table: analyse it again
            result = self.analyze()
        return pipeline.visualize_stage(self.output_dir, result)


def _as_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"config: {where} must be an integer, found {value!r}")
    return value
