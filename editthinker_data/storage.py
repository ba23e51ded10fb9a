"""The only code that parses output/input locations.

Today: local paths and file:// URLs. Every write is atomic (temp file + rename) so a reader
never sees a partial object; s3:// joins here (issue 5) behind the same methods.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class StorageError(ValueError):
    pass


def local_path(location: str | os.PathLike[str]) -> Path:
    """A local path for a location, or a clear error for schemes not supported yet."""
    text = os.fspath(location)
    if "://" in text:
        parsed = urlparse(text)
        if parsed.scheme == "file":
            return Path(parsed.path)
        raise StorageError(
            f"{text}: the {parsed.scheme}:// scheme is not supported yet; use a local path or file://"
        )
    return Path(text)


class Storage:
    """A build's output root. Names are relative, '/'-separated."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = local_path(root).resolve()

    def path(self, name: str) -> Path:
        return self.root / name

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def read_bytes(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_bytes(name))

    def write_bytes(self, name: str, data: bytes) -> None:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def write_json(self, name: str, obj: Any) -> None:
        self.write_bytes(name, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())

    def staging_path(self, name: str) -> Path:
        """Where a shard is assembled before `commit` moves it into place whole."""
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f".{target.name}.partial")

    def commit(self, staged: Path, name: str) -> None:
        os.replace(staged, self.path(name))

    def list(self, prefix: str) -> list[str]:
        base = self.path(prefix)
        if not base.exists():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )
