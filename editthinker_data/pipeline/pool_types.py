"""The records pooling fills in and hands on: one input's row of the pooling table
(`SourceCounts`, which the quota steps in quotas.py update too) and what `pool()` returns.
Their own module so that pooling.py and quotas.py both import them and neither imports the
other."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from editthinker_data.core.stats import StageStats
from editthinker_data.io.pool_snapshot import PoolEntry
from editthinker_data.sources.base import RecordError

MAX_UNMAPPED, OTHER_LABELS = 50, "(other labels)"


@dataclass
class SourceCounts:
    """One input's row of the pooling table."""

    licence: str = ""
    read: int = 0
    unusable: Counter[str] = field(default_factory=Counter)
    filtered: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    kept: int = 0
    by_task_type: dict[str, dict[str, int]] = field(default_factory=dict)
    # labels no table maps -> records classified by instruction instead (at most
    # MAX_UNMAPPED distinct labels; the rest under "(other labels)")
    unmapped_labels: Counter[str] = field(default_factory=Counter)

    def count_unmapped(self, label: str) -> None:
        if label not in self.unmapped_labels and len(self.unmapped_labels) >= MAX_UNMAPPED:
            label = OTHER_LABELS
        self.unmapped_labels[label] += 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["unusable"], d["filtered"], d["unmapped_labels"] = (
            dict(sorted(self.unusable.items())),
            dict(sorted(self.filtered.items())),
            dict(sorted(self.unmapped_labels.items())),
        )
        return d


@dataclass
class PoolResult:
    entries: list[PoolEntry]
    stats: StageStats
    failures: list[RecordError]
    by_type: dict[str, dict[str, int]]
    by_source: dict[str, dict[str, Any]] = field(default_factory=dict)
    licences: dict[str, str] = field(default_factory=dict)
    stored_images: dict[str, str] = field(default_factory=dict)  # sha256 -> location
