"""Every number a stage keeps or drops, with reasons: input = kept + filtered + failed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StageStats:
    input: int = 0
    kept: int = 0
    filtered: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)

    def keep(self, n: int = 1) -> None:
        self.input += n
        self.kept += n

    def filter(self, reason: str, n: int = 1) -> None:
        self.input += n
        self.filtered[reason] += n

    def fail(self, reason: str, n: int = 1) -> None:
        self.input += n
        self.failed[reason] += n

    @property
    def balanced(self) -> bool:
        return self.input == self.kept + sum(self.filtered.values()) + sum(self.failed.values())

    def merge(self, other: StageStats) -> StageStats:
        return StageStats(
            self.input + other.input,
            self.kept + other.kept,
            self.filtered + other.filtered,
            self.failed + other.failed,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "kept": self.kept,
            "filtered": dict(sorted(self.filtered.items())),
            "failed": dict(sorted(self.failed.items())),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageStats:
        return cls(d["input"], d["kept"], Counter(d.get("filtered", {})), Counter(d.get("failed", {})))
