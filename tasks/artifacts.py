"""What a build shows in the Prefect UI beside its task states: a live progress artifact (pairs
generated of those pooled, from the live progress counters, updated as each unit ends), a table
artifact of each stage's units when the stage ends, and the finished build's summary."""

from __future__ import annotations

import re
import threading
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from editthinker_data.config import BuildConfig
from editthinker_data.core.progress import Progress
from editthinker_data.core.reports import FinalizeReport, StageReport


def artifact_key(*parts: str) -> str:
    """Prefect takes lowercase letters, digits and dashes in an artifact's key."""
    return "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts)


def generated_percent(snapshot: dict[str, Any]) -> float:
    """Pairs generated of those pooled, in percent (0 before the pool stage has counted them)."""
    total = float(snapshot.get("total_pairs") or 0)
    return min(100.0, 100.0 * float(snapshot.get("pairs_done") or 0) / total) if total else 0.0


def unit_row(unit: str, report: StageReport | None, error: str | None) -> dict[str, Any]:
    """One unit in its stage's table: how it ended, with its pairs and turns where it has them."""
    outcome = "failed" if error is not None else "done" if report is None or report.finished else "unfinished"
    return {
        "unit": unit,
        "outcome": outcome,
        "pairs": getattr(report, "pairs", ""),
        "turns": getattr(report, "turns", ""),
        "failed pairs": getattr(report, "failed_pairs", ""),
        "error": error or "",
    }


class BuildArtifacts:
    """The running build's artifacts. `unit_ended` runs in the executor's threads; a stage's
    table is made from its units' rows when `stage_ended` is called."""

    def __init__(self, cfg: BuildConfig, output: str, progress: Progress):
        self.name, self.output, self.progress = cfg.name, output, progress
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        made = create_progress_artifact(
            0.0, key=artifact_key(cfg.name, "progress"), description=self._describe()
        )
        # Prefect types it for async callers too; in a sync flow it is the id itself.
        assert isinstance(made, UUID), made
        self.progress_id: UUID = made

    def _describe(self) -> str:
        snap = self.progress.snapshot()
        done, total = int(snap.get("pairs_done", 0)), int(snap.get("total_pairs", 0))
        return f"{self.name} into {self.output}: {snap['stage']}, {done} of {total} pairs generated"

    def unit_ended(self, unit: str, report: StageReport | None, error: str | None) -> None:
        with self._lock:
            self._rows.append(unit_row(unit, report, error))
        percent = generated_percent(self.progress.snapshot())
        update_progress_artifact(self.progress_id, percent, description=self._describe())

    def stage_ended(self, stage: str) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
        if rows:
            create_table_artifact(
                rows,
                key=artifact_key(self.name, str(stage)),
                description=f"{self.name}: the {stage} stage's units, as they ended",
            )

    def finished(self) -> None:
        update_progress_artifact(self.progress_id, 100.0, description=self._describe())


def summary_artifact(cfg: BuildConfig, output: str, final: FinalizeReport) -> None:
    """The finished build's stages and splits, as a table."""
    rows = "\n".join(
        f"| {name} | {s['input']} | {s['kept']} | {sum(s['filtered'].values())} | {sum(s['failed'].values())} |"
        for name, s in final.stats["stages"].items()
    )
    create_markdown_artifact(
        key="dataset-build-summary",
        markdown=f"# {cfg.name}\n\n| stage | input | kept | filtered | failed |\n|---|---|---|---|---|\n{rows}\n\n"
        f"splits: {final.stats['splits']}\n",
        description=f"build of {cfg.name} into {output}",
    )
