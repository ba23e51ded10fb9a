"""editthinker-data: a thin command line over the build flow and the build reader.

Configuration is validated before anything heavy is imported, so a bad config answers in
well under a second with the key, the value and the fix.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path
from typing import Annotated

import typer
from rich import box
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
STAGES = ("pool", "generate", "trajectory_filter", "balance", "steps")
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


def _counts(d: dict, sep: str = ", ") -> str:
    """{'sft': 36, 'rl': 16} -> 'sft 36, rl 16' (never a raw dict on screen)."""
    return sep.join(f"{k} {v}" for k, v in d.items()) or "0"


def _summary_table(stats: dict) -> Table:
    table = Table(title="build summary", header_style="bold")
    for col in ("stage", "input", "kept", "filtered", "failed"):
        numeric = col in ("input", "kept")
        table.add_column(col, justify="right" if numeric else "left", no_wrap=numeric or col == "stage")
    for name in (n for n in STAGES if n in stats["stages"]):
        s = stats["stages"][name]
        table.add_row(
            name, str(s["input"]), str(s["kept"]), _counts(s["filtered"], "\n"), _counts(s["failed"], "\n")
        )
    return table


def _balance_table(stats: dict) -> Table | None:
    """Trajectories and step samples per split and task type, before and after balancing."""
    sel = stats.get("selection")
    if not sel:
        return None
    before, after = sel["before_balance"], sel["after_balance"]
    table = Table(title="balancing (whole trajectories): before -> after", header_style="bold")
    for col in ("split", "task type", "trajectories", "steps"):
        table.add_column(col, justify="left" if col in ("split", "task type") else "right", no_wrap=True)
    for split in ("sft", "rl"):
        b, a = before["by_task_type"][split], after["by_task_type"][split]
        for task in sorted(set(b) | set(a)):
            nb, na = b.get(task, {}), a.get(task, {})
            table.add_row(
                split, task, f"{nb.get('trajectories', 0)} -> {na.get('trajectories', 0)}",
                f"{nb.get('steps', 0)} -> {na.get('steps', 0)}",
            )  # fmt: skip
        table.add_row(
            split, "[bold]all[/]", f"{before['trajectory_splits'][split]} -> {after['trajectory_splits'][split]}",
            f"{before['splits'][split]} -> {after['splits'][split]}", end_section=True,
        )  # fmt: skip
    return table


def _print_licences(licences: dict[str, str], warnings: list[str]) -> None:
    if licences:
        console.print(
            "licences: " + ", ".join(f"{n} {lic or 'not set'}" for n, lic in sorted(licences.items()))
        )
    for w in warnings:
        console.print(f"[bold yellow]licence warning:[/] {w}")


def _print_unmapped_labels(by_source: dict) -> None:
    """Labels no table maps: their records were classified by instruction, not dropped."""
    from rich.markup import escape

    for name, c in by_source.items():
        labels = c.get("unmapped_labels") or {}
        if labels:
            shown = ", ".join(f"{label!r} {n}" for label, n in sorted(labels.items())[:5])
            more = f" and {len(labels) - 5} more" if len(labels) > 5 else ""
            console.print(
                f"[bold yellow]labels not in the table:[/] {escape(name)}: {escape(shown)}{more}; "
                "classified by instruction (map them in the input's label_map, or set strict_labels: "
                "true to count them unknown_label)"
            )


def _pool_tables(report: dict) -> list[Table]:
    """Per source: read, unusable (with reasons), duplicates, other drops, kept; then kept
    per source and task type."""
    from editthinker_data.schema import TASK_TYPES

    sources = Table(title="pool per source", header_style="bold")
    for col in ("source", "licence", "read", "unusable", "dups", "filtered", "kept"):
        text = col in ("source", "licence", "unusable", "filtered")
        sources.add_column(col, justify="left" if text else "right", no_wrap=not text)
    types = Table(title="pool per source and task type (kept / usable)", header_style="bold")
    types.add_column("source")
    for t in TASK_TYPES:
        types.add_column(t, justify="right")
    total = dict.fromkeys(("read", "unusable", "duplicates", "kept"), 0)
    for name, c in report.get("by_source", {}).items():
        unusable = sum(c["unusable"].values())
        sources.add_row(
            name, c["licence"] or "not set", str(c["read"]),
            "\n".join([str(unusable), *(f"{k} {v}" for k, v in sorted(c["unusable"].items()))]),
            str(c["duplicates"]), _counts(dict(sorted(c["filtered"].items())), "\n"), str(c["kept"]),
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


def _check_local_output(path: Path) -> None:
    """A local output must be a folder we can write: say so in one line, before Prefect and
    Ray start (their state would go inside it)."""
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == path else f"is inside {parent}, which is a file"
            _fail(f"output {path} {where}, not a folder; choose a folder path (it is created if missing)")
        if parent.exists():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        _fail(
            f"output {path} is not writable ({err.strerror or err}); choose a folder you can write, "
            "or fix its permissions"
        )


def _open_output(cfg, output: str | None, overwrite: bool):
    """The output folder or URL (`--output` over `output.dir`) and its storage, checked to
    hold nothing of another config (or cleared first with --overwrite)."""
    from editthinker_data.storage import is_remote
    from editthinker_data.units import check_output, clear_output, output_storage

    target = output or cfg.output.dir
    out_dir = target if is_remote(target) else str(Path(target).expanduser().resolve())
    if not is_remote(out_dir):
        _check_local_output(Path(out_dir))
    try:
        storage = output_storage(cfg, out_dir)
        if overwrite:
            console.print(f"--overwrite: deleted {clear_output(storage)} objects of the previous build")
        check_output(cfg, storage)
    except ConfigError as err:
        _fail(str(err))
    except Exception as err:  # the object store answered with an error: name it, no traceback
        message = _storage_problem(err)
        if message is None:
            raise
        _fail(f"output {out_dir}: {message}")
    return out_dir, storage


def _storage_problem(err: Exception) -> str | None:
    """One line for an object-store or file-system error a user can fix; None for a bug."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return None
    if isinstance(err, NoCredentialsError):
        return "no S3 credentials; export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
    if isinstance(err, ClientError):
        code = err.response.get("Error", {}).get("Code", "?")
        hint = {
            "NoSuchBucket": "the bucket does not exist; create it first",
            "AccessDenied": "access denied; check the credentials' permissions on this bucket",
            "403": "access denied; check the credentials' permissions on this bucket",
            "404": "the bucket does not exist; create it first",
        }.get(str(code), "check the bucket, the credentials and the endpoint")
        return f"the object store answered {code}: {hint}"
    if isinstance(err, BotoCoreError):
        return f"{err}; check AWS_ENDPOINT_URL_S3 / output.s3_endpoint_url and the network"
    if isinstance(err, OSError):
        return f"{err.strerror or err}{f' ({err.filename})' if err.filename else ''}"
    return None


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
    try:
        with console.status("pooling ..."):
            report = run_pool(cfg, storage)
    except ConfigError as err:  # an input found empty or in the wrong encoding while read
        _fail(str(err))
    for table in _pool_tables(report):
        console.print(table)
    _print_licences(report.get("licences", {}), report.get("licence_warnings", []))
    _print_unmapped_labels(report.get("by_source", {}))
    s = report["stats"]
    console.print(
        f"{report['pairs']} pairs in {len(report['partitions'])} partitions -> {out_dir}/pool/pairs.parquet; "
        f"{sum(s['failed'].values())} unusable records named in {out_dir}/failures.jsonl"
    )


