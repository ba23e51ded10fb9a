"""The Typer app, the options several commands share and the config check they all run
first. Each command module registers itself on `app`; `cli/__init__` imports them all."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from editthinker_data.cli.term import fail
from editthinker_data.config import ConfigError


def checked_config(path: Path, sources_only: bool = False):
    """The config, validated and preflighted (the sources alone for `pool`); any problem is
    one paragraph and exit 2, before anything heavy starts."""
    from editthinker_data.execution.prepare import load_build_config

    try:
        return load_build_config(path, sources_only=sources_only)  # the same as a deployment run's
    except ConfigError as err:
        fail(str(err))


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build think-while-edit training data (EditThinker): pool, edit, critique, score, filter, shard.",
)
OutputArg = Annotated[str, typer.Argument(help="a finished build (local path or s3://bucket/prefix)")]
OutputOption = Annotated[
    str | None, typer.Option("--output", "-o", help="output directory or s3:// URL (overrides output.dir)")
]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="delete a previous build of another config in OUTPUT first")
]
EndpointOption = Annotated[
    str | None, typer.Option(envvar="AWS_ENDPOINT_URL_S3", help="S3-compatible endpoint")
]
