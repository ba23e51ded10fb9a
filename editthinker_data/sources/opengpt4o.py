"""OpenGPT-4o-Image `editing.json` and ShareGPT-4o-Image `text_and_image_to_image.json`:
records `{input_prompt, input_image: [path], output_image}`, paths relative to the dataset
root, as a JSON array or JSON lines. Multi-image records are skipped (one source image per
pair in this pipeline) and counted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from editthinker_data.io.storage import join_url
from editthinker_data.sources.base import RecordError, SourceRecord, json_records, string_field


def read_opengpt4o(
    path: str, image_root: str | None = None, encoding: str | None = None, **_: object
) -> Iterator[SourceRecord | RecordError]:
    root = image_root or str(Path(path).parent)
    for item in json_records(path, encoding=encoding):
        if isinstance(item, RecordError):
            yield item
            continue
        origin, obj = item
        output = string_field(obj, "output_image")
        rid = string_field(obj, "id") or (output.rsplit(".", 1)[0] if output else None)
        if rid is None:
            yield RecordError(origin, origin, "missing_field", "missing id and output_image (no stable id)")
            continue
        images = obj.get("input_image")
        if isinstance(images, str):
            images = [images]
        if not isinstance(images, list) or not images or not all(isinstance(i, str) and i for i in images):
            yield RecordError(origin, rid, "bad_field", "input_image must be a list of image paths")
            continue
        if len(images) > 1:
            yield RecordError(
                origin,
                rid,
                "multiple_input_images",
                f"{len(images)} input images; only single-image edits are pooled",
            )
            continue
        prompt = obj.get("input_prompt")
        if not isinstance(prompt, str):
            yield RecordError(origin, rid, "missing_field", "missing input_prompt (the instruction)")
            continue
        yield SourceRecord(rid, join_url(root, images[0]), prompt, None, origin, original_id=rid)
