"""Source readers, one file per format, behind one entry point: `read_input(spec)` streams
a configured input's records (or `RecordError` values for what it cannot use), stamped
with the input's name, licence and, when several inputs are mixed, `<name>:<id>` ids."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

from editthinker_data.sources import guard
from editthinker_data.sources.base import Reader, RecordError, SourceFileError, SourceRecord
from editthinker_data.sources.formats import FORMATS, TEXT_FORMATS  # noqa: F401  (the registry's views)
from editthinker_data.sources.guard import ImagePolicy


def _reader(fmt: str) -> Reader:
    if fmt not in FORMATS:
        raise ValueError(f"unknown source format {fmt!r}; use one of {', '.join(FORMATS)}")
    return FORMATS[fmt].load_reader()


def check_options(fmt: str, options: dict[str, Any]) -> str | None:
    """What is wrong with a format's options, or None."""
    takes = FORMATS[fmt].options
    unknown = sorted(set(options) - set(takes))
    if unknown:
        listed = ", ".join(takes) or "none"
        return f"unknown options {unknown} for format {fmt} (it takes: {listed})"
    if fmt == "pico_banana" and options.get("instruction", "short") not in ("short", "long"):
        return (
            f"options.instruction is {options['instruction']!r}; use short (summarized_text) or long (text)"
        )
    if "columns" in options and not (
        isinstance(options["columns"], dict)
        and all(isinstance(v, str | None) for v in options["columns"].values())
    ):
        return "options.columns maps id/image/instruction/task_type/label to column names"
    return None


def default_licence(fmt: str) -> str:
    return FORMATS[fmt].licence if fmt in FORMATS else ""


def image_policy(spec: Any, max_image_bytes: int = 64 * 1024 * 1024) -> ImagePolicy:
    """Where the input's images may come from: its own folder (a file's folder, or the
    folder it names), the folders its options name, and its `allowed_roots`."""
    path = str(spec.path)
    if path.startswith("s3://"):
        own = path.rsplit("/", 1)[0]
    else:
        own = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    roots = [own, *(spec.options.get(k) for k in FORMATS[spec.format].image_roots), *spec.allowed_roots]
    return ImagePolicy.of(
        [r for r in roots if isinstance(r, str)],
        allow_urls=spec.allow_urls,
        allow_loopback=spec.allow_loopback,
        max_bytes=max_image_bytes,
    )


def _guarded(rec: SourceRecord, policy: ImagePolicy) -> SourceRecord | RecordError:
    """The record with its image reference checked (and an allowed URL fetched), or the
    error naming why it was refused."""
    if not rec.image_path or rec.image_bytes is not None:
        return rec
    try:
        location = guard.check(rec.image_path, policy)
        if guard.is_url(location):
            return dataclasses.replace(rec, image_bytes=guard.fetch(location, policy))
    except guard.Refused as err:
        return RecordError(rec.origin, rec.id, err.reason, str(err), source=rec.source)
    except ValueError as err:  # a NUL byte in a path, a port out of range: the record's problem
        detail = f"image {rec.image_path!r} is not a usable path or URL: {err}"
        return RecordError(rec.origin, rec.id, "bad_image_reference", detail, source=rec.source)
    return dataclasses.replace(rec, image_path=location)


def read_input(
    spec: Any, prefix_ids: bool, max_image_bytes: int = 64 * 1024 * 1024
) -> Iterator[SourceRecord | RecordError]:
    """Records of one `source.inputs` entry, their image references checked against the
    input's folders (`image_policy`). A reader that fails outright (an unreadable file)
    yields one error naming the input; the other inputs are still read. A file in the wrong
    encoding is a configuration error (`SourceFileError`) and fails the build."""
    licence = spec.licence if spec.licence is not None else default_licence(spec.format)
    policy = image_policy(spec, max_image_bytes)
    kwargs = {"encoding": spec.encoding} if spec.format in TEXT_FORMATS else {}
    try:
        for rec in _reader(spec.format)(spec.path, **spec.options, **kwargs):
            if isinstance(rec, SourceRecord):
                rec = _guarded(rec, policy)
            if isinstance(rec, RecordError):  # named like the pair it would have been
                named = prefix_ids and rec.record != rec.origin
                yield dataclasses.replace(
                    rec, source=spec.name, record=f"{spec.name}:{rec.record}" if named else rec.record
                )
                continue
            yield dataclasses.replace(
                rec,
                id=f"{spec.name}:{rec.id}" if prefix_ids else rec.id,
                original_id=rec.original_id or rec.id,
                source=spec.name,
                licence=licence,
            )
    except SourceFileError as err:
        raise SourceFileError(f"source input {spec.name!r} ({spec.path}): {err}") from None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        yield RecordError(
            spec.path, spec.name, "unreadable_input", f"input {spec.name!r}: {err}", source=spec.name
        )