@app.command()
def build(
    config: Annotated[Path, typer.Argument(help="build config (YAML); start from configs/demo.yaml")],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="output directory (overrides output.dir)")
    ] = None,
    state_dir: Annotated[
        str | None,
        typer.Option(
            help="Prefect/Ray state, a local folder (default: <output>/_state; for s3:// outputs "
            "~/.local/state/editthinker-data/<hash>)"
        ),
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
    command_started = time.monotonic()
    try:
        cfg = load_config(config)
        from editthinker_data.preflight import preflight

        preflight(cfg)
    except ConfigError as err:
        _fail(str(err))
    out_dir, storage = _open_output(cfg, output, overwrite)
    if resume and not storage.exists("_markers/pool/all.json"):
        _fail(f"--resume: {out_dir} holds no build to continue; drop --resume to start one")
    from editthinker_data import runenv

    try:
        state = runenv.prepare(runenv.state_dir_for(out_dir, state_dir or cfg.run.state_dir))
    except OSError as err:
        _fail(
            f"cannot create the run state folder ({err.strerror}: {err.filename}); pass --state-dir "
            "with a writable local folder, or set EDITTHINKER_STATE_HOME"
        )
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
        f"{stats['failures']} records failed (see failures.jsonl)"
    )
    console.print(
        f"time: {time.monotonic() - command_started:.1f}s in all (start-up of Prefect and Ray, the build "
        f"and its release); the build's stages {stats['elapsed_s']:.1f}s (pooling to stats.json)"
    )
    from editthinker_data.distributed.load import load_lines

    for line in load_lines(stats.get("scheduler", {})):
        console.print(line)
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
    console.print(
        f"steps per split: {_counts(b.stats['splits'])}; trajectories per split: "
        f"{_counts(b.stats['trajectory_splits'])}"
    )
    balance_table = _balance_table(b.stats)
    if balance_table is not None:
        after = b.stats["selection"]["after_balance"]
        kept = sum(after["trajectory_splits"].values())
        console.print(balance_table)
        console.print(
            f"released trajectories with zero gain (best S_t = S_1): {after['zero_gain']} of {kept} "
            f"(selection.min_gain {b.config.selection.min_gain:g}); with a failed turn: {after['failed_turn']} "
            f"(selection.failed_turns {b.config.selection.failed_turns})"
        )
    console.print(f"stop reasons: {_counts(b.stats['stop_reasons'])}")
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
    """Re-read every shard and every file a user downloads (exports, card, figures, gallery,
    pool and selection tables): report hash/size/row mismatches, missing and extra objects."""
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
    checked = f"{result['checked']} shards and {result['files']} files"
    if bad:
        _fail(f"{bad} problem(s) in {checked}", code=1)
    console.print(f"verified {checked}: all match the manifest, nothing missing or extra")


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
    """Save tiny random diffusers editors (FLUX.1 Kontext, Qwen-Image-Edit(-Plus),
    InstructPix2Pix) for CPU runs of configs/tiny-diffusers.yaml; needs the models extra:
    pip install -e '.\\[models]'."""
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


def main() -> None:
    """The console entry point. A file-system or object-store error a user can fix is one
    paragraph, never a traceback; EDITTHINKER_DEBUG=1 shows the traceback instead."""
    try:
        app()
    except Exception as err:
        message = _storage_problem(err)
        if message is None or os.environ.get("EDITTHINKER_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
