"""RISEBench: a JSON list of {index, category, instruction, image, ...}; images relative
to `image_root` (default: the JSON file's folder). Every task is a reasoning edit; the
category (temporal, causal, spatial, logical) is the label."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from editthinker_data.io.storage import join_url
from editthinker_data.sources.base import RecordError, SourceRecord, json_records, string_field


def read_rise(
    path: str, image_root: str | None = None, encoding: str | None = None, **_: object
) -> Iterator[SourceRecord | RecordError]:
    root = image_root or str(Path(path).parent)
    for item in json_records(path, encoding=encoding):
        if isinstance(item, RecordError):
            yield item
            continue
        origin, obj = item
        rid = string_field(obj, "index")
        image, text, label = obj.get("image"), obj.get("instruction"), obj.get("category")
        if rid is None or not isinstance(text, str):
            yield RecordError(origin, rid or origin, "missing_field", "needs index and instruction")
            continue
        if isinstance(image, list):
            if len(image) != 1:
                yield RecordError(origin, rid, "multiple_input_images", f"{len(image)} input images")
                continue
            image = image[0]
        if not isinstance(image, str) or not image:
            yield RecordError(origin, rid, "missing_field", "needs image (a path)")
            continue
        yield SourceRecord(
            rid,
            join_url(root, image),
            text,
            None,
            origin,
            original_id=rid,
            label=label if isinstance(label, str) else None,
        )
