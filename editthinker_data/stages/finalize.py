"""The finalize stage: stats.json (every stage's counts, with reasons) and manifest.json
(every shard and table with its sha256), written last, from the units' reports."""

from __future__ import annotations

from collections import Counter
from typing import Any

from editthinker_data.config import BuildConfig
from editthinker_data.core.layout import (
    CONFIG_FILE,
    MANIFEST_FILE,
    SPLITS,
    STATS_FILE,
    TABLE_FILES,
    StageName,
    wids_index,
)
from editthinker_data.core.reports import (
    FinalizeReport,
    GenerateReport,
    PoolReport,
    SelectReport,
    ShardInfo,
    WriteStepsReport,
)
from editthinker_data.core.stats import StageStats
from editthinker_data.io.manifest import describe
from editthinker_data.io.storage import Storage
from editthinker_data.stages.base import Stage, write_failures
from editthinker_data.stages.versions import version_changes


def finalize(
    cfg: BuildConfig,
    storage: Storage,
    pool: PoolReport,
    generate: list[GenerateReport],
    select: SelectReport,
    write: list[WriteStepsReport],
    extra: dict[str, Any] | None = None,
) -> FinalizeReport:
    """manifest.json (every shard) and stats.json (every stage), written last."""
    generated = StageStats()
    stop_reasons: Counter[str] = Counter()
    failures = list(pool.failures)
    shards: dict[str, list[ShardInfo]] = {"trajectories": [], **{split: [] for split in SPLITS}}
    for g in sorted(generate, key=lambda r: r.partition):
        generated = generated.merge(StageStats.from_dict(g.stats))
        stop_reasons.update(g.stop_reasons)
        failures.extend(g.failures)
        shards["trajectories"].extend(g.shards)
    for w in sorted(write, key=lambda r: r.partitions[0]):
        for split in SPLITS:
            shards[split].extend(w.shards[split])
    stats = {
        "config_fingerprint": cfg.fingerprint(),
        "stages": {
            "pool": pool.stats,
            "generate": generated.to_dict(),
            "trajectory_filter": select.trajectory_filter,
            "balance": select.balance,
            "steps": select.steps,
        },
        "splits": select.splits,
        "trajectory_splits": select.trajectory_splits,
        "by_task_type": select.by_task_type,
        "selection": select.selection,
        "stop_reasons": dict(sorted(stop_reasons.items())),
        "pool_by_task_type": pool.by_task_type,
        "pool_by_editor": pool.by_editor,
        "pool_by_source": pool.by_source,
        "licences": pool.licences,
        "licence_warnings": pool.licence_warnings,
        "failures": len(failures),
        **version_changes(cfg, storage, generate),  # a dataset version: what changed since the last
        **(extra or {}),
    }
    write_failures(storage, failures)
    storage.write_bytes(CONFIG_FILE, cfg.model_dump_json(indent=2).encode())
    manifest: dict[str, Any] = {
        "name": cfg.name,
        "config_fingerprint": cfg.fingerprint(),
        "shards": {kind: [s.to_dict() for s in items] for kind, items in shards.items()},
        "totals": {kind: sum(s.samples for s in items) for kind, items in shards.items()},
    }
    for kind, items in shards.items():  # wids shard indexes: wids.ShardListDataset("sft.wids.json")
        storage.write_json(
            wids_index(kind),
            {
                "__kind__": "wids-shard-index-v1",
                "wids_version": 1,
                "name": f"{cfg.name}-{kind}",
                "shardlist": [{"url": s.url, "nsamples": s.samples} for s in items],
            },
        )
    # stats.json and the trajectory indexes hold timings, so they would make rebuilds differ
    manifest["files"] = describe(storage, [*TABLE_FILES, *(wids_index(kind) for kind in shards)])
    storage.write_json(STATS_FILE, stats)
    storage.write_json(MANIFEST_FILE, manifest)
    return FinalizeReport(stats=stats, manifest=manifest)


class FinalizeStage(Stage[FinalizeReport]):
    """The build's last write: stats.json and manifest.json from every unit's report."""

    name = StageName.FINALIZE
    report = FinalizeReport
    marked = False

    def process(
        self,
        storage: Storage,
        unit: str,
        pool: PoolReport,
        generate: list[GenerateReport],
        select: SelectReport,
        write: list[WriteStepsReport],
        extra: dict[str, Any] | None = None,
    ) -> FinalizeReport:
        return finalize(self.cfg, storage, pool, generate, select, write, extra)
