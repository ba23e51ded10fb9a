"""Process environment for a build: Prefect in ephemeral mode and Ray with their state under
the run directory, no telemetry. Must run before Prefect is imported.

The run state (Prefect's database, Ray's sockets and logs, the signature and local answer
caches) is always an absolute local folder: Ray refuses a relative temp dir, and a state
folder that moved with the working directory would lose its caches. A local output keeps its
state beside the data (`<output>/_state`); an object-store output keeps it in a per-user
folder keyed by the output URL, so a rerun of the same URL from anywhere finds it again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from editthinker_data.core.layout import STATE_DIR


def user_state_root() -> Path:
    """`$EDITTHINKER_STATE_HOME`, else `$XDG_STATE_HOME/editthinker-data`, else
    `~/.local/state/editthinker-data` (the XDG base-directory default)."""
    explicit = os.environ.get("EDITTHINKER_STATE_HOME")
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return (base / "editthinker-data").resolve()


def default_state_dir(output: str) -> Path:
    """Where a build into `output` keeps its run state when neither `--state-dir` nor
    `run.state_dir` says otherwise."""
    if "://" in output and not output.startswith("file://"):
        return user_state_root() / hashlib.sha256(output.encode()).hexdigest()[:16]
    return Path(output.removeprefix("file://")).resolve() / STATE_DIR


def state_dir_for(output: str, explicit: str | Path | None = None) -> Path:
    return Path(explicit).expanduser().resolve() if explicit else default_state_dir(output)


def prepare(state_dir: str | Path) -> Path:
    state = Path(state_dir).expanduser().resolve()
    (state / "prefect").mkdir(parents=True, exist_ok=True)
    defaults = {
        "PREFECT_HOME": str(state / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        # A token in the environment means a cluster with token authentication (Ray's security
        # guide); without one, a local cluster needs none.
        "RAY_AUTH_MODE": "token"
        if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
        else "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DEDUP_LOGS": "0",
        "EDITTHINKER_CACHE_DIR": str(state / "cache"),
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    return state
