"""editthinker-data: a thin command line over the build flow and the build reader.

Configuration is validated before anything heavy is imported, so a bad config answers in
well under a second with the key, the value and the fix. `tables` renders what the
commands print (80 columns wide), `outputs` checks and opens output locations, `term`
holds the consoles and the one-paragraph error.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from editthinker_data.cli import _lean  # noqa: F401  (first: sets EDITTHINKER_LEAN_IMPORTS)
from editthinker_data.cli import deploy as _deploy  # noqa: F401  (registers `deploy`)
from editthinker_data.cli import plan as _plan  # noqa: F401  (registers `plan`)
from editthinker_data.cli import publish as _publish  # noqa: F401  (registers `publish`)
from editthinker_data.cli import serve as _serve  # noqa: F401  (registers `serve`)
from editthinker_data.cli import status as _status  # noqa: F401  (registers `status`)
from editthinker_data.cli import tiny as _tiny  # noqa: F401  (registers `tiny-editors`)
from editthinker_data.cli.app import (
    EndpointOption,
    OutputArg,
    OutputOption,
    OverwriteOption,
    app,
    checked_config,
)
from editthinker_data.cli.outputs import finished_output, hold_build, open_build, open_output
from editthinker_data.cli.tables import (
    balance_table,
    bar,
    counts,
    pool_tables,
    print_licences,
    print_unmapped_labels,
    print_unreachable,
    progress_table,
    show_trajectory,
    summary_table,
)
from editthinker_data.cli.term import console, err_console, fail, storage_problem
from editthinker_data.cli.versioning import finish as finish_version
from editthinker_data.cli.versioning import open_version, sourced
from editthinker_data.config import BuildConfig, ConfigError
from editthinker_data.core.layout import POOL_UNIT, marker_name


@app.command()
def pool(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(help="build config (YAML) with source.inputs or source.manifest")],
    output: OutputOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Pool source pairs only: read every input, dedup, balance, write pool/pairs.parquet;
    a later `build` of the same config and output starts from this pool."""
    cfg = checked_config(config, sources_only=True)
    from editthinker_data.core.layout import POOL_UNIT
    from editthinker_data.execution.base import LocalExecutor
    from editthinker_data.stages import PoolStage

    out_dir, storage, cfg = open_output(
        cfg, output, overwrite, claim=ctx, measure=lambda c: sourced(c, output, None)
    )
    try:
        with console.status("pooling ..."):
            report = LocalExecutor().run_one(PoolStage(cfg), storage, POOL_UNIT)
    except ConfigError as err:  # an input found empty or in the wrong encoding while read
        fail(str(err))
    for table in pool_tables(report):
        console.print(table)
    print_licences(report.licences, report.licence_warnings)
    print_unmapped_labels(report.by_source)
    s = report.stats
    console.print(
        f"{report.pairs} pairs in {len(report.partitions)} partitions -> {out_dir}/pool/pairs.parquet; "
        f"{sum(s['failed'].values())} unusable records named in {out_dir}/failures.jsonl"
    )


@app.command()
def build(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(help="build config (YAML); start from configs/demo.yaml")],
    output: OutputOption = None,
    state_dir: Annotated[
        str | None,
        typer.Option(
            help="Prefect/Ray state, a local folder (default: <output>/_state; for s3:// outputs "
            "~/.local/state/editthinker-data/<hash>)"
        ),
    ] = None,
    overwrite: OverwriteOption = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="insist on continuing an unfinished build in OUTPUT (reruns always do)"
        ),
    ] = False,
    versions: Annotated[
        bool,
        typer.Option(
            "--versions",
            help="OUTPUT is a dataset root: write a new version OUTPUT/vNNNN, reusing unchanged pairs, "
            "and point OUTPUT/latest at it (also output.versions: true)",
        ),
    ] = False,
) -> None:
    """Run the build flow: pool -> think-while-edit -> score -> filter -> split -> shards."""
    started = time.monotonic()
    target = _open_build(ctx, checked_config(config), output, state_dir, overwrite, resume, versions)
    console.print(
        f"[bold]{target.cfg.name}[/]: building into {target.out_dir} (config {config}, "
        f"fingerprint {target.cfg.fingerprint()})"
    )
    again = ["editthinker-data", "build", str(config), "--output", str(target.out_dir)]
    result = _run_build(target, again + (["--state-dir", state_dir] if state_dir else []))
    if target.version is not None:
        finish_version(target.version)
    _print_build(result, target.out_dir, started)
    if ctx.meta["lease"].lost:  # stalled past its TTL while another build took the output over
        err_console.print(
            escape(f"warning: {ctx.meta['lease'].lost} during this build; verify {target.out_dir}")
        )


