"""What a user downloads besides the shards, recorded with sha256 and size so `verify` can
re-check it: the manifest's `files` section (tables, card, figures, gallery, export
descriptions) and each export folder's `export_info.json`. Entries hold no times and no
absolute paths, so a rebuild writes the same bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from editthinker_data.io.storage import Storage

MANIFEST = "manifest.json"


def file_entry(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def describe(storage: Storage, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Entries of the named files that exist (a build without exports has none to list)."""
    return {n: file_entry(storage.read_bytes(n)) for n in sorted(set(names)) if storage.exists(n)}


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix.rstrip("/") + "/")


def prune(storage: Storage, prefix: str, keep: Iterable[str]) -> list[str]:
    """Delete what an earlier run left under `prefix` and this run did not write, so a
    folder holds exactly what its description lists."""
    wanted = set(keep)
    stale = [n for n in storage.list(prefix) if n not in wanted]
    for name in stale:
        storage.delete(name)
    return stale


def record_files(storage: Storage, prefix: str, names: Iterable[str]) -> None:
    """Replace the manifest's entries under `prefix` with `names`. Exports and the report are
    written after the manifest (and `export`/`report` redo them alone), so each records its
    own files when it is written."""
    manifest = storage.read_json(MANIFEST)
    files = {k: v for k, v in manifest.get("files", {}).items() if not under(k, prefix)}
    files.update(describe(storage, names))
    manifest["files"] = dict(sorted(files.items()))
    storage.write_json(MANIFEST, manifest)
