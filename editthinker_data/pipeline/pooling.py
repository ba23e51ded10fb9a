"""Edit data pooling: validate, map labels or classify, dedup across sources, take each
source's quota balanced by task type, then assign editors and partitions. Pure logic over
records; images are hashed (sha256 + perceptual hash of a thumbnail, cached) and never kept,
so pooling 400K records stays bounded in memory and later stages reload only their own
partition. Embedded images (tables, tars) are written once, by content, through `store`.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from itertools import islice
from sys import intern
from typing import Any

from editthinker_data.config import BuildConfig, ConfigError
from editthinker_data.core.schema import TASK_TYPES, safe_key
from editthinker_data.core.stats import StageStats
from editthinker_data.io.imagesig import ImageLimits, ImageProblem, Signature, SignatureCache, hamming
from editthinker_data.io.pool_snapshot import PoolEntry
from editthinker_data.pipeline.pool_types import PoolResult, SourceCounts
from editthinker_data.pipeline.quotas import assign, take_source_quotas, take_type_quotas
from editthinker_data.sources import default_licence
from editthinker_data.sources.base import RecordError, SourceRecord
from editthinker_data.sources.classify import classify
from editthinker_data.sources.formats import FORMATS
from editthinker_data.sources.labels import LabelMapper

# (sha256, extension, bytes) -> the stored image's location
ImageStore = Callable[[str, str, bytes], str]


def normalise_instruction(text: str) -> str:
    return " ".join(text.lower().split())


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


class _Dedup:
    """Exact (same bytes, same instruction) and near (pHash within `distance` bits, same
    instruction) duplicates. Near matches are searched among the images that share the
    normalised instruction only, so the search stays small at 400K records. Keys are
    digests (16 bytes of instruction hash + 16 of image sha256), not the strings, to keep
    the sets small."""

    def __init__(self, distance: int | None):
        self.distance = distance
        self.exact: set[bytes] = set()
        self.by_text: dict[bytes, list[int]] = defaultdict(list)

    def check(self, sha: str, phash: int, text: str) -> str | None:
        t = hashlib.blake2b(text.encode(), digest_size=16).digest()
        key = t + bytes.fromhex(sha[:32])
        if key in self.exact:
            return "duplicate"
        seen = self.by_text.get(t, ())
        if self.distance is not None and any(hamming(phash, p) <= self.distance for p in seen):
            return "near_duplicate"
        self.exact.add(key)
        self.by_text[t].append(phash)
        return None


def pool(
    records: Iterable[SourceRecord | RecordError],
    cfg: BuildConfig,
    *,
    sigs: SignatureCache | None = None,
    store: ImageStore | None = None,
) -> PoolResult:
    src = cfg.source
    sigs = sigs or SignatureCache()
    specs = {i.name: i for i in src.all_inputs()}
    mappers = {n: LabelMapper(FORMATS.get(i.format), i.label_map, i.default_labels) for n, i in specs.items()}
    stats = StageStats()
    failures: list[RecordError] = []
    seen_ids: set[str] = set()
    dedup = _Dedup(src.near_duplicate_distance)
    counts: dict[str, SourceCounts] = {}
    licences: dict[str, str] = {}
    stored: dict[str, str] = {}
    candidates: dict[tuple[str, str], list[PoolEntry]] = defaultdict(list)

    def row(name: str) -> SourceCounts:
        if name not in counts:
            counts[name] = SourceCounts(by_task_type={t: {"read": 0, "kept": 0} for t in TASK_TYPES})
        return counts[name]

    def fail(err: RecordError) -> None:
        stats.fail(err.reason)
        row(err.source).unusable[err.reason] += 1
        failures.append(err)

    only = next(iter(specs)) if len(specs) == 1 else ""
    limits = ImageLimits(src.max_image_pixels, src.min_image_side, src.max_image_bytes)
    for rec, sig in _with_signatures(records, sigs, limits):
        if not rec.source and only:  # records read without read_input (one input)
            rec = replace(rec, source=only)
        c = row(rec.source)
        c.read += 1
        if isinstance(rec, RecordError):
            if rec.filtered:
                stats.filter(rec.reason)
                c.filtered[rec.reason] += 1
            else:
                fail(rec)
            continue
        c.licence = licences[rec.source] = rec.licence
        problem = check_instruction(rec.instruction, src.max_instruction_chars)
        if problem:
            fail(RecordError(rec.origin, rec.id, *problem, source=rec.source))
            continue
        try:
            key = safe_key(rec.id)
        except ValueError as err:
            fail(RecordError(rec.origin, rec.id, "bad_id", str(err), source=rec.source))
            continue
        if key in seen_ids:
            fail(
                RecordError(
                    rec.origin,
                    rec.id,
                    "duplicate_id",
                    f"id {rec.id!r} (key {key}) appears earlier",
                    source=rec.source,
                )
            )
            continue
        spec = specs.get(rec.source)
        unmapped: list[str] = []
        task_type = _task_type(
            rec, src.task_type, mappers.get(rec.source), spec is not None and spec.strict_labels, unmapped
        )
        if isinstance(task_type, RecordError):
            fail(task_type)
            continue
        for label in unmapped:
            c.count_unmapped(label)
        if isinstance(sig, ImageProblem):
            fail(RecordError(rec.origin, rec.id, sig.reason, str(sig), source=rec.source))
            continue
        text = normalise_instruction(rec.instruction)
        dup = dedup.check(sig.sha256, sig.phash, text)
        if dup:
            stats.filter(dup)
            c.duplicates += 1
            continue
        path = rec.image_path
        if rec.image_bytes is not None:
            if store is None:
                raise ValueError("embedded images need an image store (pool(..., store=...))")
            if sig.sha256 not in stored:
                stored[sig.sha256] = store(sig.sha256, sig.ext, rec.image_bytes)
            path = stored[sig.sha256]
        seen_ids.add(key)
        c.by_task_type[task_type]["read"] += 1
        candidates[(rec.source, task_type)].append(
            PoolEntry(
                rec.id,
                key,
                rec.instruction.strip(),
                task_type,
                path,
                sig.sha256,
                rec.origin,
                # few distinct values over 400K records: one string object each
                source=intern(rec.source),
                original_id=rec.original_id,
                label=intern(rec.label or ""),
                licence=intern(rec.licence),
            )
        )
    sigs.flush()
    _check_not_empty(specs, counts)

    by_type = take_source_quotas(candidates, counts, cfg, stats)
    chosen = take_type_quotas(by_type, counts, cfg, stats)
    entries = assign(chosen, cfg)
    stats.keep(len(entries))
    for e in entries:
        counts[e.source].kept += 1
        counts[e.source].by_task_type[e.task_type]["kept"] += 1
    read_by_type = Counter()
    for c in counts.values():
        for t, tc in c.by_task_type.items():
            read_by_type[t] += tc["read"]
    by_type_counts = {
        t: {"kept": sum(1 for e in entries if e.task_type == t), "read": read_by_type[t]} for t in TASK_TYPES
    }
    for name, spec in specs.items():  # inputs that yielded nothing still list their licence
        row(name)
        if name not in licences:
            licences[name] = spec.licence if spec.licence is not None else default_licence(spec.format)
        counts[name].licence = licences[name]
    return PoolResult(
        entries,
        stats,
        failures,
        by_type_counts,
        {n: c.to_dict() for n, c in counts.items()},
        licences,
        stored,
    )


def _with_signatures(
    records: Iterable[SourceRecord | RecordError],
    sigs: SignatureCache,
    limits: ImageLimits | None = None,
    chunk: int = 256,
) -> Iterator[tuple[SourceRecord | RecordError, Signature | ImageProblem | None]]:
    """Records with their image signatures, computed a chunk at a time on the cache's
    threads; the order of the records is kept, and only a chunk is in memory."""
    it = iter(records)
    while batch := list(islice(it, chunk)):
        recs = [r for r in batch if isinstance(r, SourceRecord)]
        found = iter(sigs.many([_image_item(r) for r in recs], limits))
        for rec in batch:
            yield rec, (next(found) if isinstance(rec, SourceRecord) else None)


class EmptySourceError(ConfigError):
    """An input that holds no records: almost always a wrong path or an unfinished download,
    so it fails the build (before any GPU work) instead of quietly building less."""


def _check_not_empty(specs: dict[str, Any], counts: dict[str, SourceCounts]) -> None:
    for name, spec in specs.items():
        if name not in counts or counts[name].read == 0:
            where = "source.manifest" if name == "manifest" else f"source input {name!r}"
            raise EmptySourceError(
                f"{where}: {spec.path} holds no records (an empty file, only blank lines, or a folder "
                f"without {spec.format} files); fix the path or remove the input"
            )


def _image_item(rec: SourceRecord) -> tuple[str | None, bytes | None, str]:
    """(path, bytes, what) for the signature cache: errors name the file, or for embedded
    bytes the URL they came from or the container and member (`shard.tar:key`, `t.parquet#3`)."""
    if rec.image_bytes is not None:
        return None, rec.image_bytes, rec.image_path or rec.origin
    return rec.image_path, None, rec.image_path


def _task_type(
    rec: SourceRecord, mode: str, mapper: LabelMapper | None, strict: bool, unmapped: list[str]
) -> str | RecordError:
    """The record's task type: given by the source, mapped from its label, or classified.
    A label no table maps is classified too (appended to `unmapped`, to be counted), unless
    the input is strict or the source's task types must be given."""
    if mode != "classify" and rec.task_type is not None:
        if rec.task_type not in TASK_TYPES:
            return RecordError(
                rec.origin, rec.id, "bad_task_type",
                f"task_type {rec.task_type!r} is not one of {', '.join(TASK_TYPES)}", source=rec.source,
            )  # fmt: skip
        return rec.task_type
    if mode != "classify" and rec.label is not None and mapper is not None:
        mapped = mapper(rec.label)
        if mapped is not None:
            return mapped
        if strict or mode == "given":
            return RecordError(
                rec.origin, rec.id, "unknown_label",
                f"label {rec.label!r} is not in the label table; add it to the input's label_map"
                + (" (or drop strict_labels to classify it by its instruction)" if strict else ""),
                source=rec.source,
            )  # fmt: skip
        unmapped.append(rec.label)
        return classify(rec.instruction)
    if mode == "given":
        return RecordError(
            rec.origin, rec.id, "missing_task_type", "source.task_type is 'given' but the record has none",
            source=rec.source,
        )  # fmt: skip
    return classify(rec.instruction)
