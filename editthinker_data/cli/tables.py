"""What the commands print: tables and lines that fit 80 columns, never a raw dict."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rich.table import Table

from editthinker_data.cli.term import console, fail
from editthinker_data.core.progress import calls_counter
from editthinker_data.core.reports import PoolReport
from editthinker_data.core.stats import STAGES

# What one call of a role adds to the live table's columns. A thinker's answer is a critique
# and a score in one, so it counts in both.
COLUMNS_OF_ROLE = {
    "editor": ("edits",),
    "expert": ("critiques",),
    "scorer": ("scores",),
    "thinker": ("critiques", "scores"),
}


def column_counts(snap: Mapping[str, float | str]) -> dict[str, int]:
    """Calls per table column (edits, critiques, scores), summed over the roles that make them."""
    out = {col: 0 for cols in COLUMNS_OF_ROLE.values() for col in cols}
    for role, cols in COLUMNS_OF_ROLE.items():
        for col in cols:
            out[col] += int(snap.get(calls_counter(role), 0))
    return out


def progress_table(snap: Mapping[str, float | str], notes: list[str] | tuple[str, ...] = ()) -> Table:
    """`snap`: a `Progress.snapshot()`, numbers but for its `stage`; `notes` go under the
    table (a backend that is out: "expert 'x' unreachable since 21:04, paused; next probe in
    20 s")."""
    done, total, elapsed = (
        int(snap.get("pairs_done", 0)),
        int(snap.get("total_pairs", 0)),
        float(snap["elapsed_s"]),
    )
    generate_s = float(snap["generate_s"])
    rate = done / generate_s if generate_s > 0 else 0.0
    table = Table(show_header=True, header_style="bold", box=None, caption="\n".join(notes) or None)
    for col in ("stage", "pairs", "turns", "edits", "critiques", "scores", "failed", "rate", "elapsed"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    calls = column_counts(snap)
    table.add_row(
        str(snap["stage"]),
        f"{done}/{total or '?'}",
        str(int(snap.get("turns", 0))),
        str(calls["edits"]),
        str(calls["critiques"]),
        str(calls["scores"]),
        str(int(snap.get("failed", 0))),
        f"{rate:.2f} pairs/s",
        f"{elapsed:.0f}s",
    )
    return table


def counts(d: dict, sep: str = ", ") -> str:
    """{'sft': 36, 'rl': 16} -> 'sft 36, rl 16' (never a raw dict on screen)."""
    return sep.join(f"{k} {v}" for k, v in d.items()) or "0"


def summary_table(stats: dict) -> Table:
    table = Table(title="build summary", header_style="bold")
    for col in ("stage", "input", "kept", "filtered", "failed"):
        numeric = col in ("input", "kept")
        table.add_column(col, justify="right" if numeric else "left", no_wrap=numeric or col == "stage")
    for name in (n for n in STAGES if n in stats["stages"]):
        s = stats["stages"][name]
        table.add_row(
            name, str(s["input"]), str(s["kept"]), counts(s["filtered"], "\n"), counts(s["failed"], "\n")
        )
    return table


def balance_table(stats: dict) -> Table | None:
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


def print_licences(licences: dict[str, str], warnings: list[str]) -> None:
    if licences:
        console.print(
            "licences: " + ", ".join(f"{n} {lic or 'not set'}" for n, lic in sorted(licences.items()))
        )
    for w in warnings:
        console.print(f"[bold yellow]licence warning:[/] {w}")


def print_unreachable(stats: dict) -> None:
    """Editor servers an http editor skipped because they did not answer (counted by its
    actors as `unreachable <url>`): the build went on with the others."""
    from rich.markup import escape

    for backend, entry in sorted(stats.get("backends", {}).items()):
        for key, n in sorted(entry.get("counters", {}).items()):
            if key.startswith("unreachable "):
                console.print(
                    f"[bold yellow]server skipped:[/] {escape(backend)}: {escape(key.split(' ', 1)[1])} did not "
                    f"answer (found down by {n:g} actor{'s' if n != 1 else ''}); its other servers did the work"
                )


def print_unmapped_labels(by_source: dict) -> None:
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


def pool_tables(report: PoolReport) -> list[Table]:
    """Per source: read, unusable (with reasons), duplicates, other drops, kept; then kept
    per source and task type."""
    from editthinker_data.core.schema import TASK_TYPES

    sources = Table(title="pool per source", header_style="bold")
    for col in ("source", "licence", "read", "unusable", "dups", "filtered", "kept"):
        text = col in ("source", "licence", "unusable", "filtered")
        sources.add_column(col, justify="left" if text else "right", no_wrap=not text)
    types = Table(title="pool per source and task type (kept / usable)", header_style="bold")
    types.add_column("source")
    for t in TASK_TYPES:
        types.add_column(t, justify="right")
    total = dict.fromkeys(("read", "unusable", "duplicates", "kept"), 0)
    for name, c in report.by_source.items():
        unusable = sum(c["unusable"].values())
        sources.add_row(
            name, c["licence"] or "not set", str(c["read"]),
            "\n".join([str(unusable), *(f"{k} {v}" for k, v in sorted(c["unusable"].items()))]),
            str(c["duplicates"]), counts(dict(sorted(c["filtered"].items())), "\n"), str(c["kept"]),
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
    by_type = report.by_task_type
    types.add_row("[bold]total[/]", *(f"{by_type[t]['kept']} / {by_type[t]['read']}" for t in TASK_TYPES))
    return [sources, types]


def bar(count: int, top: int, width: int = 30) -> str:
    return "#" * (round(width * count / top) if top else 0)


def show_trajectory(b, key: str, extract: Path | None) -> None:
    try:
        t = b.trajectory(key)
    except KeyError as err:
        fail(str(err.args[0]))
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
