"""What every build does before it runs anything, wherever it was started: the CLI's `build`
and `pool` and a scheduled deployment run share these steps, so a deployment run sees the
same config (environment overrides, paths resolved against the config file, preflight),
the same output location, the same run state folder and process environment, and the same
one-writer lease as a build typed at a terminal. Every problem is a ConfigError with its fix,
raised before any GPU work; a held output is `OutputBusy`. Pure: no Prefect, no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from editthinker_data.config import BuildConfig, ConfigError, load_config, parse_config
from editthinker_data.core import runenv
from editthinker_data.io.lease import TTL_S, OutputLease, holder_info
from editthinker_data.io.storage import Storage, is_remote, local_path, read_url
from editthinker_data.pipeline.preflight import check_sources, preflight


def config_location(config: str | Path) -> str:
    """A config path made absolute (a deployment runs in another working directory), or a
    URL kept as it is."""
    text = str(config)
    return text if is_remote(text) else str(local_path(text).expanduser().resolve())


def load_build_config(config: str | Path, sources_only: bool = False) -> BuildConfig:
    """The config at a local path, file:// or s3:// URL, with its environment overrides,
    checked by preflight (the sources alone for `pool`). Relative paths in a config read from
    a URL resolve against the working directory: name sources there by absolute path or URL."""
    location = str(config)
    if is_remote(location):
        try:
            data = yaml.safe_load(read_url(location))
        except FileNotFoundError:
            raise ConfigError(f"config {location} not found; upload it first or pass a local path") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"config {location} is not valid YAML: {err}") from None
        cfg = parse_config(data, origin=location)
    else:
        cfg = load_config(local_path(location))
    (check_sources if sources_only else preflight)(cfg)
    return cfg


def output_location(cfg: BuildConfig, output: str | None) -> str:
    """`--output` over `output.dir`; a local one absolute (resolved against the working
    directory of whoever prepares the build), a URL as it is."""
    target = output or cfg.output.dir
    return target if is_remote(target) else str(local_path(target).expanduser().resolve())


def prepare_state(output: str, state_dir: str | Path | None) -> Path:
    """The run state folder (`state_dir`, else the default for `output`) and the process
    environment of Prefect and Ray set up in it."""
    try:
        return runenv.prepare(runenv.state_dir_for(output, state_dir))
    except OSError as err:
        raise ConfigError(
            f"cannot create the run state folder ({err.strerror}: {err.filename}); pass --state-dir "
            "with a writable local folder, or set EDITTHINKER_STATE_HOME"
        ) from None


@dataclass(frozen=True)
class PreparedBuild:
    config: str  # where the config was read from
    cfg: BuildConfig
    output: str
    state_dir: Path


def prepare_build(
    config: str | Path, output: str | None = None, state_dir: str | None = None
) -> PreparedBuild:
    """Load and check the config, place the output and the run state: everything a build
    needs before it may claim its output (`claim_output`)."""
    cfg = load_build_config(config)
    out = output_location(cfg, output)
    return PreparedBuild(
        config_location(config), cfg, out, prepare_state(out, state_dir or cfg.run.state_dir)
    )


def claim_output(cfg: BuildConfig, storage: Storage, command: str, ttl_s: float = TTL_S) -> OutputLease:
    """The output's lease, held (a heartbeat renews it) until `release()` or the end of a
    `with` block; OutputBusy names the build that holds it instead."""
    return OutputLease(storage, holder_info(cfg.name, cfg.fingerprint(), command), ttl_s=ttl_s).acquire()
