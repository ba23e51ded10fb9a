"""WebDataset tar shards: one sample per key with an image member (jpg, jpeg, png, webp)
and a `json` member holding `instruction` (and optionally `id`, `task_type`, `label`), or a
`txt` member as the instruction. `path` is a shard, a folder of shards, or a brace pattern."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from editthinker_data.sources.base import RecordError, SourceRecord

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def _urls(path: str) -> list[str] | str:
    p = Path(path)
    return sorted(str(f) for f in p.glob("*.tar")) if p.is_dir() else path


def read_webdataset(path: str, **_: object) -> Iterator[SourceRecord | RecordError]:
    import webdataset as wds

    errors: list[RecordError] = []

    def handler(exn: Exception) -> bool:
        errors.append(RecordError(path, path, "unreadable_file", f"{type(exn).__name__}: {exn}"))
        return True  # go on with the next shard

    urls = _urls(path)
    if not urls:  # a folder without shards: nothing to read (pooling reports the empty input)
        return
    dataset = wds.WebDataset(urls, shardshuffle=False, handler=handler, empty_check=False)
    for sample in dataset:
        yield from errors
        errors.clear()
        key = sample.get("__key__", "?")
        origin = f"{Path(str(sample.get('__url__', path))).name}:{key}"
        meta: dict = {}
        if "json" in sample:
            try:
                meta = json.loads(sample["json"].decode("utf-8"))  # UTF-8 only, like manifests
            except UnicodeDecodeError as err:
                yield RecordError(
                    origin,
                    key,
                    "bad_encoding",
                    f"{origin}.json: byte offset {err.start} is not UTF-8 ({err.reason})",
                )
                continue
            except json.JSONDecodeError as err:
                yield RecordError(origin, key, "bad_field", f"{origin}.json is not valid JSON: {err}")
                continue
            if not isinstance(meta, dict):
                yield RecordError(origin, key, "bad_field", "json member must hold an object")
                continue
        text = meta.get("instruction")
        if text is None and "txt" in sample:
            try:
                text = sample["txt"].decode("utf-8")
            except UnicodeDecodeError as err:
                yield RecordError(
                    origin,
                    key,
                    "bad_encoding",
                    f"{origin}.txt: byte offset {err.start} is not UTF-8 ({err.reason})",
                )
                continue
        image = next((sample[e] for e in IMAGE_EXTS if e in sample), None)
        rid = str(meta.get("id") or key)
        if not isinstance(text, str) or image is None:
            yield RecordError(
                origin, rid, "missing_field", "needs an image member and an instruction (json or txt)"
            )
            continue
        task_type, label = meta.get("task_type"), meta.get("label")
        if not all(v is None or isinstance(v, str) for v in (task_type, label)):
            yield RecordError(origin, rid, "bad_field", "task_type and label must be strings")
            continue
        yield SourceRecord(rid, "", text, task_type, origin, original_id=rid, label=label, image_bytes=image)
    yield from errors
