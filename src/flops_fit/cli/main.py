"""ff-plan, ff-train, ff-analyze, ff-visualize, ff-run: Hydra configuration plus one call into the library.

The configuration is composed with Hydra's compose API from the YAML shipped in
``flops_fit/conf`` (plus an optional study file: ``--config FILE`` or
``--config-dir DIR --config-name NAME``) and the command-line overrides, in
Hydra's override syntax. The compose API never changes the working directory,
never creates ``outputs/`` or ``.hydra/`` folders and never configures logging:
every file goes where ``output_dir`` says.

Exit status: 0 on success, 2 for a bad command line or configuration, 1 for
any other error. An error is printed as one line on stderr (the full
traceback with ``verbose=true``).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
CONFIG_MODULE = "flops_fit.conf"
CONFIG_NAME = "config"

_DESCRIPTIONS = {
    "plan": "Plan an IsoFLOP sweep: check the model contract and write output_dir/sweep.json.",
    "train": "Train the experiments of output_dir/sweep.json (resumes; experiment_id=... trains one).",
    "analyze": "Fit scaling laws to output_dir/results.json; write analysis/scaling_laws.json.",
    "visualize": "Draw the IsoFLOP curves, scaling laws and tokens-per-parameter plots into output_dir/plots/.",
    "run": "Plan, train, analyze and visualize in one call.",
}


from flops_fit.cli import ConfigError  # noqa: E402  (light: no torch, pandas or scipy at import)


def _parser(stage: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"ff-{stage}",
        description=_DESCRIPTIONS[stage],
        epilog=(
            "Overrides use Hydra syntax: key=value (compute.min_flops=1e18), group=option (model=lstm, "
            "preset=mock_demo), +key=value to add a key. Presets: mock_demo, cpu_small, gpu. "
            "See docs/cli.md."
        ),
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. preset=mock_demo compute.num_budgets=3")
    p.add_argument("-c", "--config", metavar="FILE", help="a study YAML file (see docs/cli.md)")
    p.add_argument("-cd", "--config-dir", metavar="DIR", help="directory of study YAML files")
    p.add_argument("-cn", "--config-name", metavar="NAME", help="study file name in --config-dir (without .yaml)")
    p.add_argument("--cfg", action="store_true", help="print the composed configuration and exit")
    return p


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return "; ".join(lines)


def _hydra_message(exc: BaseException) -> str:
    """Hydra's multi-line composition errors as one line naming the key or option."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    msg = str(exc)
    if isinstance(exc, MissingConfigException):
        head = msg.split("\n")[0]
        opts = []
        if "Available options" in msg:
            part = msg.split("Available options", 1)[1].split("Config search path", 1)[0]
            opts = [ln.strip() for ln in part.splitlines()[1:] if ln.strip()]
        head = head.replace("In 'config': ", "")
        return f"config: {head}" + (f"; available: {', '.join(opts)}" if opts else "")
    if isinstance(exc, OverrideParseException):
        return f"config: cannot parse the override: {msg.splitlines()[0]} (Hydra override syntax: key=value)"
    if isinstance(exc, ConfigCompositionException):
        cause = exc.__cause__
        if cause is not None and "not in struct" in str(cause):
            key = msg.split("'")[1] if "'" in msg else "?"
            hint = _did_you_mean(key)
            return (
                f"config: unknown key {key!r}{hint} (+{key}=... adds a new key, "
                "e.g. a constructor argument of a custom model)"
            )
        return "config: " + _one_line(msg + (f" ({cause})" if cause is not None else ""))
    return _one_line(msg)


def _did_you_mean(key: str) -> str:
    """'; did you mean X?' from the keys of the package's base config (empty when nothing is close)."""
    import difflib
    from importlib import resources

    from omegaconf import OmegaConf

    try:
        from flops_fit.conf import schema_defaults

        base = OmegaConf.to_container(
            OmegaConf.create(resources.files(CONFIG_MODULE).joinpath(f"{CONFIG_NAME}.yaml").read_text()),
            resolve=False,
        )
        base = {**schema_defaults(), **base}
    except Exception:  # noqa: BLE001 - a hint only
        return ""
    *parents, leaf = key.split(".")
    node: Any = base
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return ""
    close = difflib.get_close_matches(leaf, [str(k) for k in node if k != "defaults"], n=1)
    return f"; did you mean {'.'.join([*parents, close[0]])!r}?" if close else ""


def compose_config(args: argparse.Namespace) -> dict[str, Any]:
    """The composed configuration as a plain dict (mandatory '???' values left for the Study to name)."""
    from hydra import compose, initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(args.overrides)
    config_dir, config_name = args.config_dir, args.config_name
    if args.config:
        if config_dir or config_name:
            raise ConfigError("--config: give either --config FILE or --config-dir/--config-name, not both")
        path = Path(args.config)
        if not path.is_file():
            raise ConfigError(f"--config: {path}: file not found")
        config_dir, config_name = str(path.parent), path.name.removesuffix(".yaml").removesuffix(".yml")
    if bool(config_dir) != bool(config_name):
        raise ConfigError("--config-dir and --config-name: give both (or --config FILE)")
    from flops_fit.conf import register_schema

    register_schema()
    GlobalHydra.instance().clear()
    try:
        if config_dir:
            d = Path(config_dir).resolve()
            if not d.is_dir():
                raise ConfigError(f"--config-dir: {config_dir} is not a directory")
            init = initialize_config_dir(str(d), version_base=None)
            overrides = [f"hydra.searchpath=[pkg://{CONFIG_MODULE}]", *overrides]
        else:
            init = initialize_config_module(CONFIG_MODULE, version_base=None)
            config_name = CONFIG_NAME
        with init:
            cfg = compose(config_name, overrides=overrides)
            if args.cfg:
                print(OmegaConf.to_yaml(cfg, resolve=False), end="")
            container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_hydra_message(exc)) from exc
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(container, dict)
    return container


