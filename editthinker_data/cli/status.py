"""`editthinker-data status OUTPUT`: where a build stands, from its storage alone (works from
any machine that can read the output, while the build runs elsewhere or after it died)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from editthinker_data.cli.app import EndpointOption, app
from editthinker_data.cli.term import console, failing_as_paragraph


def _breaker(b: dict[str, Any]) -> str:
    """One open circuit breaker, as the build's own log says it."""
    text = f"{b['role']} {b['backend']!r} unreachable since {_clock(b['since'])}"
    if b["state"] == "gave_up":
        return f"{text}: gave up waiting (run.outage_wait_s); {b['error']}"
    wait = f"next probe at {_clock(b['next_probe'])}" if b.get("next_probe") else "not probing"
    if b["state"] == "probing":
        wait = "probing now"
    return f"{text}, paused; {wait}; {b['error']}"


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s" if s >= 60 else f"{s}s"


def status_view(doc: dict[str, Any]) -> Group:
    """The document as an operator reads it: a few lines, then failures and usage tables."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column()
    version = doc["version"]
    where = doc["output"] + (
        f" (version {version['name']}; latest finished: {version['latest'] or 'none'})" if version else ""
    )
    head.add_row("output", escape(where))
    state, stage, w = doc["state"], doc["stage"], doc["writer"]
    if state == "not_started":
        head.add_row("state", "not started: no build has written here")
        return Group(head)
    line = {"running": f"running: {stage}", "finished": "finished", "unusable": "finished, unusable"}.get(
        state, f"stopped while {stage}: no build is writing it now"
    )
    head.add_row("state", escape(line))
    if w:
        beat = f"last beat {w['beat_age_s']:.0f}s ago" + (
            "" if w["live"] else f" (lease expired: TTL {w['ttl_s']:.0f}s)"
        )
        head.add_row(
            "writer", escape(f"{w['command']} on {w['host']}, pid {w['pid']}, started {w['started']}; {beat}")
        )
    if doc["problem"]:
        head.add_row("problem", escape(doc["problem"]))
    g = doc["units"]["generate"]
    head.add_row(
        "units",
        f"generate: {g['finished']} finished, {g['running']} running, {g['unfinished']} unfinished "
        f"of {g['total']}",
    )
    p = doc["pairs"]
    head.add_row("pairs", f"{p['done']} of {p['total']} done; {doc['turns']} turns (one edit each)")
    rate = doc["rate"]
    if rate:
        eta = f"; ETA of generate {_duration(rate['eta_s'])}" if rate["eta_s"] is not None else ""
        head.add_row(
            "rate",
            f"{rate['edits_per_s']:.2f} edits/s, {rate['pairs_per_s']:.2f} pairs/s over the last "
            f"{_duration(rate['window_s'])}{eta}",
        )
    elif doc["elapsed_s"] is not None:
        head.add_row("elapsed", f"{_duration(doc['elapsed_s'])} (pooling to stats.json)")
    else:
        head.add_row("rate", "not measured: no build is running")
    if doc["breakers"]:
        for b in doc["breakers"]:
            head.add_row("breaker", escape(_breaker(b)))
        head.add_row("", escape(f"({doc['breakers_note']})"))
    else:
        head.add_row("breakers", doc["breakers_note"])
    for u in doc["stopped_units"]:
        why = u.get("error") or ", ".join(
            f"{who}: {sum(r.values())}" for who, r in u.get("transient", {}).items()
        )
        head.add_row("stopped", escape(f"{u['unit']} ({u['outcome']}): {why}"))
    parts: list[Any] = [head]
    if doc["failures"]:
        table = Table(title="failures so far", header_style="bold", box=box.SIMPLE_HEAD)
        for col in ("stage", "backend", "reason", "count"):
            table.add_column(col, justify="right" if col == "count" else "left")
        for f in doc["failures"]:
            table.add_row(escape(f["stage"]), escape(f["backend"]), escape(f["reason"]), str(f["count"]))
        parts.append(table)
    if doc["usage"]:
        table = Table(title="model usage so far", header_style="bold", box=box.SIMPLE_HEAD)
        cols = {"requests": "calls", "retries": "retry", "failures": "fail", "cache_hits": "cached",
                "tokens_in": "tok in", "tokens_out": "tok out"}  # fmt: skip
        table.add_column("role", no_wrap=True)
        for header in (*cols.values(), "cost"):
            table.add_column(header, justify="right", no_wrap=True)
        for role, u in doc["usage"].items():
            table.add_row(role, *(str(u.get(c, 0)) for c in cols), f"${u.get('cost_usd', 0):.2f}")
        parts.append(table)
    return Group(*parts)


@app.command()
def status(
    output: Annotated[
        str, typer.Argument(help="a build's output or a versioned root (local path or s3://bucket/prefix)")
    ],
    watch: Annotated[
        bool, typer.Option("--watch", help="refresh until the build is no longer running")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the status as one JSON document")] = False,
    interval: Annotated[float, typer.Option(help="seconds between refreshes with --watch", min=0.5)] = 5.0,
    window: Annotated[
        float, typer.Option(help="seconds of recent progress the rate is measured over", min=10)
    ] = 300.0,
    endpoint_url: EndpointOption = None,
) -> None:
    """Where a build stands, read from its storage alone: stage, units, pairs and turns,
    edits/s and ETA, failures by reason and backend, tokens and cost. Exit 0: running or
    finished; 1: stopped unfinished, or finished unusable; 3: no build at OUTPUT."""
    from editthinker_data.release.status import EXIT, StatusReader

    with failing_as_paragraph(f"output {output}"):
        reader = StatusReader(output, endpoint_url, window)
        try:
            doc = reader.read()
            if not watch:
                _show(doc, as_json)
            elif as_json:  # one compact document a line, a refresh each
                while True:
                    typer.echo(json.dumps(doc, sort_keys=True))
                    if doc["state"] not in ("running", "not_started"):
                        break
                    time.sleep(interval)
                    doc = reader.read()
            else:
                with Live(status_view(doc), console=console, auto_refresh=False) as live:
                    while doc["state"] in ("running", "not_started"):
                        time.sleep(interval)
                        doc = reader.read()
                        live.update(status_view(doc), refresh=True)
        except KeyboardInterrupt:
            pass
        finally:
            reader.close()
    if doc["state"] == "not_started" and not as_json:
        console.print(
            escape(f"{output}: nothing built here yet (no lease, unit markers or stats.json); "
                   f"start a build with: editthinker-data build CONFIG --output {output}"),
            soft_wrap=True,
        )  # fmt: skip
    raise typer.Exit(EXIT[doc["state"]])


def _show(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        console.print(status_view(doc))
