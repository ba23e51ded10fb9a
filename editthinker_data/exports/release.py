"""One call that writes everything a release needs beside the shards: trainer exports,
figures, gallery and the dataset card."""

from __future__ import annotations

from typing import Any

from editthinker_data.exports.card import render_card
from editthinker_data.exports.easyr1 import export_easyr1
from editthinker_data.exports.figures import write_figures
from editthinker_data.exports.gallery import write_gallery
from editthinker_data.exports.llamafactory import export_llamafactory

EXPORTERS = {"llamafactory": export_llamafactory, "easyr1": export_easyr1}


def run_exports(build, formats: list[str]) -> dict[str, Any]:
    unknown = sorted(set(formats) - set(EXPORTERS))
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {sorted(EXPORTERS)}")
    return {f: EXPORTERS[f](build.storage) for f in formats}


def write_report(build, exports: dict[str, Any] | None = None, gallery_max: int = 200) -> dict[str, Any]:
    storage = build.storage
    fig_dir = storage.work_dir("figures")
    figures = [f"figures/{p.relative_to(fig_dir).as_posix()}" for p in write_figures(build, fig_dir)]
    storage.publish_dir("figures")
    write_gallery(build, storage.work_dir("gallery"), gallery_max)
    storage.publish_dir("gallery")
    storage.write_bytes("README.md", render_card(build, figures, exports).encode())
    return {"card": "README.md", "figures": figures, "gallery": "gallery/index.html"}