def _print_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    print(f"warning: {_one_line(str(message))}", file=sys.stderr)


# ---------------------------------------------------------------------------
# the stages


def _do_plan(study: Any) -> None:
    plan = study.plan()
    print(plan.summary())
    n = len(plan.runnable)
    print(
        f"wrote {study.output_dir / 'sweep.json'}: {n} runnable experiment(s) "
        f"(experiment_id=0..{n - 1} for one run per job-array task)"
    )


class StageFailed(RuntimeError):
    """Every run a stage trained failed: the command exits with status 1 (its report says why)."""


def _do_train(study: Any) -> None:
    from flops_fit.planning import SweepPlan

    report = study.train()
    if isinstance(report, SweepPlan):  # an adaptive sweep: what it decided, round by round
        from flops_fit.adaptive import progress_lines

        print("\n".join(progress_lines(report)))
        return
    print(report.summary())
    if report.trained and not any(r.ok for r in report.trained):
        first = report.trained[0]
        why = (first.error or first.status).strip().splitlines()[-1] if (first.error or first.status) else ""
        raise StageFailed(f"all {len(report.trained)} run(s) of this stage failed or diverged; first: "
                          f"{first.experiment_id}: {why}")


def _do_analyze(study: Any) -> Any:
    result = study.analyze()
    print(result.summary())
    print(result.chinchilla_table())
    forecast = study.forecast(result)
    if forecast:
        print(forecast)
    print(f"wrote {study.output_dir / 'analysis' / 'scaling_laws.json'}")
    return result


def _do_visualize(study: Any) -> None:
    for path in study.visualize():
        print(f"wrote {path}")


def _do_run(study: Any) -> None:
    _do_plan(study)
    _do_train(study)
    result = _do_analyze(study)
    for path in study.visualize(result):  # drawn from the fit just made: one fit per ff-run
        print(f"wrote {path}")


_STAGES: dict[str, Callable[[Any], None]] = {
    "plan": _do_plan,
    "train": _do_train,
    "analyze": _do_analyze,
    "visualize": _do_visualize,
    "run": _do_run,
}


def main(stage: str, argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    args = _parser(stage).parse_args(list(sys.argv[1:] if argv is None else argv))
    verbose = [any(o.strip().lower() in ("verbose=true", "verbose=1", "verbose=yes") for o in args.overrides)]

    def run() -> None:
        config = compose_config(args)
        if args.cfg:
            return
        verbose[0] = bool(config.get("verbose")) or verbose[0]  # a study file may ask for tracebacks too
        from flops_fit.cli.study import Study

        _STAGES[stage](Study(config))

    return _guarded(f"ff-{stage}", run, verbose)


def _guarded(command: str, run: Callable[[], None], verbose: list[bool]) -> int:
    """Run a command's work: exit 0, 2 for a bad command line or configuration, 1 for any other error (one line
    on stderr; the traceback too with verbose), 130 on Ctrl-C."""
    os.environ.setdefault("MPLBACKEND", "Agg")  # plots are files; never open a window
    old_showwarning = warnings.showwarning
    warnings.showwarning = _print_warning
    try:
        run()
        return EXIT_OK
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every error becomes one line (and a status)
        if verbose[0]:
            traceback.print_exc()
        code = EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_ERROR
        msg = _one_line(str(exc)) or type(exc).__name__
        if not isinstance(exc, (ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError)):
            msg = f"{type(exc).__name__}: {msg}"
        print(f"{command}: error: {msg}", file=sys.stderr)
        return code
    finally:
        warnings.showwarning = old_showwarning


def train_model_main(argv: Sequence[str] | None = None) -> int:
    """ff-train-model: train one model from an experiment config (see flops_fit.experiment)."""
    p = argparse.ArgumentParser(
        prog="ff-train-model",
        description="Train one model from an experiment config (experiment_name, data, tokenizer, model, training, "
                    "logging, random_seed): checkpoints, resumes after a kill, evaluates, writes output_dir/run.json "
                    "and output_dir/model/.",
        epilog="Overrides: dotted keys, e.g. training.tokens=50000 logging.output_dir=runs/x. Shipped examples: "
               "tiny_bert, tiny_lstm, tiny_lstm_bidirectional, tiny_gru, tiny_rnn, tiny_gpt2, tiny_gpt, tiny_vit, "
               "tiny_gmm_centers, tiny_gmm_assignments.",
    )
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="experiment YAML, or a shipped example's name")
    p.add_argument("overrides", nargs="*", help="key=value (values parsed as YAML)")
    p.add_argument("--verbose", action="store_true", help="show the full traceback of an error")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))

    def run() -> None:
        import yaml

        overrides = {}
        for item in args.overrides:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"overrides: expected key=value, found {item!r}")
            overrides[key] = yaml.safe_load(value)
        from flops_fit.experiment import train_model

        print(train_model(args.config, overrides=overrides).summary())

    return _guarded("ff-train-model", run, [args.verbose])


def plan_main(argv: Sequence[str] | None = None) -> int:
    """ff-plan"""
    return main("plan", argv)


def train_main(argv: Sequence[str] | None = None) -> int:
    """ff-train"""
    return main("train", argv)


def analyze_main(argv: Sequence[str] | None = None) -> int:
    """ff-analyze"""
    return main("analyze", argv)


def visualize_main(argv: Sequence[str] | None = None) -> int:
    """ff-visualize"""
    return main("visualize", argv)


def run_main(argv: Sequence[str] | None = None) -> int:
    """ff-run"""
    return main("run", argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "run", sys.argv[2:]))
