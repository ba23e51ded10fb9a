"""Pooling's sampling: each source's quota spread over task types, per-type quotas and
source.max_pairs taken round robin over types, then editors by ratio and partitions from a
seeded order. Pure and deterministic (seeded hashes, no random state)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import replace

from editthinker_data.config import BuildConfig
from editthinker_data.core.schema import TASK_TYPES
from editthinker_data.core.stats import StageStats
from editthinker_data.io.pool_snapshot import PoolEntry
from editthinker_data.pipeline.pool_types import SourceCounts


def stable_hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def water_fill(counts: dict[str, int], quota: int) -> dict[str, int]:
    """How many to take of each task type so that `quota` is spread as evenly as the
    counts allow: a small type gives all it has, the rest share what it leaves."""
    alloc = dict.fromkeys(counts, 0)
    active = [t for t in TASK_TYPES if counts.get(t, 0) > 0]
    remaining = min(quota, sum(counts.values()))
    while remaining and active:
        share = max(1, remaining // len(active))
        for t in list(active):
            give = min(share, counts[t] - alloc[t], remaining)
            alloc[t] += give
            remaining -= give
            if alloc[t] == counts[t]:
                active.remove(t)
            if not remaining:
                break
    return alloc


def source_quotas(cfg: BuildConfig) -> dict[str, int | None]:
    """Each input's quota: given, a share of source.max_pairs by ratio, or none."""
    inputs = cfg.source.all_inputs()
    total_ratio = sum(i.ratio for i in inputs if i.ratio is not None)
    out: dict[str, int | None] = {}
    for i in inputs:
        if i.ratio is not None:
            assert cfg.source.max_pairs is not None  # SourceConfig rejects a ratio without it
            out[i.name] = round(cfg.source.max_pairs * i.ratio / total_ratio)
        else:
            out[i.name] = i.quota
    return out


def weighted_cycle(names: list[str], ratios: list[float], n: int) -> list[str]:
    """Smooth weighted round robin: deterministic, proportional at every prefix."""
    total = sum(ratios)
    current = [0.0] * len(names)
    out = []
    for _ in range(n):
        for i, r in enumerate(ratios):
            current[i] += r
        best = max(range(len(names)), key=lambda i: (current[i], -i))
        current[best] -= total
        out.append(names[best])
    return out


def take_source_quotas(
    candidates: dict[tuple[str, str], list[PoolEntry]],
    counts: dict[str, SourceCounts],
    cfg: BuildConfig,
    stats: StageStats,
) -> dict[str, list[PoolEntry]]:
    """Each source's quota, spread evenly over its task types (a seeded order within each)."""
    by_type: dict[str, list[PoolEntry]] = defaultdict(list)
    quotas = source_quotas(cfg)
    for name in counts:
        have = {t: len(candidates.get((name, t), [])) for t in TASK_TYPES}
        quota = quotas.get(name)
        take = water_fill(have, quota) if quota is not None else have
        for t in TASK_TYPES:
            entries = sorted(candidates.pop((name, t), []), key=lambda e: stable_hash(cfg.seed, e.key))
            if len(entries) > take[t]:
                stats.filter("over_source_quota", len(entries) - take[t])
                counts[name].filtered["over_source_quota"] += len(entries) - take[t]
            by_type[t].extend(entries[: take[t]])
    return by_type


def take_type_quotas(
    by_type: dict[str, list[PoolEntry]], counts: dict[str, SourceCounts], cfg: BuildConfig, stats: StageStats
) -> dict[str, list[PoolEntry]]:
    """Balanced sampling over the whole pool: per-type quotas, then source.max_pairs taken
    round-robin over types."""
    src = cfg.source
    chosen: dict[str, list[PoolEntry]] = {}
    for t in TASK_TYPES:
        entries = sorted(by_type.get(t, []), key=lambda e: stable_hash(cfg.seed, e.key))
        quota = src.quotas.get(t, src.per_type_quota)
        if quota is not None and len(entries) > quota:
            stats.filter("over_quota", len(entries) - quota)
            count_dropped(counts, entries[quota:], "over_quota")
            entries = entries[:quota]
        chosen[t] = entries
    if src.max_pairs is not None:
        taken: dict[str, int] = defaultdict(int)
        budget, moved = src.max_pairs, True
        while budget and moved:
            moved = False
            for t in TASK_TYPES:
                if budget and taken[t] < len(chosen[t]):
                    taken[t] += 1
                    budget -= 1
                    moved = True
        for t in TASK_TYPES:
            dropped = len(chosen[t]) - taken[t]
            if dropped:
                stats.filter("over_max_pairs", dropped)
                count_dropped(counts, chosen[t][taken[t] :], "over_max_pairs")
            chosen[t] = chosen[t][: taken[t]]
    return chosen


def assign(chosen: dict[str, list[PoolEntry]], cfg: BuildConfig) -> list[PoolEntry]:
    """Editors by weighted round robin within each task type (every editor sees every type);
    partitions cut from a seeded order that mixes types, editors and sources."""
    names = [e.name for e in cfg.editors]
    ratios = [e.ratio for e in cfg.editors]
    assigned: list[PoolEntry] = []
    for t in TASK_TYPES:
        for entry, editor in zip(chosen[t], weighted_cycle(names, ratios, len(chosen[t])), strict=True):
            assigned.append(replace(entry, editor=editor))
    assigned.sort(key=lambda e: stable_hash(cfg.seed, "order", e.key))
    size = partition_size(len(assigned), cfg)
    return [replace(e, partition=i // size) for i, e in enumerate(assigned)]


# `run.partition_size: auto`. A unit has a fixed cost (a Prefect task run, a Ray task, its
# partition's snapshot read, its index and marker written: about a CPU second) that its
# turns must repay, so it is never smaller than MIN_UNIT_PAIRS; and a paper-size pool is cut
# into about TARGET_UNITS units, not tens of thousands. Resume stays per trajectory (the
# unit's journal), so a large unit loses no more work to a crash than a small one.
TARGET_UNITS = 256
MIN_UNIT_PAIRS = 256


def partition_size(pairs: int, cfg: BuildConfig) -> int:
    """Pairs per partition: the config's number, or for auto the larger of a share of the
    pool (TARGET_UNITS units), MIN_UNIT_PAIRS, and two rounds of every editor's batches (so
    one unit can keep the cluster's editors fed by itself)."""
    if cfg.run.partition_size != "auto":
        return cfg.run.partition_size
    slots = sum(e.num_actors * e.batch_size for e in cfg.editors)
    return max(1, -(-pairs // TARGET_UNITS), MIN_UNIT_PAIRS, 2 * slots)


def count_dropped(counts: dict[str, SourceCounts], dropped: list[PoolEntry], reason: str) -> None:
    for e in dropped:
        counts[e.source].filtered[reason] += 1
