"""The finalize stage: stats.json (every stage's counts, with reasons) and manifest.json
(every shard and table with its sha256), written last, from the units' reports."""

from __future__ import annotations

from collections import Counter
from typing import Any

from editthinker_data.config import BuildConfig
from editthinker_data.core.layout import CONFIG_FILE, MANIFEST_FILE, STATS_FILE, TABLE_FILES, wids_index
from editthinker_data.core.stats import StageStats
from editthinker_data.io.manifest import describe
from editthinker_data.io.storage import Storage
from editthinker_data.stages.base import Stage, write_failures
from editthinker_data.stages.versions import version_changes


def finalize(
    cfg: BuildConfig,
    storage: Storage,
    pool_report: dict[str, Any],
    generate_reports: list[dict[str, Any]],
    select_report: dict[str, Any],
    write_reports: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """manifest.json (every shard) and stats.json (every stage), written last."""
    generate = StageStats()
    stop_reasons: Counter[str] = Counter()
    failures = list(pool_report["failures"])
    shards: dict[str, list[dict[str, Any]]] = {"trajectories": [], "sft": [], "rl": []}
    for r in sorted(generate_reports, key=lambda r: r["partition"]):
        generate = generate.merge(StageStats.from_dict(r["stats"]))
        stop_reasons.update(r["stop_reasons"])
        failures.extend(r["failures"])
        shards["trajectories"].extend(r["shards"])
    for r in sorted(write_reports, key=lambda r: r["partition"]):
        for split in ("sft", "rl"):
            shards[split].extend(r["shards"][split])
    stats = {
        "config_fingerprint": cfg.fingerprint(),
        "stages": {
            "pool": pool_report["stats"],
            "generate": generate.to_dict(),
            "trajectory_filter": select_report["trajectory_filter"],
            "balance": select_report["balance"],
            "steps": select_report["steps"],
        },
        "splits": select_report["splits"],
        "trajectory_splits": select_report["trajectory_splits"],
        "by_task_type": select_report["by_task_type"],
        "selection": select_report["selection"],
        "stop_reasons": dict(sorted(stop_reasons.items())),
        "pool_by_task_type": pool_report["by_task_type"],
        "pool_by_editor": pool_report["by_editor"],
        "pool_by_source": pool_report.get("by_source", {}),
        "licences": pool_report.get("licences", {}),
        "licence_warnings": pool_report.get("licence_warnings", []),
        "failures": len(failures),
        **version_changes(cfg, storage, generate_reports),  # a dataset version: what changed since the last
        **(extra or {}),
    }
    write_failures(storage, failures)
    storage.write_bytes(CONFIG_FILE, cfg.model_dump_json(indent=2).encode())
    manifest = {
        "name": cfg.name,
        "config_fingerprint": cfg.fingerprint(),
        "shards": shards,
        "totals": {k: sum(s["samples"] for s in v) for k, v in shards.items()},
    }
    for split, items in shards.items():  # wids shard indexes: wids.ShardListDataset("sft.wids.json")
        storage.write_json(
            wids_index(split),
            {
                "__kind__": "wids-shard-index-v1",
                "wids_version": 1,
                "name": f"{cfg.name}-{split}",
                "shardlist": [{"url": s["url"], "nsamples": s["samples"]} for s in items],
            },
        )
    # stats.json and the trajectory indexes hold timings, so they would make rebuilds differ
    manifest["files"] = describe(storage, [*TABLE_FILES, *(wids_index(split) for split in shards)])
    storage.write_json(STATS_FILE, stats)
    storage.write_json(MANIFEST_FILE, manifest)
    return {"stats": stats, "manifest": manifest}


class FinalizeStage(Stage):
    """The build's last write: stats.json and manifest.json from every unit's report."""

    name = "finalize"
    marked = False

    def process(self, storage: Storage, unit: str, **reports: Any) -> dict[str, Any]:
        return finalize(self.cfg, storage, **reports)
