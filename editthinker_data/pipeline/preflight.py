"""Checks that need more than the schema, run before Prefect, Ray or any model starts."""

from __future__ import annotations

import socket
from pathlib import Path

from editthinker_data.backends import create_backend
from editthinker_data.config import PATH_OPTIONS, BuildConfig, ConfigError, SourceInput
from editthinker_data.io.storage import StorageError, local_path
from editthinker_data.sources import FORMATS, TEXT_FORMATS, check_options
from editthinker_data.sources.base import SourceFileError, check_utf8_head


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
    check_sources(cfg)
    check_ray_address(cfg.run.ray_address)


def check_ray_address(address: str | None, timeout_s: float = 10.0) -> None:
    """A configured Ray head must answer before anything starts: Ray's own connect retries
    for minutes (ignoring SIGTERM) when nothing listens there."""
    if not address or address == "auto":
        return  # auto: the cluster this node belongs to, found by Ray itself
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"run.ray_address {address!r} is not host:port; use the head's GCS address "
            "(e.g. 10.0.0.1:6379), ray://head:10001 for Ray Client, or auto on a cluster node"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise ConfigError(
            f"run.ray_address {address}: cannot reach a Ray head there ({reason}). Check that "
            f"`ray start --head --port={port}` runs on {host}, that this machine can reach that port "
            "(firewall, security group), or leave run.ray_address unset to start a local cluster."
        ) from None


def check_sources(cfg: BuildConfig) -> None:
    """The source inputs alone (what `pool` needs): formats, paths, options."""
    for spec in cfg.source.all_inputs():
        _check_input(spec)


def _check_input(spec: SourceInput) -> None:
    where = (
        "source.manifest"
        if spec.name == "manifest" and spec.format == "jsonl"
        else f"source input {spec.name!r}"
    )
    if spec.format not in FORMATS:
        raise ConfigError(f"{where}: unknown format {spec.format!r}; use one of {', '.join(FORMATS)}")
    problem = check_options(spec.format, spec.options)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    if spec.path.startswith("s3://"):
        if spec.format != "jsonl":
            raise ConfigError(
                f"{where}: format {spec.format} reads local files; copy {spec.path} locally first"
            )
        return  # checked when pooling reads it (credentials may only exist where the build runs)
    try:
        path = local_path(spec.path)
    except StorageError as err:
        raise ConfigError(f"{where}: {err}") from None
    wants_dir = FORMATS[spec.format].path_is_dir
    fix = "fix the path (relative paths resolve against the config file)"
    if not path.exists():
        raise ConfigError(f"{where}: {path} not found; {fix}")
    if wants_dir is True and not path.is_dir():
        raise ConfigError(f"{where}: format {spec.format} reads a folder, and {path} is a file; {fix}")
    if wants_dir is False and not path.is_file():
        raise ConfigError(f"{where}: format {spec.format} reads a file, and {path} is a folder; {fix}")
    for key in PATH_OPTIONS:
        value = spec.options.get(key)
        if value is not None and not Path(value).exists():
            raise ConfigError(f"{where}: options.{key} {value} not found; {fix}")
    for root in spec.allowed_roots:
        if "://" not in root and not Path(root).is_dir():
            raise ConfigError(f"{where}: allowed_roots entry {root} is not a folder; {fix}")
    if spec.encoding is not None and spec.format not in TEXT_FORMATS:
        raise ConfigError(
            f"{where}: encoding applies to JSON text formats ({', '.join(TEXT_FORMATS)}), not {spec.format}; "
            "remove it"
        )
    if path.is_file():
        _check_file_head(path, spec, where)
    if spec.format == "hf_disk":
        try:
            import datasets  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"{where}: format hf_disk needs the datasets library: pip install datasets"
            ) from None


def _check_file_head(path: Path, spec: SourceInput, where: str) -> None:
    """An empty file, or a JSON text file plainly not in UTF-8, fails before any work."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        raise ConfigError(f"{where}: {path} is empty (0 bytes); fix the path or remove the input")
    if spec.format in TEXT_FORMATS and spec.encoding is None:
        try:
            check_utf8_head(head, path.name)
        except SourceFileError as err:
            raise ConfigError(f"{where}: {err}") from None