@dataclass(frozen=True)
class _BuildTarget:
    """Where a build writes: its config (with the sources measured), output, run state and,
    for a versioned root, the version it makes."""

    cfg: BuildConfig
    out_dir: Any
    state: Path
    version: Any


def _open_build(
    ctx: typer.Context,
    cfg: BuildConfig,
    output: str | None,
    state_dir: str | None,
    overwrite: bool,
    resume: bool,
    versions: bool,
) -> _BuildTarget:
    """The output claimed (its lease), checked and, for a versioned root, a new version."""
    version = None
    if versions or cfg.output.versions:
        version = open_version(cfg, output, state_dir, overwrite)
        cfg, output, state_dir = version.cfg, version.output, version.state_dir
    out_dir, storage, cfg = open_output(
        cfg,
        output,
        overwrite,
        claim=ctx,
        measure=None if version else lambda c: sourced(c, output, state_dir),
    )
    if resume and not storage.exists(marker_name("pool", POOL_UNIT)):
        fail(f"--resume: {out_dir} holds no build to continue; drop --resume to start one")
    from editthinker_data.execution.prepare import prepare_state

    try:  # the same state folder and environment as a deployment run's
        state = prepare_state(out_dir, state_dir or cfg.run.state_dir)
    except ConfigError as err:
        fail(str(err))
    return _BuildTarget(cfg, out_dir, state, version)


def _run_build(target: _BuildTarget, again: list[str]) -> Any:
    """The flow under the live table; an unfinished or unusable build exits with its code
    and, when a rerun finishes it, the command to run."""
    from editthinker_data.core.outcome import BuildError, BuildIncomplete
    from editthinker_data.core.progress import reset

    progress = reset()
    console.print("starting Prefect (ephemeral) and Ray ...")
    from flows.build_dataset import build_dataset

    live = Live(
        get_renderable=lambda: progress_table(progress.snapshot(), progress.notes()),
        console=console,
        refresh_per_second=4,
    )
    try:
        with live:  # refreshes from its own thread; the flow keeps the main thread (Ray wants it)
            return build_dataset(target.cfg.model_dump(), str(target.out_dir), str(target.state))
    except BuildError as exc:  # unfinished or unusable: a structured outcome with its own exit code
        console.print()  # below the live table, not on its last line
        if exc.result:
            console.print(summary_table(exc.result.stats))
            print_unreachable(exc.result.stats)
        finish = f"\nTo finish it, run: {shlex.join(again)}" if isinstance(exc, BuildIncomplete) else ""
        fail(escape(f"{exc}{finish}"), code=exc.exit_code)
    except Exception as exc:
        console.print()
        fail(f"build failed: {type(exc).__name__}: {exc}", code=1)


def _print_build(result: Any, out_dir: Any, started: float) -> None:
    """The summary of a finished build: stages, splits, time, load, exports and card."""
    console.print()
    stats = result.stats
    console.print(summary_table(stats))
    print_unreachable(stats)
    print_licences(stats.get("licences", {}), stats.get("licence_warnings", []))
    totals = result.manifest["totals"]
    console.print(
        f"steps: sft {totals['sft']}, rl {totals['rl']}; trajectory turns {totals['trajectories']}; "
        f"{stats['failures']} records failed (see failures.jsonl)"
    )
    console.print(
        f"time: {time.monotonic() - started:.1f}s in all (start-up of Prefect and Ray, the build "
        f"and its release); the build's stages {stats['elapsed_s']:.1f}s (pooling to stats.json)"
    )
    from editthinker_data.distributed.load import load_lines

    for line in load_lines(stats.get("scheduler", {})):
        console.print(line)
    release = result.release
    for name, r in (release.exports if release else {}).items():
        console.print(f"export {name}: {r['rows']} rows in {out_dir}/exports/{name}")
    if release and release.card:
        console.print(f"dataset card: {out_dir}/{release.card}; gallery: {out_dir}/{release.gallery}")
    console.print(f"inspect with: editthinker-data inspect {out_dir}")


