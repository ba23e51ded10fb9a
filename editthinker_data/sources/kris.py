"""KRIS-Bench: a folder of categories, each with `annotation.json` (key -> {ori_img,
ins_en, ...}) and its images beside it. Every task is a reasoning edit; the category is the
label. Multi-image tasks (ori_img a list of several) are skipped and counted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from editthinker_data.sources.base import RecordError, SourceFileError, SourceRecord, json_records


def read_kris(path: str, encoding: str | None = None, **_: object) -> Iterator[SourceRecord | RecordError]:
    root = Path(path)
    for annotation in sorted(root.glob("*/annotation.json")):
        category = annotation.parent.name
        try:
            items = list(
                json_records(annotation, mapping=True, encoding=encoding)
            )  # one category: a few hundred records
        except SourceFileError:  # the wrong encoding is the config's problem: fail
            raise
        except ValueError as err:  # a broken category file; the other categories are still read
            where = f"{category}/annotation.json"
            yield RecordError(where, where, "unreadable_file", f"{annotation}: {err}")
            continue
        for item in items:
            if isinstance(item, RecordError):
                yield item
                continue
            origin, entry = item
            origin = f"{category}/{origin}"
            if not isinstance(entry[1], dict):
                yield RecordError(origin, origin, "malformed_record", "expected key -> {ori_img, ins_en}")
                continue
            key, obj = entry
            rid = f"{category}/{key}"
            image, text = obj.get("ori_img"), obj.get("ins_en")
            if isinstance(image, list):
                if len(image) != 1:
                    yield RecordError(origin, rid, "multiple_input_images", f"{len(image)} input images")
                    continue
                image = image[0]
            if not isinstance(image, str) or not image or not isinstance(text, str):
                yield RecordError(origin, rid, "missing_field", "needs ori_img and ins_en")
                continue
            yield SourceRecord(
                rid, str(annotation.parent / image), text, None, origin, original_id=rid, label=category
            )
