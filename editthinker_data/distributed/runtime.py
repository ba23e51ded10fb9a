"""Connecting to Ray: join a configured cluster, reuse the one this process already has, or
start a local one whose state lives under the run directory (not the user's home)."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import ray

log = logging.getLogger(__name__)

# Ray puts its Unix sockets in <temp dir>/<session>/sockets/, and refuses a socket path over
# 107 bytes (103 on macOS: ray._private.utils.validate_socket_filepath). What it adds to the
# temp dir, from Ray 2.60's source:
# - the session folder, `session_<%Y-%m-%d_%H-%M-%S_%f>_<pid>` (ray/_private/node.py), 42
#   characters with a 7-digit pid (Linux's pid_max goes up to 2**22, 4194304), so 43 with its "/";
# - "/sockets/";
# - the socket's name: `raylet` and `plasma_store` (node.py `_prepare_socket_file`, ".1", ".2"
#   appended when one is taken) and `dash_<Module>` for each dashboard module
#   (ray/dashboard/subprocesses/utils.py), the longest `dash_TaskEventsHead`, 19 characters.
#   24 leaves room for a longer module name in a later Ray.
RAY_SESSION_DIR = len("/session_2026-12-06_22-00-44_123456_") + 7
RAY_SOCKETS_DIR = len("/sockets/")
RAY_SOCKET_NAME = 24
MAX_SOCKET_PATH = 103 if sys.platform == "darwin" else 107
MAX_TEMP_DIR = MAX_SOCKET_PATH - RAY_SESSION_DIR - RAY_SOCKETS_DIR - RAY_SOCKET_NAME  # 31 bytes on Linux


def longest_socket_path(temp_dir: Path) -> int:
    """Bytes of the longest socket path Ray may make under `temp_dir`, whatever its session."""
    return len(str(temp_dir).encode()) + RAY_SESSION_DIR + RAY_SOCKETS_DIR + RAY_SOCKET_NAME


def ray_temp_dir(state_dir: Path) -> Path:
    """`<state>/ray` when Ray's sockets fit under it, else a short folder under the system's
    temp dir named by its hash (a default state folder, under ~/.local/state, rarely fits)."""
    wanted = state_dir / "ray"
    if longest_socket_path(wanted) <= MAX_SOCKET_PATH:
        return wanted
    digest = hashlib.sha256(str(wanted).encode()).hexdigest()[:10]
    for base in dict.fromkeys((tempfile.gettempdir(), "/tmp")):
        short = Path(base) / f"etd-ray-{digest}"
        if longest_socket_path(short) <= MAX_SOCKET_PATH:
            log.info("Ray state goes to %s (the run state's path is too long for Ray's sockets)", short)
            return short
    raise RuntimeError(
        f"no folder short enough for Ray's sockets: {wanted} and {short} exceed {MAX_TEMP_DIR} bytes "
        f"(Ray adds up to {MAX_SOCKET_PATH - MAX_TEMP_DIR} for its session and socket names); set TMPDIR "
        "or --state-dir to a shorter path"
    )


class RayJoinError(ConnectionError):
    """The head answered on its port but Ray could not join it: most often token
    authentication that this process was not given."""

    def __init__(self, address: str, err: Exception):
        mode = os.environ.get("RAY_AUTH_MODE", "disabled")
        hint = (
            "If the cluster uses token authentication (RAY_AUTH_MODE=token on its nodes), export "
            "RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, or "
            "the file ~/.ray/auth_token) before the build"
            if mode != "token"
            else "RAY_AUTH_MODE=token is set: check that RAY_AUTH_TOKEN is the cluster's token"
        )
        super().__init__(
            f"could not join the Ray cluster at {address} ({err}). {hint}; `ray status --address "
            f"{address}` from this machine tells whether it can connect."
        )


def ensure_ray(address: str | None, num_cpus: int | None, state_dir: Path) -> bool:
    """Returns True when this call started Ray (and so should shut it down)."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as err:
            raise RayJoinError(address, err) from None
        log.info("joined the Ray cluster at %s", address)
        return True
    temp = ray_temp_dir(state_dir)
    temp.mkdir(parents=True, exist_ok=True)
    ray.init(
        num_cpus=num_cpus or os.cpu_count() or 1,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=str(temp),
        configure_logging=True,
        logging_level=logging.WARNING,
    )
    return True


def shutdown() -> None:
    if ray.is_initialized():
        ray.shutdown()


def ray_get(ref: Any, timeout_s: float | None = None) -> Any:
    """`ray.get` for the flow, which does not import Ray itself."""
    return ray.get(ref, timeout=timeout_s)
