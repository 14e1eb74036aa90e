"""The CLI's configuration: YAML for the base study and presets; the training and planning sections come from
the dataclasses (TrainConfig, PlanSettings), so each default is written once."""

from __future__ import annotations

import dataclasses
from typing import Any

SCHEMA_NAME = "flops_fit_schema"


def schema_defaults() -> dict[str, Any]:
    """The configuration's training and planning sections, from the dataclasses."""
    from flops_fit.planning import PlanSettings
    from flops_fit.training.config import TrainConfig

    training = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    training["betas"] = list(training["betas"])
    planning = {f.name: f.default for f in dataclasses.fields(PlanSettings) if f.name != "units_per_step"}
    planning["size_multiple"] = None  # None: the model decides (its head size when sized by d_model)
    planning["probe_size"] = None  # None: the smallest allowed size value
    return {"training": training, "planning": planning}


def register_schema() -> None:
    """Put the dataclass sections in Hydra's ConfigStore (config.yaml lists them first in its defaults)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=schema_defaults())
