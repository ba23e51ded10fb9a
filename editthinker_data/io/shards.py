"""WebDataset shard writing with deterministic bytes and all-or-nothing commits.

Built on webdataset's ShardWriter (fixed mtime, fixed owner); each shard is assembled under
a hidden `.partial` name and renamed into place when complete, then described (url,
sha256, bytes, samples) for the manifest. Shard names depend only on the inputs.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

from editthinker_data.core.reports import ShardInfo
from editthinker_data.io.storage import Storage
from editthinker_data.io.wds import ShardWriter


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """A shard member's bytes (`extractfile` answers None for a link or a folder)."""
    fh = tar.extractfile(member)
    if fh is None:
        raise ValueError(f"shard member {member.name} is not a regular file")
    return fh.read()


def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()


class ShardSink:
    """Writes samples to `<prefix>-000000.tar`, `<prefix>-000001.tar`, ... under storage.

    Opened lazily: a unit with no samples writes no shard."""

    def __init__(self, storage: Storage, prefix: str, max_samples: int, max_bytes: int):
        self.storage = storage
        self.prefix = prefix
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.shards: list[ShardInfo] = []
        self._writer: ShardWriter | None = None
        self._members: frozenset[str] | None = None

    def _name(self, index: int) -> str:
        return f"{self.prefix}-{index:06d}.tar"

    def _open(self) -> ShardWriter:
        staging = self.storage.staging_path(self._name(0))
        pattern = str(staging.parent / f".{Path(self.prefix).name}-%06d.tar.partial")
        return ShardWriter(
            pattern,
            maxcount=self.max_samples,
            maxsize=self.max_bytes,
            post=self._commit,
            verbose=0,
            mtime=0.0,
            encoder=False,
        )

    def _commit(self, staged: str) -> None:
        staged_path = Path(staged)
        index = len(self.shards)
        name = self._name(index)
        count = self._writer.count if self._writer is not None else 0
        sha, size = _file_sha256(staged_path), staged_path.stat().st_size
        self.storage.commit(staged_path, name)
        self.shards.append(ShardInfo(name, sha, size, count))

    def write(self, sample: dict[str, Any]) -> str:
        """Write one sample; returns the name of the shard it went into."""
        members = frozenset(k for k in sample if not k.startswith("__"))
        if self._members is None:
            self._members = members
        elif members != self._members:
            raise ValueError(
                f"sample {sample.get('__key__')}: members {sorted(members)} differ from {sorted(self._members)}"
            )
        encoded = {k: (encode_json(v) if k == "json" else v) for k, v in sample.items()}
        if self._writer is None:
            self._writer = self._open()
        self._writer.write(encoded)
        return self._name(self._writer.shard - 1)  # the writer counts the shards it opened

    def abort(self) -> None:
        """Drop the shard being assembled (its staged file); committed shards stay."""
        if self._writer is not None:
            if self._writer.tarstream is not None:
                self._writer.tarstream.close()
                Path(self._writer.fname).unlink(missing_ok=True)
            self._writer = None

    def close(self) -> list[ShardInfo]:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self.shards
