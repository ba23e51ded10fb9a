"""The record every source reader streams, and the value it yields for a record it cannot
use. Readers never stop on bad input: they yield `RecordError` naming the record and the
problem, and pooling counts it per source."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editthinker_data.storage import join_url


@dataclass(frozen=True)
class SourceRecord:
    id: str
    image_path: str  # a path or URL; empty when the image is embedded (image_bytes)
    instruction: str
    task_type: str | None  # a pipeline task type given by the source (generic formats)
    origin: str  # "manifest.jsonl:12": where to look when something is wrong
    source: str = ""  # the input's name in the config
    original_id: str = ""
    label: str | None = None  # the dataset's own edit category, mapped by label_map
    licence: str = ""
    image_bytes: bytes | None = None  # embedded images (parquet, arrow, tar, HF datasets)


@dataclass(frozen=True)
class RecordError:
    origin: str
    record: str  # id when known, else the origin
    reason: str  # short code, counted in stats
    detail: str
    source: str = ""
    filtered: bool = False  # a deliberate skip (e.g. another language), not bad input


def relative_to(root: str, value: Any) -> str:
    return join_url(root, str(value))


def json_records(path: str | Path, mapping: bool = False) -> Iterator[tuple[str, Any] | RecordError]:
    """(origin, record) of a JSON array or of JSON lines, each record a JSON object; with
    `mapping`, (origin, (key, record)) of a JSON object of records (the benchmarks' key ->
    record files). JSON lines stream a line at a time (Pico-Banana's files run to hundreds
    of MB); a bad line or record is an error value and the rest is still read."""
    path = Path(path)
    name = path.name
    with open(path, encoding="utf-8", errors="replace") as f:
        first = next((line for line in f if line.strip()), "")
    if mapping or first.lstrip().startswith("["):
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
        if mapping:
            if not isinstance(data, dict):
                raise ValueError(f"{name} must hold a JSON object of key -> record")
            for key, obj in data.items():
                yield f"{name}[{key!r}]", (key, obj)
            return
        for i, obj in enumerate(data):
            origin = f"{name}[{i}]"
            if isinstance(obj, dict):
                yield origin, obj
            else:
                yield RecordError(origin, origin, "malformed_record", "a record must be a JSON object")
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        yield from json_lines(f, name)


def json_lines(lines: Iterable[str], name: str) -> Iterator[tuple[str, dict] | RecordError]:
    """(`name:lineno`, object) of each non-blank line; a line that is not one JSON object
    is an error value."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        origin = f"{name}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            yield RecordError(
                origin, origin, "malformed_line", f"not valid JSON ({err.msg} at column {err.colno})"
            )
            continue
        if isinstance(obj, dict):
            yield origin, obj
        else:
            yield RecordError(origin, origin, "malformed_line", "a line must hold one JSON object")


def image_cell(value: Any) -> tuple[bytes | None, str | None]:
    """(bytes, path) of an image column: raw bytes, a path string, or the Hugging Face
    `Image` struct {bytes, path}."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), None
    if isinstance(value, str):
        return None, value
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        if data:
            return bytes(data), None
        if isinstance(path, str) and path:
            return None, path
    return None, None


def string_field(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value.strip() else None
