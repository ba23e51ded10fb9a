"""`editthinker-data plan`: what a build will cost, before anything expensive starts.

Pooling runs for real (headers only, no dataset written) so the pair counts are the build's
own; the rates come from the config's `plan:` priors or from a short calibration build of
the same config (`--calibrate N`, the build command's path into a temporary folder)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from editthinker_data.cli.app import OutputOption, app, checked_config
from editthinker_data.cli.term import console, fail
from editthinker_data.config import BuildConfig, ConfigError, load_config


def pooled_pairs(cfg: BuildConfig, output: str | None) -> dict[str, int]:
    """Pairs per editor after the build's own pooling; signatures go to the output's run
    state as `pool` writes them, so the build that follows does not decode again."""
    from editthinker_data.core.runenv import state_dir_for
    from editthinker_data.io.imagesig import SignatureCache
    from editthinker_data.pipeline.pooling import pool
    from editthinker_data.stages.pool import pool_records

    state = state_dir_for(output or cfg.output.dir, cfg.run.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    sigs = SignatureCache(state / "imagesig.sqlite")
    try:  # embedded images are only hashed: nothing is written
        result = pool(pool_records(cfg), cfg, sigs=sigs, store=lambda sha, ext, data: f"plan:{sha}.{ext}")
    finally:
        sigs.close()
    counts = {e.name: 0 for e in cfg.editors}
    for entry in result.entries:
        counts[entry.editor] += 1
    return counts


def calibration_build(cfg: BuildConfig, pairs: int, out_dir: Path):
    """A real build of `pairs` pooled pairs (source.max_pairs caps it, balanced over task
    types and editors as the full pool is), without exports or report; its measurements."""
    from editthinker_data.core import runenv

    data = cfg.model_dump()
    cap = cfg.source.max_pairs
    data["source"]["max_pairs"] = min(pairs, cap) if cap else pairs
    data["output"].update(exports=[], report=False)
    data["run"]["state_dir"] = None
    data["run"]["llm_cache"] = "output"  # a fresh cache: requests are measured, not replayed
    state = runenv.prepare(runenv.state_dir_for(str(out_dir), None))
    from editthinker_data.core.outcome import BuildError
    from editthinker_data.io.storage import open_storage
    from editthinker_data.pipeline.plan_measure import measure
    from flows.build_dataset import build_dataset

    try:
        build_dataset(data, str(out_dir), str(state))
    except BuildError as exc:
        fail(f"the calibration build of {pairs} pairs in {out_dir} did not finish: {exc}", code=exc.exit_code)
    return measure(open_storage(str(out_dir)))


@app.command()
def plan(
    config: Annotated[Path, typer.Argument(help="build config (YAML); priors in its plan: section")],
    calibrate: Annotated[
        int | None,
        typer.Option(min=1, help="measure turns, seconds and tokens on a real build of N pairs first"),
    ] = None,
    output: OutputOption = None,
    pairs: Annotated[
        int | None,
        typer.Option(min=1, help="assume N pooled pairs (split by editor ratio) instead of pooling"),
    ] = None,
    calibration_output: Annotated[
        Path | None, typer.Option(help="keep the calibration build here (default: a temporary folder)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
) -> None:
    """Print what a build will cost before it starts: pairs and expected turns, edits and
    GPU-hours per editor, calls, tokens and cost per model role, wall time on the cluster."""
    from editthinker_data.pipeline.plan import check_plan, editor_split, estimate, measured_rates, prior_rates
    from editthinker_data.pipeline.preflight import check_sources

    if calibrate:
        cfg = checked_config(config)  # a real build follows: every check a build runs
    else:
        try:
            cfg = load_config(config)
            check_backends(cfg)
        except ConfigError as err:
            fail(str(err))
    try:
        check_plan(cfg, calibrating=bool(calibrate))
        if pairs is None:
            check_sources(cfg)
        by_editor = editor_split(cfg, pairs) if pairs else pooled_pairs(cfg, output)
    except ConfigError as err:
        fail(str(err))
    if not sum(by_editor.values()):
        fail(f"{config}: pooling kept no pairs; `editthinker-data pool {config}` shows why")
    if calibrate:
        out_dir = calibration_output or Path(tempfile.mkdtemp(prefix="etd-calibrate-"))
        try:
            with console.status(f"calibrating on a build of {calibrate} pairs ..."):
                measured = calibration_build(cfg, calibrate, out_dir)
        finally:
            if calibration_output is None:
                shutil.rmtree(out_dir, ignore_errors=True)
        try:
            rates = measured_rates(cfg, measured)
        except ConfigError as err:
            fail(str(err))
    else:
        rates = prior_rates(cfg)
    result = estimate(cfg, by_editor, rates)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    print_plan(result)


def check_backends(cfg: BuildConfig) -> None:
    """Backend kinds and params, without loading models or reaching the cluster: a plan is
    made before either exists."""
    from editthinker_data.backends import create_backend

    for role, spec in cfg.backend_specs():
        try:
            create_backend(role, spec, cfg.seed)
        except (ValueError, FileNotFoundError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"{role} {spec.name!r}: {err}") from None


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds:,.1f} s"


def _n(x: float) -> str:
    """Counts short enough for an 80-column table (the JSON keeps them exact)."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e4, "K")):
        if x >= size:
            return f"{x / (1e3 if unit == 'K' else size):,.1f}{unit}"
    return f"{x:,.0f}"


