"""A static HTML gallery: each trajectory turn by turn, kept or filtered and why.

Each turn shows the image the editor made and, under it, the expert's critique OF THAT
IMAGE: the reasoning stored with turn t critiques turn t-1's image (the expert writes it
when refining), so turn t's image is paired with turn t+1's reasoning, or with the final
critique when the expert stopped. Filters (kept/filtered, task type, editor) are separate
static pages linked from every page, so the whole gallery works without JavaScript."""

from __future__ import annotations

import html
import re
import tarfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from editthinker_data.core.layout import POOL_FILE
from editthinker_data.io.shards import member_bytes
from editthinker_data.io.storage import read_url
from editthinker_data.io.tables import read_parquet

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}
h1{margin-bottom:4px} .meta{color:#555;margin-bottom:18px}
nav{margin:6px 0} nav a{margin-right:10px} nav a[aria-current=page]{font-weight:700;text-decoration:none}
ol.toc{columns:3;font-size:13px}
section.trajectory{background:#fff;border:1px solid #ddd;border-radius:8px;padding:14px;margin:0 0 22px}
section.trajectory h2{font-size:17px;margin:0 0 6px}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-size:12px;margin-left:8px}
.kept{background:#d6f5d6;color:#135213}.filtered{background:#f8dcdc;color:#7a1616}
.turns{display:flex;gap:12px;overflow-x:auto}
figure{margin:0;width:220px;flex:none}
figure img{width:192px;height:192px;image-rendering:pixelated;border:1px solid #ccc}
figure.best img{border:3px solid #2a9d2a}
figcaption{font-size:12px;line-height:1.35}
.label{font-weight:600;color:#333;font-style:normal}
.score{font-weight:600}.critique{color:#555;font-style:italic;margin-top:4px}
"""

HOW_TO_READ = (
    "Each turn shows the image the editor made from the instruction under it, then the "
    "expert's critique of that image (written when the expert refined it at the next turn, "
    "or its final critique when it stopped). The best turn of a kept trajectory is framed green."
)


def _rows_by_trajectory(storage) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name in storage.list("trajectories"):
        if name.endswith(".parquet"):
            for r in read_parquet(storage, name):
                out[r["trajectory"]].append(r)
    for rows in out.values():
        rows.sort(key=lambda r: r["turn"])
    return dict(sorted(out.items()))


def critiques(rows: list[dict[str, Any]]) -> dict[int, tuple[str, str | None]]:
    """turn -> (who wrote the critique of that turn's image, its text or None)."""
    out: dict[int, tuple[str, str | None]] = {}
    for cur, nxt in zip(rows, rows[1:], strict=False):
        out[cur["turn"]] = (f"expert, turn {nxt['turn']}", nxt["reasoning"])
    last = rows[-1]
    if last["final_reasoning"]:
        out[last["turn"]] = ("expert's final critique", last["final_reasoning"])
    elif last["error"]:
        out[last["turn"]] = ("none", f"no critique: the trajectory failed ({last['error']})")
    else:
        out[last["turn"]] = ("none", f"no critique: the loop stopped ({last['stop_reason']})")
    return out


def _slug(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "x"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    return slug


def _figure(r: dict[str, Any], critique: tuple[str, str | None], best: bool) -> str:
    e = html.escape
    who, text = critique
    if who == "none":
        crit = f'<div class="critique none" data-about-turn="{r["turn"]}">{e(text or "")}</div>'
    else:
        crit = (
            f'<div class="critique" data-about-turn="{r["turn"]}" data-written-by="{e(who)}">'
            f'<span class="label">critique of this image ({e(who)}):</span> {e(text or "")}</div>'
        )
    return (
        f'<figure class="turn{" best" if best else ""}" data-turn="{r["turn"]}">'
        f'<img src="img/{e(r["sample_key"])}.png" alt="turn {r["turn"]}: the edit">'
        f"<figcaption><b>turn {r['turn']}</b> "
        f'<span class="score">S={r["overall"]:.2f}</span> (sem {r["semantic"]:.1f}, qual {r["quality"]:.1f})'
        f'<div class="instruction"><span class="label">edited with:</span> {e(r["instruction"])}</div>'
        f"{crit}</figcaption></figure>"
    )


def _section(key: str, rows: list[dict[str, Any]], d: dict[str, Any], has_src: bool) -> str:
    e = html.escape
    kept = bool(d.get("keep"))
    badge = (
        f'<span class="badge kept">kept: best turn {d["best_turn"]}</span>'
        if kept
        else f'<span class="badge filtered">filtered: {e(str(d.get("reason", "?")))}</span>'
    )
    first = rows[0]
    src = f'<img src="img/{e(key)}_src.png" alt="source">' if has_src else ""
    figures = [
        f'<figure class="source">{src}<figcaption><b>source</b><br>'
        f"{e(first['source_instruction'])}</figcaption></figure>"
    ]
    crit = critiques(rows)
    for r in rows:
        figures.append(_figure(r, crit[r["turn"]], kept and r["turn"] == d.get("best_turn")))
    return (
        f'<section class="trajectory" id="t-{e(key)}" data-id="{e(key)}" data-kept="{str(kept).lower()}" '
        f'data-task-type="{e(first["task_type"])}" data-editor="{e(first["editor"])}">'
        f'<h2><a href="#t-{e(key)}">{e(first["pair_id"])}</a>{badge}</h2>'
        f'<div class="meta">{e(first["task_type"])} · editor {e(first["editor"])} · '
        f"stop: {e(first['stop_reason'])}</div>"
        f'<div class="turns">{"".join(figures)}</div></section>'
    )


def _has(key: str, value: str, trajectory: dict[str, Any]) -> bool:
    return bool(trajectory[key] == value)


def _pages(trajectories: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, Callable[[dict], bool]]]:
    """(file, group, label, predicate) of every page: all, kept, filtered, each task type and editor."""
    pages: list[tuple[str, str, str, Callable[[dict], bool]]] = [
        ("index.html", "show", "all", lambda t: True),
        ("kept.html", "show", "kept", lambda t: t["kept"]),
        ("filtered.html", "show", "filtered", lambda t: not t["kept"]),
    ]
    for dim, group in (("task_type", "task type"), ("editor", "editor")):
        taken: set[str] = set()
        prefix = dim.split("_")[0]
        for value in sorted({t[dim] for t in trajectories.values()}):
            pages.append((f"{prefix}-{_slug(value, taken)}.html", group, value, partial(_has, dim, value)))
    return pages


def write_gallery(
    build, out_dir: Path, max_trajectories: int = 200, figures: Sequence[str] = ()
) -> list[Path]:
    """Writes the pages and images; returns every file written, index.html first."""
    storage = build.storage
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "img").mkdir(exist_ok=True)
    written: list[Path] = []
    decisions = build.decisions()
    by_traj = _rows_by_trajectory(storage)
    chosen = list(by_traj)[:max_trajectories]
    wanted = {f"{r['sample_key']}.png": r for k in chosen for r in by_traj[k]}
    for shard in sorted({r["shard"] for r in wanted.values()}):
        with tarfile.open(storage.local_copy(shard)) as tar:
            for member in tar.getmembers():
                if member.name in wanted:
                    target = out_dir / "img" / member.name
                    target.write_bytes(member_bytes(tar, member))
                    written.append(target)
    pool = {r["key"]: r for r in read_parquet(storage, POOL_FILE)}
    info: dict[str, dict[str, Any]] = {}
    for key in chosen:
        rows, src = by_traj[key], pool.get(key)
        if src is not None:
            target = out_dir / "img" / f"{key}_src.png"
            target.write_bytes(read_url(src["image_path"]))
            written.append(target)
        d = decisions.get(key, {})
        info[key] = {
            "kept": bool(d.get("keep")),
            "task_type": rows[0]["task_type"],
            "editor": rows[0]["editor"],
            "pair_id": rows[0]["pair_id"],
            "html": _section(key, rows, d, src is not None),
        }
    pages = _pages(info)
    e, name = html.escape, html.escape(build.config.name)
    links = " ".join(f'<a href="../{e(f)}">{e(Path(f).stem.replace("_", " "))}</a>' for f in figures)
    stats = build.stats
    for file, _, label, pred in pages:
        members = [k for k in chosen if pred(info[k])]
        nav: dict[str, list[str]] = defaultdict(list)
        for f, group, lab, p in pages:
            count = sum(1 for t in info.values() if p(t))
            current = ' aria-current="page"' if f == file else ""
            nav[group].append(f'<a href="{e(f)}"{current}>{e(lab)} ({count})</a>')
        filters = "".join(f"<nav>{e(g)}: {' '.join(items)}</nav>" for g, items in nav.items())
        toc = "".join(
            f'<li><a href="#t-{e(k)}">{e(info[k]["pair_id"])}</a> '
            f"({'kept' if info[k]['kept'] else 'filtered'})</li>"
            for k in members
        )
        page = (
            f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{name} gallery: {e(label)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{name}</h1>"
            f'<nav class="links"><a href="../README.md">dataset card</a>'
            f"{' figures: ' + links if links else ''}</nav>{filters}"
            f'<p class="meta">{e(label)}: {len(members)} of {len(by_traj)} trajectories · '
            f"steps: sft {stats['splits']['sft']}, rl {stats['splits']['rl']} · {e(HOW_TO_READ)}</p>"
            f'<ol class="toc">{toc}</ol></header><main>'
            + "\n".join(info[k]["html"] for k in members)
            + "</main></body></html>"
        )
        target = out_dir / file
        target.write_text(page, encoding="utf-8")
        written.append(target)
    index = out_dir / "index.html"
    return [index] + sorted({p for p in written if p != index})