@app.command()
def inspect(
    output: OutputArg,
    sample: Annotated[
        str | None, typer.Option("--sample", help="show one trajectory (pair id) turn by turn")
    ] = None,
    extract: Annotated[Path | None, typer.Option(help="with --sample: write its turn images here")] = None,
    endpoint_url: EndpointOption = None,
) -> None:
    """Counts per stage, task type and editor, score histograms, the selection re-check; or one trajectory.
    OUTPUT may be a versioned build's root: its latest version is read."""

    output = finished_output(output, endpoint_url)
    b = open_build(output, endpoint_url)
    if sample:
        show_trajectory(b, sample, extract)
        return
    console.print(summary_table(b.stats))
    print_unreachable(b.stats)
    print_licences(b.stats.get("licences", {}), b.stats.get("licence_warnings", []))
    console.print(
        f"steps per split: {counts(b.stats['splits'])}; trajectories per split: "
        f"{counts(b.stats['trajectory_splits'])}"
    )
    balance = balance_table(b.stats)
    if balance is not None:
        after = b.stats["selection"]["after_balance"]
        kept = sum(after["trajectory_splits"].values())
        console.print(balance)
        console.print(
            f"released trajectories with zero gain (best S_t = S_1): {after['zero_gain']} of {kept} "
            f"(selection.min_gain {b.config.selection.min_gain:g}); with a failed turn: {after['failed_turn']} "
            f"(selection.failed_turns {b.config.selection.failed_turns})"
        )
    console.print(f"stop reasons: {counts(b.stats['stop_reasons'])}")
    usage = b.stats.get("llm_usage", {})
    if usage:
        table = Table(  # ten columns: compact padding keeps it inside 80 columns
            title="model calls", header_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1),
            collapse_padding=True, pad_edge=False, show_edge=False,
        )  # fmt: skip
        cols = {
            "requests": "calls",
            "retries": "retry",
            "reasks": "reask",
            "failures": "fail",
            "cache_hits": "cached",
            "tokens_in": "tok in",
            "tokens_out": "tok out",
            "rate_wait_s": "wait s",
        }
        table.add_column("role", no_wrap=True)
        for header in (*cols.values(), "cost"):
            table.add_column(header, justify="right", no_wrap=True)
        for role, u in usage.items():
            cells = [f"{u.get(c, 0):.1f}" if c == "rate_wait_s" else str(u.get(c, 0)) for c in cols]
            table.add_row(role, *cells, f"${u.get('cost_usd', 0):.2f}")
        console.print(table)
        console.print(
            "  retry: transport retries; reask: unparseable answers asked again; wait s: seconds held "
            "by the rate limits"
        )
    for dim, rows in b.breakdown().items():
        table = Table(title=f"per {dim.replace('_', ' ')}", header_style="bold")
        table.add_column(dim.replace("_", " "), no_wrap=True)
        for col in ("traj", "turns", "kept", "S1", "best", "sft", "rl"):
            table.add_column(col, justify="right", no_wrap=True)
        for name, r in rows.items():
            table.add_row(
                name, str(r["trajectories"]), str(r["turns"]), str(r["kept"]), f"{r['mean_first']:.2f}",
                f"{r['mean_best']:.2f}", str(r["sft_steps"]), str(r["rl_steps"]),
            )  # fmt: skip
        console.print(table)
        console.print(
            "  traj: trajectories; S1, best: mean overall score of turn 1 and of the best turn; "
            "sft, rl: step samples"
        )
    for name, hist in b.histograms().items():
        console.print(f"[bold]overall score, {name}[/]")
        top = max(hist)
        for i, c in enumerate(hist):
            console.print(f"  {i:>2}-{i + 1:<2} {c:>4} {bar(c, top)}")
    checked, mismatches = b.recheck_selection()
    if mismatches:
        console.print(f"[bold red]selection re-check: {len(mismatches)} of {checked} decisions disagree[/]")
        for m in mismatches[:20]:
            console.print(f"  {m}")
        raise typer.Exit(1)
    console.print(f"[green]selection re-check: all {checked} decisions follow from the stored scores[/]")


