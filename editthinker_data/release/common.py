"""Shared by the exports: reading step shards back and content-addressed image files (the
thinker prompt template is in editthinker_data.prompts)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from editthinker_data.io.storage import Storage
from editthinker_data.io.wds import WebDataset, handle_extension


def iter_steps(storage: Storage, split: str) -> Iterator[dict[str, Any]]:
    """Raw samples (json decoded, images as PNG bytes) of one split, in manifest order."""
    manifest = storage.read_json("manifest.json")
    urls = [str(storage.local_copy(s["url"])) for s in manifest["shards"][split]]
    if not urls:
        return
    yield from WebDataset(urls, shardshuffle=False, empty_check=False).decode(handle_extension("json", _json))


def _json(data: bytes) -> Any:
    import json

    return json.loads(data)


class ImageStore:
    """Writes each distinct PNG once into `folder`, named by its content; returns the file name."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.written: set[str] = set()
        folder.mkdir(parents=True, exist_ok=True)

    def put(self, png: bytes) -> str:
        name = f"{hashlib.sha256(png).hexdigest()[:20]}.png"
        if name not in self.written:
            target = self.folder / name
            if not target.exists():
                target.write_bytes(png)
            self.written.add(name)
        return name


def images_entry(store: ImageStore, columns: list[str], relative_to: str) -> dict[str, Any]:
    """How the rows point at the image folder, so `verify` can follow every reference."""
    return {
        "dir": store.folder.name,
        "count": len(store.written),
        "columns": columns,
        "paths_relative_to": relative_to,
        "naming": "first 20 hex digits of the file's sha256, then .png",
    }


def publish_export(storage: Storage, out: str, files: dict[str, bytes], store: ImageStore) -> None:
    """Write the data files, publish the folder and drop what an earlier export left there."""
    from editthinker_data.io.manifest import prune, record_files

    for name, data in files.items():
        storage.write_bytes(f"{out}/{name}", data)
    storage.publish_dir(out)
    described = [f"{out}/{name}" for name in files]
    prune(storage, out, described + [f"{out}/{store.folder.name}/{n}" for n in store.written])
    record_files(storage, out, described)
