"""Edit data pooling: validate, dedup, classify, balance by task type, assign editors and
partitions. Pure logic over records; images are hashed and checked here but not kept, so
pooling stays bounded in memory and later stages reload only their own partition.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from PIL import Image, UnidentifiedImageError

from editthinker_data.classify import classify
from editthinker_data.config import BuildConfig
from editthinker_data.schema import TASK_TYPES, safe_key, sha256_hex
from editthinker_data.sources.jsonl import RecordError, SourceRecord
from editthinker_data.stats import StageStats
from editthinker_data.storage import read_url


@dataclass(frozen=True)
class PoolEntry:
    """One pooled pair as stored in pool/pairs.parquet (image by reference)."""

    id: str
    key: str
    instruction: str
    task_type: str
    image_path: str
    image_sha256: str
    origin: str
    editor: str = ""
    partition: int = -1


@dataclass
class PoolResult:
    entries: list[PoolEntry]
    stats: StageStats
    failures: list[RecordError]
    by_type: dict[str, dict[str, int]]


def stable_hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def check_instruction(text: str, max_chars: int) -> tuple[str, str] | None:
    """(reason, detail) when an instruction cannot drive an edit."""
    stripped = text.strip()
    if not stripped:
        return "empty_instruction", "the instruction is empty"
    if len(stripped) > max_chars:
        return (
            "instruction_too_long",
            f"{len(stripped)} characters, more than source.max_instruction_chars={max_chars}",
        )
    if len(re.findall(r"[^\W\d_]", stripped)) < 3:
        return "absurd_instruction", f"{stripped[:40]!r} holds no words"
    return None


def _load_image_info(rec: SourceRecord) -> tuple[str, str] | RecordError:
    """(sha256, path) after checking the file decodes; images are not kept in memory."""
    try:
        data = read_url(rec.image_path)
    except FileNotFoundError:
        return RecordError(rec.origin, rec.id, "image_missing", f"image {rec.image_path} not found")
    except OSError as err:
        return RecordError(rec.origin, rec.id, "image_unreadable", f"image {rec.image_path}: {err}")
    except ValueError as err:
        return RecordError(rec.origin, rec.id, "image_unreadable", str(err))
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        return RecordError(
            rec.origin, rec.id, "image_unreadable", f"image {rec.image_path} does not decode: {err}"
        )
    return sha256_hex(data), rec.image_path


def _weighted_cycle(names: list[str], ratios: list[float], n: int) -> list[str]:
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


def pool(records: Iterable[SourceRecord | RecordError], cfg: BuildConfig) -> PoolResult:
    src = cfg.source
    stats = StageStats()
    failures: list[RecordError] = []
    seen: set[tuple[str, str]] = set()
    seen_ids: set[str] = set()
    by_type: dict[str, list[PoolEntry]] = defaultdict(list)

    def fail(err: RecordError) -> None:
        stats.fail(err.reason)
        failures.append(err)

    for rec in records:
        if isinstance(rec, RecordError):
            fail(rec)
            continue
        problem = check_instruction(rec.instruction, src.max_instruction_chars)
        if problem:
            fail(RecordError(rec.origin, rec.id, *problem))
            continue
        try:
            key = safe_key(rec.id)
        except ValueError as err:
            fail(RecordError(rec.origin, rec.id, "bad_id", str(err)))
            continue
        if key in seen_ids:
            fail(
                RecordError(rec.origin, rec.id, "duplicate_id", f"id {rec.id!r} (key {key}) appears earlier")
            )
            continue
        task_type = rec.task_type if src.task_type != "classify" else None
        if task_type is not None and task_type not in TASK_TYPES:
            fail(
                RecordError(
                    rec.origin,
                    rec.id,
                    "bad_task_type",
                    f"task_type {task_type!r} is not one of {', '.join(TASK_TYPES)}",
                )
            )
            continue
        if task_type is None:
            if src.task_type == "given":
                fail(
                    RecordError(
                        rec.origin,
                        rec.id,
                        "missing_task_type",
                        "source.task_type is 'given' but the record has none",
                    )
                )
                continue
            task_type = classify(rec.instruction)
        info = _load_image_info(rec)
        if isinstance(info, RecordError):
            fail(info)
            continue
        sha, path = info
        dedup = (sha, " ".join(rec.instruction.lower().split()))
        if dedup in seen:
            stats.filter("duplicate")
            continue
        seen.add(dedup)
        seen_ids.add(key)
        by_type[task_type].append(
            PoolEntry(rec.id, key, rec.instruction.strip(), task_type, path, sha, rec.origin)
        )

    # Balanced sampling: per-type quotas, then an overall cap taken round-robin over types.
    chosen: dict[str, list[PoolEntry]] = {}
    for t in TASK_TYPES:
        entries = sorted(by_type.get(t, []), key=lambda e: stable_hash(cfg.seed, e.key))
        quota = src.quotas.get(t, src.per_type_quota)
        if quota is not None and len(entries) > quota:
            stats.filter("over_quota", len(entries) - quota)
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
            chosen[t] = chosen[t][: taken[t]]

    # Editors: weighted round robin within each task type, so every editor sees every type.
    names = [e.name for e in cfg.editors]
    ratios = [e.ratio for e in cfg.editors]
    assigned: list[PoolEntry] = []
    for t in TASK_TYPES:
        for entry, editor in zip(chosen[t], _weighted_cycle(names, ratios, len(chosen[t])), strict=True):
            assigned.append(PoolEntry(**{**asdict(entry), "editor": editor}))
    # Partitions: a stable order that mixes types and editors, cut into equal units.
    assigned.sort(key=lambda e: stable_hash(cfg.seed, "order", e.key))
    size = cfg.run.partition_size
    entries = [PoolEntry(**{**asdict(e), "partition": i // size}) for i, e in enumerate(assigned)]
    stats.keep(len(entries))
    counts = {
        t: {"kept": sum(1 for e in entries if e.task_type == t), "read": len(by_type.get(t, []))}
        for t in TASK_TYPES
    }
    return PoolResult(entries, stats, failures, counts)
