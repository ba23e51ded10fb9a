"""Connecting to Ray: join a configured cluster, reuse the one this process already has, or
start a local one whose state lives under the run directory (not the user's home)."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import ray

log = logging.getLogger(__name__)

# Ray puts Unix sockets under its temp dir; their paths must stay under ~107 bytes.
_MAX_TEMP_DIR = 60


def ray_temp_dir(state_dir: Path) -> Path:
    wanted = state_dir / "ray"
    if len(str(wanted)) <= _MAX_TEMP_DIR:
        return wanted
    digest = hashlib.sha256(str(wanted).encode()).hexdigest()[:10]
    short = Path(tempfile.gettempdir()) / f"etd-ray-{digest}"
    log.info("Ray state goes to %s (the run directory's path is too long for Ray's sockets)", short)
    return short


def ensure_ray(address: str | None, num_cpus: int | None, state_dir: Path) -> bool:
    """Returns True when this call started Ray (and so should shut it down)."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, log_to_driver=False)
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
