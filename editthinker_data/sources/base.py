"""The record every source reader streams, and the value it yields for a record it cannot
use. Readers never stop on bad input: they yield `RecordError` naming the record and the
problem, and pooling counts it per source."""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from editthinker_data.config import ConfigError
from editthinker_data.io.storage import join_url


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


class Reader(Protocol):
    """One source format's reader (`FormatSpec.reader`): the input's path or URL, then its
    `options` (and `encoding` for text formats) as keywords; yields a record per usable
    pair and a `RecordError` per one it cannot use, never stopping on bad input."""

    def __call__(self, path: str, /, **options: Any) -> Iterator[SourceRecord | RecordError]: ...


def relative_to(root: str, value: Any) -> str:
    return join_url(root, str(value))


class SourceFileError(ConfigError):
    """A whole input file is unusable as configured (e.g. UTF-16 read as UTF-8): a
    configuration problem that fails the build, naming the file and the fix."""


# UTF-32 LE first: its mark starts with UTF-16 LE's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32 LE", "utf-32"),
    (codecs.BOM_UTF32_BE, "UTF-32 BE", "utf-32"),
    (codecs.BOM_UTF16_LE, "UTF-16 LE", "utf-16"),
    (codecs.BOM_UTF16_BE, "UTF-16 BE", "utf-16"),
)
_FIX = "convert it to UTF-8 or set `encoding:` on the input"


def check_utf8_head(head: bytes, name: str) -> None:
    """Fail on a file that is plainly not UTF-8 from its first bytes: a UTF-16/32 byte order
    mark, or NUL bytes (UTF-16/32 without a mark). Every line would be bad, so this is the
    file's problem, not its records'."""
    for bom, label, codec in _BOMS:
        if head.startswith(bom):
            raise SourceFileError(
                f"{name} starts with a {label} byte order mark: it is {label}, not UTF-8; "
                f"convert it (iconv -f {codec} -t utf-8) or set `encoding: {codec}` on the input"
            )
    nul = head.find(b"\x00")
    if nul >= 0:
        raise SourceFileError(
            f"{name} has a NUL byte at offset {nul}: it looks like UTF-16 or UTF-32 without a "
            f"byte order mark, not UTF-8; {_FIX}"
        )


def text_lines(
    fh: BinaryIO, name: str, encoding: str | None = None
) -> Iterator[tuple[int, str] | RecordError]:
    """(line number, text) of each line. UTF-8 is strict: a line with bytes that are not
    UTF-8 is one error value naming the line, the byte and its offset (the other lines are
    read); with an explicit `encoding`, a byte it cannot decode fails the file."""
    if encoding is not None:
        lineno = 0
        try:
            for lineno, line in enumerate(io.TextIOWrapper(fh, encoding=encoding), start=1):
                yield lineno, line
        except UnicodeDecodeError as err:
            raise SourceFileError(
                f"{name} is not valid {encoding} after line {lineno}: {err.reason} "
                f"(byte 0x{err.object[err.start]:02x}); fix the file or its `encoding:`"
            ) from None
        return
    offset = 0
    for lineno, raw in enumerate(fh, start=1):
        if lineno == 1:
            check_utf8_head(raw[:4096], name)
        start = len(codecs.BOM_UTF8) if lineno == 1 and raw.startswith(codecs.BOM_UTF8) else 0
        try:
            yield lineno, raw[start:].decode("utf-8")
        except UnicodeDecodeError as err:
            at = start + err.start
            origin = f"{name}:{lineno}"
            yield RecordError(
                origin,
                origin,
                "bad_encoding",
                f"{name} line {lineno}: byte 0x{raw[at]:02x} at offset {offset + at} (column {at + 1}) "
                f"is not UTF-8 ({err.reason}); the file must be UTF-8: {_FIX} (e.g. latin-1)",
            )
        offset += len(raw)


def read_text(data: bytes, name: str, encoding: str | None = None) -> str:
    """A whole JSON document's text. One document cannot lose a record to a bad byte, so
    any byte that does not decode fails the file, naming its offset and line."""
    if encoding is None:
        check_utf8_head(data[:4096], name)
    try:
        return data.decode(encoding or "utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise SourceFileError(
            f"{name}: byte 0x{data[err.start]:02x} at offset {err.start} (line {line}) is not "
            f"{encoding or 'UTF-8'} ({err.reason}); "
            + ("fix the file or its `encoding:`" if encoding else _FIX + " (e.g. latin-1)")
        ) from None


def json_records(
    path: str | Path, mapping: bool = False, encoding: str | None = None
) -> Iterator[tuple[str, Any] | RecordError]:
    """(origin, record) of a JSON array or of JSON lines, each record a JSON object; with
    `mapping`, (origin, (key, record)) of a JSON object of records (the benchmarks' key ->
    record files). JSON lines stream a line at a time (Pico-Banana's files run to hundreds
    of MB); a bad line or record is an error value and the rest is still read."""
    path = Path(path)
    name = path.name
    with open(path, "rb") as f:
        head = f.read(4096)
    if encoding is None:
        check_utf8_head(head, name)
    sniff = head.decode(encoding or "utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if mapping or sniff.startswith("["):
        data = json.loads(read_text(path.read_bytes(), name, encoding))
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
    with open(path, "rb") as f:
        yield from json_lines(text_lines(f, name, encoding), name)


def json_lines(
    lines: Iterable[tuple[int, str] | RecordError], name: str
) -> Iterator[tuple[str, dict] | RecordError]:
    """(`name:lineno`, object) of each non-blank line; a line that is not one JSON object
    (or did not decode) is an error value."""
    for item in lines:
        if isinstance(item, RecordError):
            yield item
            continue
        lineno, line = item
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
