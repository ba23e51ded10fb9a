"""ImgEdit-Bench (basic_edit.json): a JSON object key -> {id: image path, prompt,
edit_type}; image paths relative to `image_root` (default: the JSON file's folder)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from editthinker_data.io.storage import join_url
from editthinker_data.sources.base import RecordError, SourceRecord, json_records, string_field


def read_imgedit(
    path: str, image_root: str | None = None, encoding: str | None = None, **_: object
) -> Iterator[SourceRecord | RecordError]:
    root = image_root or str(Path(path).parent)
    for item in json_records(path, mapping=True, encoding=encoding):
        if isinstance(item, RecordError):
            yield item
            continue
        origin, entry = item
        if not isinstance(entry[1], dict):
            yield RecordError(
                origin, origin, "malformed_record", "expected a JSON object of key -> {id, prompt, edit_type}"
            )
            continue
        key, obj = entry
        image, prompt, label = string_field(obj, "id"), obj.get("prompt"), obj.get("edit_type")
        if image is None or not isinstance(prompt, str):
            yield RecordError(origin, key, "missing_field", "needs id (the image path) and prompt")
            continue
        if label is not None and not isinstance(label, str):
            yield RecordError(origin, key, "bad_field", "edit_type must be a string")
            continue
        yield SourceRecord(key, join_url(root, image), prompt, None, origin, original_id=key, label=label)
