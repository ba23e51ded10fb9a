"""Checks that need more than the schema, run before Prefect, Ray or any model starts."""

from __future__ import annotations

from editthinker_data.backends import create_backend
from editthinker_data.config import BuildConfig, ConfigError
from editthinker_data.storage import StorageError, local_path


def preflight(cfg: BuildConfig) -> None:
    for role, spec in cfg.backend_specs():
        try:
            backend = create_backend(role, spec, cfg.seed)  # unknown kinds and bad params fail here
            if cfg.run.ray_address is None and hasattr(backend, "preflight"):
                backend.preflight()  # the actors run here: a missing model fails before Ray starts
        except FileNotFoundError as err:
            raise ConfigError(f"{role} {spec.name!r}: {err}") from None
        except ValueError as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"{role} {spec.name!r}: {err}") from None
    if cfg.source.manifest.startswith("s3://"):
        return  # checked when pooling reads it (credentials may only exist where the build runs)
    try:
        manifest = local_path(cfg.source.manifest)
    except StorageError as err:
        raise ConfigError(f"source.manifest: {err}") from None
    if not manifest.is_file():
        raise ConfigError(
            f"source.manifest: {manifest} not found; fix the path (relative paths resolve against the config file)"
        )
