"""What each stage's unit hands back: to the flow, to finalize, and to its marker (a marker
is the report's JSON, so a rerun reads back exactly what the first run returned).

Frozen dataclasses rather than dicts, so every reader names a field: a misspelt key is a type
error in CI, not a KeyError on the last stage of a week-long build. The nested counters
(`StageStats.to_dict()`, selection summaries, usage) stay JSON documents: they are written
to stats.json as they are, and no stage reads into them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Self

Json = dict[str, Any]


@dataclass(frozen=True)
class ShardInfo:
    """One written shard: its path relative to the output root, digest, size and samples."""

    url: str
    sha256: str
    bytes: int
    samples: int

    def to_dict(self) -> Json:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Json) -> ShardInfo:
        return cls(data["url"], data["sha256"], int(data["bytes"]), int(data["samples"]))


@dataclass(frozen=True, kw_only=True)
class StageReport:
    """The base: the config fingerprint the unit ran under (stamped by `run_unit`)."""

    fingerprint: str = ""

    @property
    def finished(self) -> bool:
        """A finished unit gets its marker; an unfinished one is run again by a rerun."""
        return True

    def to_dict(self) -> Json:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Json) -> Self:
        """Keys this version does not know (a marker of an older build) are left out."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def stamped(self, fingerprint: str) -> Self:
        return dataclasses.replace(self, fingerprint=fingerprint)


@dataclass(frozen=True, kw_only=True)
class PoolReport(StageReport):
    pairs: int
    partitions: list[int]
    stats: Json
    by_task_type: dict[str, dict[str, int]]  # task type -> read, kept
    by_editor: dict[str, int]
    by_source: Json = field(default_factory=dict)
    licences: Json = field(default_factory=dict)
    licence_warnings: list[str] = field(default_factory=list)
    signature_cache: dict[str, int] = field(default_factory=dict)
    sources: Json | None = None  # what the inputs held (sources/content.py)
    config_fingerprint: str = ""
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def pairs_per_partition(self) -> float:
        return self.pairs / max(len(self.partitions), 1)


@dataclass(frozen=True, kw_only=True)
class TransientPairs:
    """Pairs one backend could not answer (an outage, a rate limit): retried by a rerun."""

    count: int
    example: str
    pairs: list[str]


@dataclass(frozen=True, kw_only=True)
class GenerateReport(StageReport):
    """One partition's rollouts. `incomplete`: some pairs got no answer from a backend
    (`transient`), so the unit has no marker and a rerun runs only those pairs."""

    partition: int
    incomplete: bool = False
    pairs: int = 0
    transient: dict[str, TransientPairs] = field(default_factory=dict)
    stats: Json = field(default_factory=dict)
    stop_reasons: dict[str, int] = field(default_factory=dict)
    turns: int = 0
    shards: list[ShardInfo] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    failed_pairs: int = 0
    backend_failures: dict[str, int] = field(default_factory=dict)
    scheduler: Json = field(default_factory=dict)
    usage: Json = field(default_factory=dict)
    resumed: int = 0
    reused: list[str] = field(default_factory=list)  # pairs taken from a version's trajectory store
    progress: Json = field(default_factory=dict)  # the unit's last progress record (io/unit_progress.py)

    @property
    def finished(self) -> bool:
        return not self.incomplete

    @classmethod
    def from_dict(cls, data: Json) -> GenerateReport:
        report = super().from_dict(data)
        return dataclasses.replace(
            report,
            shards=[ShardInfo.from_dict(s) for s in data.get("shards", [])],
            transient={who: TransientPairs(**t) for who, t in data.get("transient", {}).items()},
        )


@dataclass(frozen=True, kw_only=True)
class SelectReport(StageReport):
    trajectory_filter: Json
    balance: Json
    steps: Json
    splits: dict[str, int]
    trajectory_splits: dict[str, int]
    by_task_type: Json
    selection: Json
    write_runs: list[list[int]] = field(default_factory=list)  # partitions that share step shards


@dataclass(frozen=True, kw_only=True)
class WriteStepsReport(StageReport):
    partitions: list[int]
    samples: dict[str, int]
    shards: dict[str, list[ShardInfo]]

    @classmethod
    def from_dict(cls, data: Json) -> WriteStepsReport:
        report = super().from_dict(data)
        shards = {split: [ShardInfo.from_dict(s) for s in items] for split, items in data["shards"].items()}
        return dataclasses.replace(report, shards=shards)


@dataclass(frozen=True, kw_only=True)
class FinalizeReport(StageReport):
    """stats.json and manifest.json as written: the documents a user reads."""

    stats: Json
    manifest: Json


@dataclass(frozen=True, kw_only=True)
class ReleaseReport(StageReport):
    """Trainer exports, the card's files, and the manifest as it stands after them."""

    exports: Json
    manifest: Json
    card: str | None = None  # the dataset card, gallery and figures, when `output.report` asks
    gallery: str | None = None
    figures: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class BuildResult:
    """What a whole build returns to its caller (the CLI, a scheduled run)."""

    stats: Json
    manifest: Json
    release: ReleaseReport | None = None
