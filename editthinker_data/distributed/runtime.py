"""Connecting to Ray: join a configured cluster, reuse the one this process already has, or
start a local one whose state lives under the run directory (not the user's home)."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import ray

log = logging.getLogger(__name__)

# Ray puts Unix sockets under its temp dir, and a socket's path must stay within 107 bytes.
# Below the temp dir Ray adds up to this much (a 7-digit pid), so a 57-byte run dir failed.
SOCKET_SUFFIX = "/session_2026-12-06_22-14-57_141199_4194304/sockets/plasma_store"
_MAX_TEMP_DIR = 107 - len(SOCKET_SUFFIX)


def ray_temp_dir(state_dir: Path) -> Path:
    wanted = state_dir / "ray"
    if len(str(wanted)) <= _MAX_TEMP_DIR:
        return wanted
    digest = hashlib.sha256(str(wanted).encode()).hexdigest()[:10]
    short = Path(tempfile.gettempdir()) / f"etd-ray-{digest}"
    log.info("Ray state goes to %s (the run directory's path is too long for Ray's sockets)", short)
    return short


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
