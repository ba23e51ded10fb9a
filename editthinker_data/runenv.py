"""Process environment for a build: Prefect in ephemeral mode and Ray with their state under
the run directory, no telemetry. Must run before Prefect is imported."""

from __future__ import annotations

import os
from pathlib import Path


def prepare(state_dir: str | Path) -> Path:
    state = Path(state_dir).resolve()
    (state / "prefect").mkdir(parents=True, exist_ok=True)
    defaults = {
        "PREFECT_HOME": str(state / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DEDUP_LOGS": "0",
        "EDITTHINKER_CACHE_DIR": str(state / "cache"),
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    return state
