"""The trajectory index (one Parquet table per partition, a row per turn: scores,
instructions, reasoning, stop reason) read back as one `TrajectorySummary` per trajectory.
Selection decides from these alone, and write_steps and the release report read them too;
here, beside the format, so none of them depends on the stage that wrote the index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from editthinker_data.core.layout import trajectory_index
from editthinker_data.io.storage import Storage
from editthinker_data.io.tables import read_parquet


@dataclass(frozen=True)
class TurnSummary:
    index: int
    instruction: str
    reasoning: str | None
    semantic: float
    quality: float
    overall: float

    def score(self, which: str) -> float:
        return {"overall": self.overall, "semantic": self.semantic, "quality": self.quality}[which]


@dataclass(frozen=True)
class TrajectorySummary:
    key: str
    partition: int
    task_type: str
    editor: str
    source_instruction: str
    stop_reason: str
    turns: tuple[TurnSummary, ...]
    final_reasoning: str | None = None
    final_instruction: str | None = None
    error: str | None = None  # a turn failed for good; the stored turns are those before it


def load_trajectory_summaries(storage: Storage, partitions: Sequence[int]) -> list[TrajectorySummary]:
    by_traj: dict[str, list[dict[str, Any]]] = {}
    for p in partitions:
        name = trajectory_index(p)
        if storage.exists(name):
            for row in read_parquet(storage, name):
                by_traj.setdefault(row["trajectory"], []).append(row)
    out = []
    for key, rows in sorted(by_traj.items()):
        rows.sort(key=lambda r: r["turn"])
        first = rows[0]
        turns = tuple(
            TurnSummary(
                r["turn"], r["instruction"], r["reasoning"], r["semantic"], r["quality"], r["overall"]
            )
            for r in rows
        )
        out.append(
            TrajectorySummary(
                key, first["partition"], first["task_type"], first["editor"], first["source_instruction"],
                first["stop_reason"], turns, first["final_reasoning"], first["final_instruction"],
                first.get("error"),
            )
        )  # fmt: skip
    return out
