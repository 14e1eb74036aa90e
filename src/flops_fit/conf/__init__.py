"""The CLI's configuration: YAML for the base study and presets; the training, planning, mock_law and analysis
defaults come from the dataclasses (TrainConfig, PlanSettings, MockLaw, AnalysisOptions): each written once."""

from __future__ import annotations

import dataclasses
from typing import Any

SCHEMA_NAME = "flops_fit_schema"


def schema_defaults() -> dict[str, Any]:
    """The configuration's training, planning, mock_law and analysis defaults, from the dataclasses."""
    from flops_fit.analysis import AnalysisOptions
    from flops_fit.planning import PlanSettings
    from flops_fit.training.config import TrainConfig
    from flops_fit.training.mock import MockLaw

    training = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    training["betas"] = list(training["betas"])
    planning = {f.name: f.default for f in dataclasses.fields(PlanSettings) if f.name != "units_per_step"}
    planning["size_multiple"] = None  # None: the model decides (its head size when sized by d_model)
    planning["probe_size"] = None  # None: the smallest allowed size value
    mock_law = {f.name: f.default for f in dataclasses.fields(MockLaw)}
    analysis = {f.name: f.default for f in dataclasses.fields(AnalysisOptions)
                if f.name in ("exclude_outliers", "n_bootstrap", "seed", "confidence")}
    return {"training": training, "planning": planning, "mock_law": mock_law, "analysis": analysis}


def register_schema() -> None:
    """Put the dataclass sections in Hydra's ConfigStore (config.yaml lists them first in its defaults)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=schema_defaults())
