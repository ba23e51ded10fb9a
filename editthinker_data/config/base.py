"""What every config section shares: strict, frozen models and the one error type."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

ENV_PREFIX = "EDITTHINKER__"
_SECRET_NAME = re.compile(r"(api[_-]?key|secret|password|token)$", re.IGNORECASE)


class ConfigError(ValueError):
    """A configuration problem, reported before any work starts."""


class Strict(BaseModel):
    # validate_default: defaults are coerced like given values (0 -> 0.0 for floats), so a
    # config and its dump-and-reload give the same fingerprint.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