def _usd(x: float) -> str:
    return f"${x:,.0f}" if x >= 100 else f"${x:.2f}"


def _table(title: str, columns: tuple[str, ...], left: int) -> Table:
    table = Table(
        title=title, header_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1),
        collapse_padding=True, pad_edge=False, show_edge=False,
    )  # fmt: skip
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i < left else "right", no_wrap=True)
    return table


def print_plan(p: dict[str, Any]) -> None:
    console.print(
        f"[bold]{p['pairs']:,} pairs[/], {p['turns_per_pair']:.2f} turns per pair expected "
        f"(at most {p['max_turns']}); rates from {p['basis']}"
    )
    table = _table("editors", ("editor", "pairs", "turns", "edits", "s/edit", "GPUs", "GPU-h", "wall"), 1)
    for name, e in p["editors"].items():
        table.add_row(
            name, _n(e["pairs"]), f"{e['turns_per_pair']:.2f}", _n(e["edits"]), f"{e['edit_seconds']:g}",
            f"{e['actors']}x{e['gpus_per_actor']:g}", f"{e['gpu_hours']:,.1f}", _hours(e["wall_s"]),
        )  # fmt: skip
    console.print(table)
    table = _table(
        "model roles", ("role", "model", "calls", "requests", "tok in", "tok out", "cost", "wall"), 2
    )
    for role, r in p["roles"].items():
        table.add_row(
            role, r["model"], _n(r["calls"]), _n(r["requests"]), _n(r["tokens_in"]), _n(r["tokens_out"]),
            _usd(r["cost_usd"]), _hours(r["wall_s"]),
        )  # fmt: skip
    console.print(table)
    console.print("  GPUs: actors x GPUs each; wall: the pool alone at its actor count")
    t, c = p["total"], p["cluster"]
    days = f" ({c['wall_s'] / 86400:.1f} days)" if c["wall_s"] >= 2 * 86400 else ""
    services = f" (+{c['service_gpus']:g} behind editor services)" if c["service_gpus"] else ""
    console.print(
        f"total: {t['edits']:,} edits, {t['gpu_hours']:,.1f} GPU-hours, {t['requests']:,} model requests, "
        f"{t['tokens_in'] + t['tokens_out']:,} tokens, {_usd(t['cost_usd'])}"
    )
    console.print(
        f"cluster: {c['gpus']:g} GPUs for Ray actors{services}; wall time about {_hours(c['wall_s'])}{days}, set by "
        f"{c['bottleneck']} (the scheduler keeps every pool busy at once, so the slowest pool sets "
        "the pace; add start-up and the last trajectories' tail)"
    )
    for line in p["assumed"]:
        console.print(f"  assumed: {line}")
