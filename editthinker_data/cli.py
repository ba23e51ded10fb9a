"""editthinker-data: a thin command line over the build flow and the build reader.

Configuration is validated before anything heavy is imported, so a bad config answers in
well under a second with the key, the value and the fix.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from editthinker_data.config import ConfigError, load_config

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build think-while-edit training data (EditThinker): pool, edit, critique, score, filter, shard.",
)
console = Console()
STAGES = ("pool", "generate", "trajectory_filter", "steps")
OutputArg = Annotated[str, typer.Argument(help="a finished build (local path or s3://bucket/prefix)")]
EndpointOption = Annotated[
    str | None, typer.Option(envvar="AWS_ENDPOINT_URL_S3", help="S3-compatible endpoint")
]
err_console = Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _progress_table(snap: dict[str, float]) -> Table:
    done, total, elapsed = int(snap.get("pairs_done", 0)), int(snap.get("total_pairs", 0)), snap["elapsed_s"]
    rate = done / snap["generate_s"] if snap["generate_s"] > 0 else 0.0
    table = Table(show_header=True, header_style="bold", box=None)
    for col in ("stage", "pairs", "turns", "edits", "critiques", "scores", "failed", "rate", "elapsed"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    table.add_row(
        str(snap["stage"]),
        f"{done}/{total or '?'}",
        str(int(snap.get("turns", 0))),
        str(int(snap.get("editor_calls", 0))),
        str(int(snap.get("expert_calls", 0))),
        str(int(snap.get("scorer_calls", 0))),
        str(int(snap.get("failed", 0))),
        f"{rate:.2f} pairs/s",
        f"{elapsed:.0f}s",
    )
    return table


def _summary_table(stats: dict) -> Table:
    table = Table(title="build summary", header_style="bold")
    for col in ("stage", "input", "kept", "filtered", "failed"):
        table.add_column(col, justify="left" if col == "stage" else "right")

    def reasons(d: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items()) or "0"

    for name in STAGES:
        s = stats["stages"][name]
        table.add_row(name, str(s["input"]), str(s["kept"]), reasons(s["filtered"]), reasons(s["failed"]))
    return table


def _print_licences(licences: dict[str, str], warnings: list[str]) -> None:
    if licences:
        console.print(
            "licences: " + ", ".join(f"{n} {lic or 'not set'}" for n, lic in sorted(licences.items()))
        )
    for w in warnings:
        console.print(f"[bold yellow]licence warning:[/] {w}")


def _pool_tables(report: dict) -> list[Table]:
    """Per source: read, unusable (with reasons), duplicates, other drops, kept; then kept
    per source and task type."""
    from editthinker_data.schema import TASK_TYPES

    def reasons(d: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(d.items()))

    sources = Table(title="pool per source", header_style="bold")
    for col in ("source", "licence", "read", "unusable", "duplicates", "filtered", "kept"):
        sources.add_column(
            col, justify="left" if col in ("source", "licence", "unusable", "filtered") else "right"
        )
    types = Table(title="pool per source and task type (kept / usable)", header_style="bold")
    types.add_column("source")
    for t in TASK_TYPES:
        types.add_column(t, justify="right")
    total = dict.fromkeys(("read", "unusable", "duplicates", "kept"), 0)
    for name, c in report.get("by_source", {}).items():
        unusable = sum(c["unusable"].values())
        sources.add_row(
            name, c["licence"] or "not set", str(c["read"]),
            f"{unusable}" + (f" ({reasons(c['unusable'])})" if unusable else ""),
            str(c["duplicates"]), reasons(c["filtered"]) or "0", str(c["kept"]),
        )  # fmt: skip
        types.add_row(
            name, *(f"{c['by_task_type'][t]['kept']} / {c['by_task_type'][t]['read']}" for t in TASK_TYPES)
        )
        for k, v in (
            ("read", c["read"]),
            ("unusable", unusable),
            ("duplicates", c["duplicates"]),
            ("kept", c["kept"]),
        ):
            total[k] += v
    sources.add_row(
        "[bold]total[/]",
        "",
        str(total["read"]),
        str(total["unusable"]),
        str(total["duplicates"]),
        "",
        str(total["kept"]),
    )
    by_type = report.get("by_task_type", {})
    types.add_row("[bold]total[/]", *(f"{by_type[t]['kept']} / {by_type[t]['read']}" for t in TASK_TYPES))
    return [sources, types]


def _open_output(cfg, output: str | None, overwrite: bool):
    """The output folder or URL (`--output` over `output.dir`) and its storage, checked to
    hold nothing of another config (or cleared first with --overwrite)."""
    from editthinker_data.storage import is_remote
    from editthinker_data.units import check_output, clear_output, output_storage

    target = output or cfg.output.dir
    out_dir = target if is_remote(target) else str(Path(target).resolve())
    try:
        storage = output_storage(cfg, out_dir)
        if overwrite:
            console.print(f"--overwrite: deleted {clear_output(storage)} objects of the previous build")
        check_output(cfg, storage)
    except ConfigError as err:
        _fail(str(err))
    return out_dir, storage


@app.command()
def pool(
    config: Annotated[Path, typer.Argument(help="build config (YAML) with source.inputs or source.manifest")],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="output directory (overrides output.dir)")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="delete a previous build of another config in OUTPUT first")
    ] = False,
) -> None:
    """Pool source pairs only: read every input, dedup, balance, write pool/pairs.parquet;
    a later `build` of the same config and output starts from this pool."""
    try:
        cfg = load_config(config)
        from editthinker_data.preflight import check_sources

        check_sources(cfg)
    except ConfigError as err:
        _fail(str(err))
    from editthinker_data.units import run_pool

    out_dir, storage = _open_output(cfg, output, overwrite)
    with console.status("pooling ..."):
        report = run_pool(cfg, storage)
    for table in _pool_tables(report):
        console.print(table)
    _print_licences(report.get("licences", {}), report.get("licence_warnings", []))
    s = report["stats"]
    console.print(
        f"{report['pairs']} pairs in {len(report['partitions'])} partitions -> {out_dir}/pool/pairs.parquet; "
        f"{sum(s['failed'].values())} unusable records named in the pool marker "
        f"({out_dir}/_markers/pool/all.json)"
    )


@app.command()
def build(
    config: Annotated[Path, typer.Argument(help="build config (YAML); start from configs/demo.yaml")],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="output directory (overrides output.dir)")
    ] = None,
    state_dir: Annotated[
        str | None, typer.Option(help="Prefect/Ray state (default: <output>/_state)")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="delete a previous build of another config in OUTPUT first")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="insist on continuing an unfinished build in OUTPUT (reruns always do)"
        ),
    ] = False,
) -> None:
    """Run the build flow: pool -> think-while-edit -> score -> filter -> split -> shards."""
    try:
        cfg = load_config(config)
        from editthinker_data.preflight import preflight

        preflight(cfg)
    except ConfigError as err:
        _fail(str(err))
    out_dir, storage = _open_output(cfg, output, overwrite)
    if resume and not storage.exists("_markers/pool/all.json"):
        _fail(f"--resume: {out_dir} holds no build to continue; drop --resume to start one")
    from editthinker_data.storage import is_remote

    if is_remote(out_dir):
        default_state = Path(".editthinker") / hashlib.sha256(str(out_dir).encode()).hexdigest()[:12]
    else:
        default_state = Path(out_dir) / "_state"
    state = Path(state_dir or cfg.run.state_dir or default_state)
    from editthinker_data import runenv

    runenv.prepare(state)
    from editthinker_data.progress import reset

    progress = reset()
    console.print(
        f"[bold]{cfg.name}[/]: building into {out_dir} (config {config}, fingerprint {cfg.fingerprint()})"
    )
    console.print("starting Prefect (ephemeral) and Ray ...")
    from flows.build_dataset import build_dataset

    live = Live(
        get_renderable=lambda: _progress_table(progress.snapshot()), console=console, refresh_per_second=4
    )
    from editthinker_data.outcome import BuildError, BuildIncomplete

    try:
        with live:  # refreshes from its own thread; the flow keeps the main thread (Ray wants it)
            result = build_dataset(cfg.model_dump(), str(out_dir), str(state))
    except BuildError as exc:  # unfinished or unusable: a structured outcome with its own exit code
        if exc.result:
            console.print(_summary_table(exc.result["stats"]))
        again = shlex.join(
            ["editthinker-data", "build", str(config), "--output", str(out_dir)]
            + (["--state-dir", state_dir] if state_dir else [])
        )
        finish = f"\nTo finish it, run: {again}" if isinstance(exc, BuildIncomplete) else ""
        _fail(escape(f"{exc}{finish}"), code=exc.exit_code)
    except Exception as exc:
        _fail(f"build failed: {type(exc).__name__}: {exc}", code=1)
    console.print()
    stats = result["stats"]
    console.print(_summary_table(stats))
    _print_licences(stats.get("licences", {}), stats.get("licence_warnings", []))
    totals = result["manifest"]["totals"]
    console.print(
        f"steps: sft {totals['sft']}, rl {totals['rl']}; trajectory turns {totals['trajectories']}; "
        f"{stats['failures']} records failed (see failures.jsonl); {stats['elapsed_s']:.1f}s"
    )
    release = result.get("release", {})
    for name, r in release.get("exports", {}).items():
        console.print(f"export {name}: {r['rows']} rows in {out_dir}/exports/{name}")
    if release.get("card"):
        console.print(f"dataset card: {out_dir}/{release['card']}; gallery: {out_dir}/{release['gallery']}")
    console.print(f"inspect with: editthinker-data inspect {out_dir}")


def _open_build(output: str, endpoint_url: str | None):
    from editthinker_data.report import Build

    try:
        return Build(output, endpoint_url=endpoint_url)
    except FileNotFoundError as err:
        _fail(str(err))


def _bar(count: int, top: int, width: int = 30) -> str:
    return "#" * (round(width * count / top) if top else 0)


@app.command()
def inspect(
    output: OutputArg,
    sample: Annotated[
        str | None, typer.Option("--sample", help="show one trajectory (pair id) turn by turn")
    ] = None,
    extract: Annotated[Path | None, typer.Option(help="with --sample: write its turn images here")] = None,
    endpoint_url: EndpointOption = None,
) -> None:
    """Counts per stage, task type and editor, score histograms, the selection re-check; or one trajectory."""

    b = _open_build(output, endpoint_url)
    if sample:
        _show_trajectory(b, sample, extract)
        return
    console.print(_summary_table(b.stats))
    _print_licences(b.stats.get("licences", {}), b.stats.get("licence_warnings", []))
    console.print(f"splits (steps): {b.stats['splits']}   trajectories: {b.stats['trajectory_splits']}")
    console.print(f"stop reasons: {b.stats['stop_reasons']}")
    usage = b.stats.get("llm_usage", {})
    if usage:
        table = Table(title="model calls", header_style="bold")
        cols = (
            "requests",
            "retries",
            "reasks",
            "failures",
            "cache_hits",
            "tokens_in",
            "tokens_out",
            "rate_wait_s",
        )
        for col in ("role", *cols, "cost_usd"):
            table.add_column(col.replace("_", " "), justify="left" if col == "role" else "right")
        for role, u in usage.items():
            cells = [f"{u.get(c, 0):.1f}" if c == "rate_wait_s" else str(u.get(c, 0)) for c in cols]
            table.add_row(role, *cells, f"${u.get('cost_usd', 0):.2f}")
        console.print(table)
    for dim, rows in b.breakdown().items():
        table = Table(title=f"per {dim.replace('_', ' ')}", header_style="bold")
        for col in (dim, "trajectories", "turns", "kept", "mean S1", "mean best", "sft steps", "rl steps"):
            table.add_column(col, justify="left" if col == dim else "right")
        for name, r in rows.items():
            table.add_row(
                name, str(r["trajectories"]), str(r["turns"]), str(r["kept"]), f"{r['mean_first']:.2f}",
                f"{r['mean_best']:.2f}", str(r["sft_steps"]), str(r["rl_steps"]),
            )  # fmt: skip
        console.print(table)
    for name, counts in b.histograms().items():
        console.print(f"[bold]overall score, {name}[/]")
        top = max(counts)
        for i, c in enumerate(counts):
            console.print(f"  {i:>2}-{i + 1:<2} {c:>4} {_bar(c, top)}")
    checked, mismatches = b.recheck_selection()
    if mismatches:
        console.print(f"[bold red]selection re-check: {len(mismatches)} of {checked} decisions disagree[/]")
        for m in mismatches[:20]:
            console.print(f"  {m}")
        raise typer.Exit(1)
    console.print(f"[green]selection re-check: all {checked} decisions follow from the stored scores[/]")


def _show_trajectory(b, key: str, extract: Path | None) -> None:
    try:
        t = b.trajectory(key)
    except KeyError as err:
        _fail(str(err.args[0]))
    rows, decision = t["rows"], t["decision"]
    first = rows[0]
    console.print(f"[bold]{first['pair_id']}[/] ({first['task_type']}, editor {first['editor']})")
    console.print(f"source instruction: {first['source_instruction']}")
    console.print(f"stop: {first['stop_reason']}   decision: {decision}")
    for r in rows:
        console.print(f"\n[bold]turn {r['turn']}[/]  seed {r['seed']}")
        if r["reasoning"]:
            console.print(f"  reasoning:   {r['reasoning']}")
        console.print(f"  instruction: {r['instruction']}")
        console.print(
            f"  scores:      semantic {r['semantic']:.2f}  quality {r['quality']:.2f}  overall {r['overall']:.2f}"
        )
        console.print(f"  image:       {r['shard']}#{r['sample_key']}.png")
        took = [f"{k} {r[k + '_s']:.3f}s" for k in ("edit", "score", "refine") if r.get(k + "_s") is not None]
        console.print(f"  latency:     {', '.join(took)}")
    if first["final_reasoning"]:
        console.print(f"\n[bold]final critique[/]: {first['final_reasoning']}")
    if first["error"]:
        console.print(f"\n[bold red]error[/]: {first['error']}")
    if extract:
        for path in b.extract_images(rows, extract):
            console.print(f"wrote {path}")


@app.command()
def export(
    output: OutputArg,
    format: Annotated[str, typer.Option("--format", "-f", help="llamafactory, easyr1 or all")] = "all",
    endpoint_url: EndpointOption = None,
) -> None:
    """Trainer-ready exports: LLaMA-Factory ShareGPT SFT and EasyR1 RL JSONL, images written once."""
    from editthinker_data.exports.release import EXPORTERS, run_exports
    from editthinker_data.report import Build

    formats = sorted(EXPORTERS) if format == "all" else [format]
    try:
        b = Build(output, endpoint_url=endpoint_url)
        results = run_exports(b, formats)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    for name, r in results.items():
        console.print(f"{name}: {r['rows']} rows, {r['images']} images -> {output}/exports/{name}")


@app.command()
def report(
    output: OutputArg,
    gallery_max: Annotated[int, typer.Option(help="trajectories shown in the gallery")] = 200,
    endpoint_url: EndpointOption = None,
) -> None:
    """Dataset card (README.md), figures (PNG) and a static HTML gallery of trajectories."""
    from editthinker_data.exports.release import write_report

    b = _open_build(output, endpoint_url)
    written = write_report(b, gallery_max=gallery_max)
    console.print(f"card: {output}/{written['card']}")
    console.print(f"figures: {', '.join(written['figures'])}")
    console.print(f"gallery: {output}/{written['gallery']}")


@app.command("verify")
def verify_cmd(
    output: OutputArg,
    endpoint_url: EndpointOption = None,
) -> None:
    """Re-read every shard: report hash/size/sample mismatches, missing and extra objects."""
    from editthinker_data.report import verify
    from editthinker_data.storage import open_storage

    storage = open_storage(output, endpoint_url=endpoint_url)
    try:
        result = verify(storage)
    except FileNotFoundError as err:
        _fail(f"{output}: no manifest.json ({err})")
    for kind in ("mismatched", "missing", "extra"):
        for item in result[kind]:
            err_console.print(f"[red]{kind}[/]: {item}")
    bad = sum(len(result[k]) for k in ("mismatched", "missing", "extra"))
    if bad:
        _fail(f"{bad} problem(s) in {result['checked']} shards", code=1)
    console.print(f"verified {result['checked']} shards: all match the manifest, nothing missing or extra")


@app.command()
def validate(config: Annotated[Path, typer.Argument(help="build config (YAML)")]) -> None:
    """Check a config (schema, backend kinds and params, paths) without running anything."""
    try:
        cfg = load_config(config)
        from editthinker_data.preflight import preflight

        preflight(cfg)
    except ConfigError as err:
        _fail(str(err))
    console.print(f"{config}: valid (fingerprint {cfg.fingerprint()})")


@app.command("demo-source")
def demo_source(
    out_dir: Annotated[Path, typer.Argument(help="where to write manifest.jsonl and images/")],
) -> None:
    """Regenerate the bundled demo source set (procedural scenes and instructions)."""
    from editthinker_data.demo.generate import write_demo_source

    console.print(f"wrote {write_demo_source(out_dir)}")


@app.command("tiny-editors")
def tiny_editors(
    out_dir: Annotated[Path, typer.Argument(help="where to save the pipelines, one folder each")],
    name: Annotated[
        list[str] | None, typer.Option("--name", help="only these (flux-kontext, qwen-image-edit, ...)")
    ] = None,
) -> None:
    """Save tiny random diffusers editors (FLUX.1 Kontext, Qwen-Image-Edit[-Plus],
    InstructPix2Pix) for CPU runs of configs/tiny-diffusers.yaml; needs the [models] extra."""
    try:
        from editthinker_data.editors.tiny_models import save_tiny_editors
    except ImportError as err:
        _fail(f"{err}; install the model libraries: pip install -e '.[models]'")
    try:
        saved = save_tiny_editors(out_dir, name or None)
    except ValueError as err:
        _fail(str(err))
    for editor, path in saved.items():
        console.print(f"{editor}: {path}")


if __name__ == "__main__":
    app()
