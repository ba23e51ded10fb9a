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


class _Intake:
    """Every record read, checked once: usable pairs become candidates per (source, task
    type), the rest are counted per source with their reason. A record's checks run in
    order and the first that fails names it (`take`)."""

    def __init__(self, cfg: BuildConfig, store: ImageStore | None):
        self.src = cfg.source
        self.specs = {i.name: i for i in self.src.all_inputs()}
        self.mappers = {
            n: LabelMapper(FORMATS.get(i.format), i.label_map, i.default_labels)
            for n, i in self.specs.items()
        }
        self.only = next(iter(self.specs)) if len(self.specs) == 1 else ""  # records read without read_input
        self.store = store
        self.stats = StageStats()
        self.failures: list[RecordError] = []
        self.seen_ids: set[str] = set()
        self.dedup = _Dedup(self.src.near_duplicate_distance)
        self.counts: dict[str, SourceCounts] = {}
        self.licences: dict[str, str] = {}
        self.stored: dict[str, str] = {}  # sha256 -> where an embedded image was stored
        self.candidates: dict[tuple[str, str], list[PoolEntry]] = defaultdict(list)

    def row(self, name: str) -> SourceCounts:
        if name not in self.counts:
            self.counts[name] = SourceCounts(by_task_type={t: {"read": 0, "kept": 0} for t in TASK_TYPES})
        return self.counts[name]

    def fail(self, err: RecordError) -> None:
        self.stats.fail(err.reason)
        self.row(err.source).unusable[err.reason] += 1
        self.failures.append(err)

    def take(self, rec: SourceRecord | RecordError, sig: Signature | ImageProblem | None) -> None:
        if not rec.source and self.only:
            rec = replace(rec, source=self.only)
        c = self.row(rec.source)
        c.read += 1
        if isinstance(rec, RecordError):
            if rec.filtered:
                self.stats.filter(rec.reason)
                c.filtered[rec.reason] += 1
            else:
                self.fail(rec)
            return
        c.licence = self.licences[rec.source] = rec.licence
        checked = self._check(rec, c, sig)
        if isinstance(checked, RecordError):
            self.fail(checked)
            return
        key, task_type, sig = checked
        dup = self.dedup.check(sig.sha256, sig.phash, normalise_instruction(rec.instruction))
        if dup:
            self.stats.filter(dup)
            c.duplicates += 1
            return
        self.seen_ids.add(key)
        c.by_task_type[task_type]["read"] += 1
        self.candidates[(rec.source, task_type)].append(self._entry(rec, key, task_type, sig))

    def _check(
        self, rec: SourceRecord, c: SourceCounts, sig: Signature | ImageProblem | None
    ) -> tuple[str, str, Signature] | RecordError:
        """The pair's key, task type and image signature, or why it cannot be used."""
        problem = check_instruction(rec.instruction, self.src.max_instruction_chars)
        if problem:
            return RecordError(rec.origin, rec.id, *problem, source=rec.source)
        try:
            key = safe_key(rec.id)
        except ValueError as err:
            return RecordError(rec.origin, rec.id, "bad_id", str(err), source=rec.source)
        if key in self.seen_ids:
            detail = f"id {rec.id!r} (key {key}) appears earlier"
            return RecordError(rec.origin, rec.id, "duplicate_id", detail, source=rec.source)
        spec = self.specs.get(rec.source)
        unmapped: list[str] = []
        strict = spec is not None and spec.strict_labels
        task_type = _task_type(rec, self.src.task_type, self.mappers.get(rec.source), strict, unmapped)
        if isinstance(task_type, RecordError):
            return task_type
        for label in unmapped:
            c.count_unmapped(label)
        if isinstance(sig, ImageProblem):
            return RecordError(rec.origin, rec.id, sig.reason, str(sig), source=rec.source)
        assert sig is not None, "a record that is not an error has a signature or a problem"
        return key, task_type, sig

    def _entry(self, rec: SourceRecord, key: str, task_type: str, sig: Signature) -> PoolEntry:
        path = rec.image_path
        if rec.image_bytes is not None:
            if self.store is None:
                raise ValueError("embedded images need an image store (pool(..., store=...))")
            if sig.sha256 not in self.stored:
                self.stored[sig.sha256] = self.store(sig.sha256, sig.ext, rec.image_bytes)
            path = self.stored[sig.sha256]
        return PoolEntry(
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

    def result(self, entries: list[PoolEntry]) -> PoolResult:
        """The kept entries with every count: per source and task type, and each input's
        licence (inputs that yielded nothing still list theirs)."""
        counts, licences = self.counts, self.licences
        self.stats.keep(len(entries))
        for e in entries:
            counts[e.source].kept += 1
            counts[e.source].by_task_type[e.task_type]["kept"] += 1
        read_by_type: Counter[str] = Counter()
        for c in counts.values():
            for t, tc in c.by_task_type.items():
                read_by_type[t] += tc["read"]
        by_type_counts = {
            t: {"kept": sum(1 for e in entries if e.task_type == t), "read": read_by_type[t]}
            for t in TASK_TYPES
        }
        for name, spec in self.specs.items():
            self.row(name)
            if name not in licences:
                licences[name] = spec.licence if spec.licence is not None else default_licence(spec.format)
            counts[name].licence = licences[name]
        summary = {n: c.to_dict() for n, c in counts.items()}
        return PoolResult(entries, self.stats, self.failures, by_type_counts, summary, licences, self.stored)


def pool(
    records: Iterable[SourceRecord | RecordError],
    cfg: BuildConfig,
    *,
    sigs: SignatureCache | None = None,
    store: ImageStore | None = None,
) -> PoolResult:
    """Read and check every record, then take the quotas and assign editors and partitions."""
    sigs = sigs or SignatureCache()
    intake = _Intake(cfg, store)
    src = cfg.source
    limits = ImageLimits(src.max_image_pixels, src.min_image_side, src.max_image_bytes)
    for rec, sig in _with_signatures(records, sigs, limits):
        intake.take(rec, sig)
    sigs.flush()
    _check_not_empty(intake.specs, intake.counts)
    by_type = take_source_quotas(intake.candidates, intake.counts, cfg, intake.stats)
    chosen = take_type_quotas(by_type, intake.counts, cfg, intake.stats)
    return intake.result(assign(chosen, cfg))


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
