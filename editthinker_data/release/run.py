"""One call that writes everything a release needs beside the shards: trainer exports,
figures, gallery and the dataset card. Each part records its files in the manifest when it
is written (the manifest itself is written before them, when the shards are final)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from editthinker_data.core.layout import MANIFEST_FILE, StageName
from editthinker_data.core.reports import ReleaseReport
from editthinker_data.io.manifest import prune, record_files
from editthinker_data.io.storage import Storage
from editthinker_data.release.card import render_card
from editthinker_data.release.easyr1 import export_easyr1
from editthinker_data.release.figures import write_figures
from editthinker_data.release.gallery import write_gallery
from editthinker_data.release.llamafactory import export_llamafactory
from editthinker_data.release.report import Build
from editthinker_data.stages.base import Stage

EXPORTERS = {"llamafactory": export_llamafactory, "easyr1": export_easyr1}
CARD = "README.md"


def run_exports(build, formats: list[str]) -> dict[str, Any]:
    unknown = sorted(set(formats) - set(EXPORTERS))
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {sorted(EXPORTERS)}")
    return {f: EXPORTERS[f](build.storage) for f in formats}


def _publish(storage, prefix: str, root: Path, paths: list[Path]) -> list[str]:
    names = [f"{prefix}/{p.relative_to(root).as_posix()}" for p in paths]
    storage.publish_dir(prefix)
    prune(storage, prefix, names)
    record_files(storage, prefix, names)
    return names


def write_report(build, exports: dict[str, Any] | None = None, gallery_max: int = 200) -> dict[str, Any]:
    storage = build.storage
    fig_dir = storage.work_dir("figures")
    figures = _publish(storage, "figures", fig_dir, write_figures(build, fig_dir))
    gallery_dir = storage.work_dir("gallery")
    gallery = _publish(
        storage, "gallery", gallery_dir, write_gallery(build, gallery_dir, gallery_max, figures)
    )
    storage.write_bytes(CARD, render_card(build, figures, exports).encode())
    record_files(storage, CARD, [CARD])
    return {"card": CARD, "figures": figures, "gallery": gallery[0]}


class ReleaseStage(Stage[ReleaseReport]):
    """Trainer exports, figures, gallery and dataset card, from the finished shards; each
    file is added to the manifest's list, so the report carries the manifest as it now
    stands. Unmarked: it reads only the finished build and rewrites the same files."""

    name = StageName.RELEASE
    report = ReleaseReport
    marked = False

    def process(self, storage: Storage, unit: str) -> ReleaseReport:
        build = Build(storage)
        exports = run_exports(build, list(self.cfg.output.exports))
        card = write_report(build, exports) if self.cfg.output.report else {}
        return ReleaseReport(exports=exports, manifest=storage.read_json(MANIFEST_FILE), **card)
