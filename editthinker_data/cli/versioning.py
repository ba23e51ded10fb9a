"""The build command's side of dataset versions (`--versions` / `output.versions`): which
version it writes and what changed, before anything starts; `latest` after it finished."""

from __future__ import annotations

import typer

from editthinker_data.cli.term import console, fail, failing_as_paragraph
from editthinker_data.config import ConfigError


def sourced(cfg, output: str | None, state_dir: str | None):
    """The config with its inputs' content measured (part of the fingerprint)."""
    from editthinker_data.stages.versions import measure_sources

    try:
        return measure_sources(cfg, output or cfg.output.dir, state_dir)
    except ConfigError as err:
        fail(str(err))


def open_version(cfg, output: str | None, state_dir: str | None, overwrite: bool):
    """The version this build writes, its notes printed; exits 0 when the latest version
    already holds this config and content."""
    from editthinker_data.stages.versions import plan_version

    root = output or cfg.output.dir
    if overwrite:
        fail(
            f"--overwrite does not apply to a versioned build: each build writes a new version under {root}; "
            "delete a version's folder to drop it"
        )
    with failing_as_paragraph(f"dataset root {root}"):
        plan = plan_version(cfg, root, state_dir)
    for note in plan.notes:
        console.print(note, markup=False, highlight=False, soft_wrap=True)
    if plan.up_to_date:
        console.print(
            f"{plan.root}: {plan.name} already holds this config and these sources "
            f"(fingerprint {plan.cfg.fingerprint()}); nothing to build, latest stays {plan.name}",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(0)
    console.print(
        f"dataset version {plan.name} (previous: {plan.previous or 'none'})", markup=False, soft_wrap=True
    )
    return plan


def finish(plan) -> None:
    from editthinker_data.stages.versions import finish_version

    finish_version(plan)
    console.print(f"{plan.root}/latest -> {plan.name}", markup=False, highlight=False, soft_wrap=True)
