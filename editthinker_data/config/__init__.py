"""The build config: `base` (strict models, ConfigError), `sources` (the source section),
`model` (every other section and BuildConfig), `loading` (YAML, env overrides, errors)."""

from editthinker_data.config.base import ENV_PREFIX, ConfigError, Strict
from editthinker_data.config.loading import load_config, parse_config
from editthinker_data.config.model import (
    SCALING_FIELDS,
    BackendSpec,
    BalanceConfig,
    BuildConfig,
    EditorSpec,
    LoopConfig,
    OutputConfig,
    Price,
    Resources,
    RunConfig,
    SelectionConfig,
)
from editthinker_data.config.plan import EditorPrior, PlanConfig, RolePrior
from editthinker_data.config.sources import PATH_OPTIONS, SourceConfig, SourceInput

__all__ = [
    "ENV_PREFIX",
    "PATH_OPTIONS",
    "SCALING_FIELDS",
    "BackendSpec",
    "BalanceConfig",
    "BuildConfig",
    "ConfigError",
    "EditorPrior",
    "EditorSpec",
    "LoopConfig",
    "OutputConfig",
    "PlanConfig",
    "Price",
    "Resources",
    "RolePrior",
    "RunConfig",
    "SelectionConfig",
    "SourceConfig",
    "SourceInput",
    "Strict",
    "load_config",
    "parse_config",
]
