"""Output locations: a local folder we can write, or an object-store URL that answers."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.markup import escape

from editthinker_data.cli.term import console, err_console, fail, failing_as_paragraph


def check_local_output(path: Path) -> None:
    """A local output must be a folder we can write: say so in one line, before Prefect and
    Ray start (their state would go inside it)."""
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == path else f"is inside {parent}, which is a file"
            fail(f"output {path} {where}, not a folder; choose a folder path (it is created if missing)")
        if parent.exists():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        fail(
            f"output {path} is not writable ({err.strerror or err}); choose a folder you can write, "
            "or fix its permissions"
        )


def open_output(cfg, output: str | None, overwrite: bool, claim: typer.Context | None = None, measure=None):
    """The output folder or URL (`--output` over `output.dir`), its storage and the config,
    checked to hold nothing of another config (or cleared first with --overwrite). With
    `claim` (the command's context) the output's lease is taken before anything is written
    and held until the command ends; another build holding it stops the command at once
    (exit 75). `measure(cfg)` (the sources' content, cached in the run state) runs once the
    lease is held, so a refused command writes nothing."""
    from editthinker_data.execution.prepare import claim_output, output_location
    from editthinker_data.io.lease import OutputBusy
    from editthinker_data.io.storage import is_remote
    from editthinker_data.stages import check_output, clear_output, output_storage

    out_dir = output_location(cfg, output)
    if not is_remote(out_dir):
        check_local_output(Path(out_dir))
    with failing_as_paragraph(f"output {out_dir}"):
        storage = output_storage(cfg, out_dir)
        if claim:
            try:
                lease = claim_output(cfg, storage, f"editthinker-data {claim.info_name}")
            except OutputBusy as busy:
                fail(escape(str(busy)), code=busy.exit_code)
            claim.with_resource(lease)  # released when the command ends, however it ends
            claim.meta["lease"] = lease
        if measure is not None:
            cfg = measure(cfg)
        if overwrite:
            console.print(f"--overwrite: deleted {clear_output(storage)} objects of the previous build")
        for note in check_output(cfg, storage):  # the sources changed: what it rebuilds
            console.print(note, markup=False, highlight=False, soft_wrap=True)
    return out_dir, storage, cfg


def finished_output(output: str, endpoint_url: str | None) -> str:
    """OUTPUT, or the version its `latest` names when OUTPUT is a versioned build's root, so
    `inspect ROOT` (and export, report, verify, publish) read the newest finished version
    on any storage, with no `$(cat ROOT/latest)` (which an object store cannot give)."""
    from editthinker_data.config import ConfigError
    from editthinker_data.core.layout import STATS_FILE
    from editthinker_data.io.storage import open_storage
    from editthinker_data.stages.versions import read_latest

    storage = open_storage(output, endpoint_url=endpoint_url)
    if storage.exists(STATS_FILE):
        return output
    try:
        name = read_latest(storage)
    except ConfigError as err:
        fail(str(err))
    if name is None:
        return output  # not a build: the command says what is missing
    version = f"{output.rstrip('/')}/{name}"
    err_console.print(escape(f"{output} is a versioned build's root: reading {version} (its latest)"))
    return version


def open_build(output: str, endpoint_url: str | None):
    from editthinker_data.release.report import Build

    try:
        return Build(output, endpoint_url=endpoint_url)
    except FileNotFoundError as err:
        fail(str(err))


def hold_build(ctx: typer.Context, build) -> None:
    """The finished build's output lease, held until the command ends: an export or a report
    writes into the output, so it must not interleave with a build (or another export)
    there. Another holder stops the command at once (exit 75), naming it."""
    from editthinker_data.execution.prepare import claim_output
    from editthinker_data.io.lease import OutputBusy

    try:
        lease = claim_output(build.config, build.storage, f"editthinker-data {ctx.info_name}")
    except OutputBusy as busy:
        fail(escape(str(busy)), code=busy.exit_code)
    ctx.with_resource(lease)