@app.command()
def export(
    ctx: typer.Context,
    output: OutputArg,
    format: Annotated[str, typer.Option("--format", "-f", help="llamafactory, easyr1 or all")] = "all",
    endpoint_url: EndpointOption = None,
) -> None:
    """Trainer-ready exports: LLaMA-Factory ShareGPT SFT and EasyR1 RL JSONL, images written once."""
    from editthinker_data.release.report import Build
    from editthinker_data.release.run import EXPORTERS, run_exports

    formats = sorted(EXPORTERS) if format == "all" else [format]
    output = finished_output(output, endpoint_url)
    try:
        b = Build(output, endpoint_url=endpoint_url)
        hold_build(ctx, b)
        results = run_exports(b, formats)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    for name, r in results.items():
        console.print(f"{name}: {r['rows']} rows, {r['images']} images -> {output}/exports/{name}")


@app.command()
def report(
    ctx: typer.Context,
    output: OutputArg,
    gallery_max: Annotated[int, typer.Option(help="trajectories shown in the gallery")] = 200,
    endpoint_url: EndpointOption = None,
) -> None:
    """Dataset card (README.md), figures (PNG) and a static HTML gallery of trajectories."""
    from editthinker_data.release.run import write_report

    output = finished_output(output, endpoint_url)
    b = open_build(output, endpoint_url)
    hold_build(ctx, b)
    written = write_report(b, gallery_max=gallery_max)
    console.print(f"card: {output}/{written['card']}")
    console.print(f"figures: {', '.join(written['figures'])}")
    console.print(f"gallery: {output}/{written['gallery']}")


@app.command("verify")
def verify_cmd(
    output: OutputArg,
    endpoint_url: EndpointOption = None,
) -> None:
    """Re-read every shard and every file a user downloads (exports, card, figures, gallery,
    pool and selection tables): report hash/size/row mismatches, missing and extra objects."""
    from editthinker_data.io.storage import open_storage
    from editthinker_data.release.report import PROBLEMS, verify

    output = finished_output(output, endpoint_url)
    storage = open_storage(output, endpoint_url=endpoint_url)
    try:
        result = verify(storage)
    except FileNotFoundError as err:
        fail(f"{output}: no manifest.json ({err})")
    for kind in PROBLEMS:
        for item in result[kind]:
            err_console.print(f"[red]{kind}[/]: {item}")
    bad = sum(len(result[k]) for k in PROBLEMS)
    checked = f"{result['checked']} shards and {result['files']} files"
    if bad:
        fail(f"{bad} problem(s) in {checked}", code=1)
    console.print(f"verified {checked}: all match the manifest, nothing missing or extra")


@app.command()
def validate(config: Annotated[Path, typer.Argument(help="build config (YAML)")]) -> None:
    """Check a config (schema, backend kinds and params, paths) without running anything."""
    cfg = checked_config(config)
    console.print(f"{config}: valid (fingerprint {cfg.fingerprint()})")


@app.command("demo-source")
def demo_source(
    out_dir: Annotated[Path, typer.Argument(help="where to write manifest.jsonl and images/")],
) -> None:
    """Regenerate the bundled demo source set (procedural scenes and instructions)."""
    from editthinker_data.demo.generate import write_demo_source

    console.print(f"wrote {write_demo_source(out_dir)}")


def main() -> None:
    """The console entry point. A file-system or object-store error a user can fix is one
    paragraph, never a traceback; EDITTHINKER_DEBUG=1 shows the traceback instead."""
    try:
        app()
    except Exception as err:
        message = storage_problem(err)
        if message is None or os.environ.get("EDITTHINKER_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
