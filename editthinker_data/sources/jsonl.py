"""JSONL manifests: one object per line, `id`, `image` (relative to the manifest),
`instruction`, optional `task_type`. Bad lines come back as `RecordError` values that
name the line and the problem; the reader never stops on them."""

from __future__ import annotations

import io
from collections.abc import Iterator

from editthinker_data.io.storage import join_url, read_url, split_url
from editthinker_data.sources.base import RecordError, SourceRecord, json_lines, text_lines

__all__ = ["RecordError", "SourceRecord", "read_jsonl"]


def read_jsonl(
    manifest: str, encoding: str | None = None, **_: object
) -> Iterator[SourceRecord | RecordError]:
    """`manifest` may be a local path or s3://bucket/key; image paths are relative to it.
    UTF-8 unless `encoding` is given (see `text_lines`)."""
    base, file_name = split_url(str(manifest))
    lines = text_lines(io.BytesIO(read_url(manifest)), file_name, encoding)
    for item in json_lines(lines, file_name):
        if isinstance(item, RecordError):
            yield item
            continue
        origin, obj = item
        rid = obj.get("id")
        name = str(rid) if rid not in (None, "") else origin
        missing = [k for k in ("id", "image", "instruction") if obj.get(k) in (None, "")]
        if missing and not (missing == ["instruction"] and "instruction" in obj):
            yield RecordError(origin, name, "missing_field", f"missing {', '.join(missing)}")
            continue
        bad_types = [k for k in ("id", "image", "instruction") if not isinstance(obj.get(k), str | int)]
        if bad_types or not isinstance(obj.get("instruction"), str):
            yield RecordError(
                origin, name, "bad_field", f"fields {bad_types or ['instruction']} must be strings"
            )
            continue
        task_type = obj.get("task_type")
        if task_type is not None and not isinstance(task_type, str):
            yield RecordError(origin, name, "bad_field", "task_type must be a string")
            continue
        image = str(obj["image"])
        image_path = join_url(base, image)
        label = obj.get("label") if isinstance(obj.get("label"), str) else None
        yield SourceRecord(
            str(rid), image_path, obj["instruction"], task_type, origin, original_id=str(rid), label=label
        )
