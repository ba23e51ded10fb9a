"""`deploy`: register a scheduled build with a Prefect server (flows/scheduled_build.py).

The config is checked here first (a bad one fails now, not at 02:00), but the deployment
stores only its location: each run reads it again, through the same preparation as `build`.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from editthinker_data.cli.app import OutputOption, app
from editthinker_data.cli.term import console, fail


@app.command()
def deploy(
    config: Annotated[str, typer.Argument(help="build config: a path (made absolute) or an s3:// URL")],
    cron: Annotated[str, typer.Option("--cron", help='when to build, e.g. "0 2 * * *" (02:00 daily)')],
    work_pool: Annotated[
        str, typer.Option("--work-pool", help="Prefect work pool (created, type process, if missing)")
    ],
    name: Annotated[str | None, typer.Option(help="deployment name (default: the config's name)")] = None,
    output: OutputOption = None,
    state_dir: Annotated[
        str | None, typer.Option(help="Prefect/Ray state of each run, a local folder on the worker")
    ] = None,
    timezone: Annotated[str, typer.Option(help="time zone of --cron (IANA name)")] = "UTC",
) -> None:
    """Register a Prefect deployment that builds CONFIG on a cron schedule, one run at a time
    per output; the Prefect server is PREFECT_API_URL's. A worker runs it: prefect worker start
    --pool NAME."""
    import os

    if not os.environ.get("PREFECT_API_URL"):  # a worker can never reach an ephemeral server
        fail(
            "PREFECT_API_URL is not set: export your Prefect server's API URL, e.g. "
            "http://127.0.0.1:4200/api after `prefect server start` (see docs/clusters-and-operations.md, Scheduled builds)"
        )
    from editthinker_data.config import ConfigError
    from editthinker_data.execution.prepare import config_location, load_build_config, output_location

    location = config_location(config)
    try:
        cfg = load_build_config(location)
    except ConfigError as err:
        fail(str(err))
    out = output_location(cfg, output)
    deployment = name or cfg.name
    from flows.scheduled_build import FLOW_NAME, cron_schedule, ensure_work_pool, register

    try:
        schedule = cron_schedule(cron, timezone)
    except ValueError as err:
        fail(escape(str(err)))
    try:
        created = ensure_work_pool(work_pool)
        deployment_id = register(deployment, location, out, state_dir, schedule, work_pool)
    except ValueError as err:  # a pool of another type
        fail(escape(str(err)))
    except Exception as err:  # the Prefect server did not answer: say where we looked
        where = os.environ["PREFECT_API_URL"]
        fail(escape(f"cannot register with the Prefect server at {where}: {type(err).__name__}: {err}"))
    if created:
        console.print(f"created work pool {work_pool!r} (type process)")
    console.print(
        escape(
            f"deployment {FLOW_NAME}/{deployment} ({deployment_id}): {location} -> {out}, cron {cron!r} {timezone}"
        )
    )
    console.print(f"start a worker:  prefect worker start --pool {work_pool}")
    console.print(f"run it now:      prefect deployment run {FLOW_NAME}/{deployment}")
