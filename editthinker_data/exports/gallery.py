"""A static HTML gallery (no server, no JavaScript needed): each trajectory turn by turn,
images side by side with instructions, reasoning and scores, and whether the filter kept
it and why."""

from __future__ import annotations

import html
import tarfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from editthinker_data.storage import read_url
from editthinker_data.units import POOL_FILE, read_parquet

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}
h1{margin-bottom:4px} .meta{color:#555;margin-bottom:18px}
section.trajectory{background:#fff;border:1px solid #ddd;border-radius:8px;padding:14px;margin:0 0 22px}
section.trajectory h2{font-size:17px;margin:0 0 6px}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-size:12px;margin-left:8px}
.kept{background:#d6f5d6;color:#135213}.filtered{background:#f8dcdc;color:#7a1616}
.turns{display:flex;gap:12px;overflow-x:auto}
figure{margin:0;width:220px;flex:none}
figure img{width:192px;height:192px;image-rendering:pixelated;border:1px solid #ccc}
figure.best img{border:3px solid #2a9d2a}
figcaption{font-size:12px;line-height:1.35}
.score{font-weight:600}.reasoning{color:#555;font-style:italic}
"""


def _rows_by_trajectory(storage) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name in storage.list("trajectories"):
        if name.endswith(".parquet"):
            for r in read_parquet(storage, name):
                out[r["trajectory"]].append(r)
    for rows in out.values():
        rows.sort(key=lambda r: r["turn"])
    return dict(sorted(out.items()))


def write_gallery(build, out_dir: Path, max_trajectories: int = 200) -> Path:
    storage = build.storage
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "img").mkdir(exist_ok=True)
    decisions = build.decisions()
    by_traj = _rows_by_trajectory(storage)
    chosen = list(by_traj)[:max_trajectories]
    wanted = {f"{r['sample_key']}.png": r for k in chosen for r in by_traj[k]}
    for shard in sorted({r["shard"] for r in wanted.values()}):
        with tarfile.open(storage.local_copy(shard)) as tar:
            for member in tar.getmembers():
                if member.name in wanted:
                    (out_dir / "img" / member.name).write_bytes(tar.extractfile(member).read())
    pool = {r["key"]: r for r in read_parquet(storage, POOL_FILE)}
    sections = []
    for key in chosen:
        rows = by_traj[key]
        src = pool.get(key)
        if src is not None:
            (out_dir / "img" / f"{key}_src.png").write_bytes(read_url(src["image_path"]))
        d = decisions.get(key, {})
        kept = bool(d.get("keep"))
        badge = (
            f'<span class="badge kept">kept: best turn {d["best_turn"]}</span>'
            if kept
            else f'<span class="badge filtered">filtered: {html.escape(str(d.get("reason", "?")))}</span>'
        )
        first = rows[0]
        figures = [
            f'<figure class="source"><img src="img/{html.escape(key)}_src.png" alt="source"><figcaption><b>source</b><br>'
            f"{html.escape(first['source_instruction'])}</figcaption></figure>"
        ]
        for r in rows:
            best = kept and r["turn"] == d.get("best_turn")
            reasoning = (
                f'<div class="reasoning">{html.escape(r["reasoning"])}</div>' if r["reasoning"] else ""
            )
            figures.append(
                f'<figure class="turn{" best" if best else ""}" data-turn="{r["turn"]}">'
                f'<img src="img/{html.escape(r["sample_key"])}.png" alt="turn {r["turn"]}">'
                f"<figcaption><b>turn {r['turn']}</b> "
                f'<span class="score">S={r["overall"]:.2f}</span> (sem {r["semantic"]:.1f}, qual {r["quality"]:.1f})<br>'
                f"{reasoning}<div>{html.escape(r['instruction'])}</div></figcaption></figure>"
            )
        final = (
            f'<p class="reasoning">final: {html.escape(first["final_reasoning"])}</p>'
            if first["final_reasoning"]
            else ""
        )
        sections.append(
            f'<section class="trajectory" data-id="{html.escape(key)}" data-kept="{str(kept).lower()}">'
            f"<h2>{html.escape(first['pair_id'])}{badge}</h2>"
            f'<div class="meta">{html.escape(first["task_type"])} · editor {html.escape(first["editor"])} · '
            f"stop: {html.escape(first['stop_reason'])}</div>"
            f'<div class="turns">{"".join(figures)}</div>{final}</section>'
        )
    stats = build.stats
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(build.config.name)} gallery</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(build.config.name)}</h1>"
        f'<div class="meta">{len(chosen)} of {len(by_traj)} trajectories · '
        f"steps: sft {stats['splits']['sft']}, rl {stats['splits']['rl']} · the best turn of a kept trajectory is framed green</div>"
        + "\n".join(sections)
        + "</body></html>"
    )
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
