"""Pico-Banana-400K (apple/pico-banana-400k) JSONL: the single-turn SFT/preference files
(`open_image_input_url`, `text`, `summarized_text`, `output_image`, `edit_type`) and the
multi-turn file (`files` with ids original_input_image, edit_turn1..., final_image, and
`metadata_edit_turn_prompts`), read as single pairs from the first turn.

Source images are Open Images photos, not shipped with the dataset: a record's
`local_input_image` (written by the dataset's own mapping script) wins; otherwise the URL is
looked up in the Open Images metadata CSV (`OriginalURL` -> `ImageID`) and the image found as
`<openimages_dir>/[train_*/]<ImageID>.jpg`. Records that resolve to nothing are counted.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from editthinker_data.io.storage import join_url
from editthinker_data.sources.base import RecordError, SourceRecord, json_records, string_field


class OpenImagesIndex:
    """URL -> local file. The CSV (1.7M rows for the train split) is streamed once and only
    the URLs the dataset file asks for are kept, so memory follows the dataset, not Open Images."""

    def __init__(self, mapping_csv: str | None, images_dir: str | None, wanted: set[str]):
        self.url_to_id: dict[str, str] = {}
        if mapping_csv and wanted:
            with open(mapping_csv, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    url = (row.get("OriginalURL") or "").strip()
                    if url in wanted and row.get("ImageID"):
                        self.url_to_id[url] = row["ImageID"].strip()
        self.dirs: list[Path] = []
        if images_dir:
            root = Path(images_dir)
            self.dirs = [root, *sorted(p for p in root.glob("train_*") if p.is_dir())]

    def resolve(self, url: str) -> str | None:
        image_id = self.url_to_id.get(url.strip())
        if not image_id:
            return None
        for folder in self.dirs:
            path = folder / f"{image_id}.jpg"
            if path.is_file():
                return str(path)
        return None


def _wanted_urls(path: str, encoding: str | None) -> set[str]:
    """Source URLs of the records that have no local_input_image (a first, cheap pass)."""
    urls = set()
    for item in json_records(path, encoding=encoding):
        if isinstance(item, RecordError):
            continue
        obj = item[1]
        if obj.get("local_input_image"):
            continue
        url = obj.get("open_image_input_url")
        if "files" in obj and isinstance(obj["files"], list):
            url = next(
                (
                    f.get("url")
                    for f in obj["files"]
                    if isinstance(f, dict) and f.get("id") == "original_input_image"
                ),
                None,
            )
        if isinstance(url, str):
            urls.add(url.strip())
    return urls


def _first_turn(obj: dict[str, Any]) -> tuple[str | None, str | None, str | None] | str:
    """(input url, first instruction, first output) of a multi-turn record, or a problem."""
    files = obj.get("files")
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        return "`files` must be a list of {id, url} objects"
    by_id = {f.get("id"): f.get("url") for f in files}
    prompts = obj.get("metadata_edit_turn_prompts")
    if not isinstance(prompts, list) or not prompts or not isinstance(prompts[0], str):
        return "`metadata_edit_turn_prompts` must be a non-empty list of strings"
    return by_id.get("original_input_image"), prompts[0], by_id.get("edit_turn1") or by_id.get("final_image")


def read_pico_banana(
    path: str,
    instruction: Literal["short", "long"] = "short",
    openimages_mapping: str | None = None,
    openimages_dir: str | None = None,
    image_root: str | None = None,
    encoding: str | None = None,
    **_: object,
) -> Iterator[SourceRecord | RecordError]:
    index = OpenImagesIndex(
        openimages_mapping, openimages_dir, _wanted_urls(path, encoding) if openimages_mapping else set()
    )
    root = image_root or str(Path(path).parent)
    key = "summarized_text" if instruction == "short" else "text"
    for item in json_records(path, encoding=encoding):
        if isinstance(item, RecordError):
            yield item
            continue
        origin, obj = item
        if "files" in obj:
            turn = _first_turn(obj)
            if isinstance(turn, str):
                yield RecordError(origin, origin, "bad_field", turn)
                continue
            url, text, output = turn
            label = string_field(obj, "edit_type")
        else:
            url, text, output = obj.get("open_image_input_url"), obj.get(key), obj.get("output_image")
            if not isinstance(text, str) and key == "summarized_text":
                text = obj.get("text")  # older files carry only the long instruction
            label = obj.get("edit_type")
        if not isinstance(output, str) or not output.strip():
            yield RecordError(
                origin, origin, "missing_field", "missing output_image (the record's id comes from it)"
            )
            continue
        rid = output.rsplit(".", 1)[0].strip("/")
        if not isinstance(text, str):
            yield RecordError(origin, rid, "missing_field", f"missing {key} (the instruction)")
            continue
        if label is not None and not isinstance(label, str):
            yield RecordError(
                origin, rid, "bad_field", f"edit_type must be a string, got {type(label).__name__}"
            )
            continue
        local = obj.get("local_input_image")
        image = join_url(root, local) if isinstance(local, str) and local else None
        if image is None and isinstance(url, str) and url:
            image = index.resolve(url)
        if image is None:
            yield RecordError(
                origin,
                rid,
                "source_image_unresolved",
                f"no local_input_image and {url!r} is not in the Open Images mapping "
                "(set options.openimages_mapping and options.openimages_dir)",
            )
            continue
        yield SourceRecord(rid, image, text, None, origin, original_id=rid, label=label)
