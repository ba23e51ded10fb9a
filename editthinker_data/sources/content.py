"""What each source input holds, measured cheaply, so that a build on changed inputs is never
mistaken for a rerun of the old one: the config names the inputs' paths, not their content.

Every file of an input (its `path`, or every file under the folder it names, plus option
files such as Pico-Banana's `openimages_mapping`) is hashed once; the hash is cached by
(path, size, mtime), so a rerun only stats its files. An input on S3 uses its objects'
ETags and sizes, read without downloading. The result goes into the config
(`source_content`), hence into every unit's fingerprint and the pool marker.
Images a manifest only refers to are not hashed here (there may be millions): pooling
records each one's sha256, and generate refuses one that changed since.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from editthinker_data.config import PATH_OPTIONS, BuildConfig, ConfigError
from editthinker_data.io.storage import is_remote, local_path, remote_objects
from editthinker_data.sources.formats import FORMATS

Content = dict[str, dict[str, Any]]  # input name -> {path, files, bytes, sha256}


class HashCache:
    """sha256 of local files by (absolute path, size, mtime_ns), in one small JSON file."""

    def __init__(self, path: str | os.PathLike[str] | None):
        self.path = Path(path) if path else None
        self.entries: dict[str, list[Any]] = {}
        self.hits = self.misses = 0
        self.dirty = False
        if self.path and self.path.exists():
            try:
                self.entries = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.entries = {}  # a damaged cache is an empty one

    def sha256(self, file: Path) -> tuple[int, str]:
        st = file.stat()
        key = str(file.resolve())
        cached = self.entries.get(key)
        if cached and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
            self.hits += 1
            return st.st_size, cached[2]
        self.misses += 1
        with open(file, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        self.entries[key] = [st.st_size, st.st_mtime_ns, digest]
        self.dirty = True
        return st.st_size, digest

    def save(self) -> None:
        """Best effort: a cache that cannot be written costs a rehash next time, nothing else."""
        if not (self.path and self.dirty):
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".source-content.", dir=self.path.parent)
            with os.fdopen(fd, "w") as fh:
                json.dump(self.entries, fh)
            os.replace(tmp, self.path)
        except OSError:
            pass


def input_files(spec: Any) -> list[str]:
    """The locations whose content defines an input: its path and the option files it reads
    whole (not the image folders, whose files pooling hashes one by one)."""
    fmt = FORMATS.get(spec.format)
    roots = fmt.image_roots if fmt else ()
    extra = [spec.options[k] for k in PATH_OPTIONS if k in spec.options and k not in roots]
    return [str(spec.path), *(str(e) for e in extra if isinstance(e, str))]


def _local_entries(location: str, cache: HashCache) -> list[tuple[str, int, str]]:
    path = local_path(location)
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.parts[len(path.parts) :])
        )
        return [(f"{location}/{p.relative_to(path).as_posix()}", *cache.sha256(p)) for p in files]
    return [(location, *cache.sha256(path))]


def input_content(spec: Any, cache: HashCache) -> dict[str, Any]:
    """{path, files, bytes, sha256} of one `source.inputs` entry."""
    entries: list[tuple[str, int, str]] = []
    try:
        for location in input_files(spec):
            entries.extend(
                remote_objects(location) if is_remote(location) else _local_entries(location, cache)
            )
    except OSError as err:
        raise ConfigError(
            f"source input {spec.name!r} ({spec.path}): cannot read it to fingerprint its content "
            f"({err.strerror or err}); check that the path exists and is readable"
        ) from None
    digest = hashlib.sha256("".join(f"{n}\t{size}\t{h}\n" for n, size, h in entries).encode()).hexdigest()
    return {
        "path": str(spec.path),
        "files": len(entries),
        "bytes": sum(size for _, size, _ in entries),
        "sha256": digest[:16],
    }


def source_content(cfg: BuildConfig, cache_path: str | os.PathLike[str] | None = None) -> Content:
    cache = HashCache(cache_path)
    try:
        return {spec.name: input_content(spec, cache) for spec in cfg.source.all_inputs()}
    finally:
        cache.save()


def with_source_content(cfg: BuildConfig, cache_path: str | os.PathLike[str] | None = None) -> BuildConfig:
    """The config with its inputs' content measured, so its fingerprint covers them."""
    return cfg.model_copy(update={"source_content": source_content(cfg, cache_path)})


def _size(entry: dict[str, Any]) -> str:
    files = f"{entry['files']} files, " if entry["files"] != 1 else ""
    return f"{files}{entry['bytes']:,} bytes, sha256 {entry['sha256']}"


def describe_changes(old: Content | None, new: Content) -> list[str]:
    """One line per input that differs: which input, old vs new size and hash."""
    if old is None:
        return ["the previous build did not record its sources' content (made by an older version)"]
    lines = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None:
            assert after is not None  # not both: they differ
            lines.append(f"input {name!r} is new: {after['path']} ({_size(after)})")
        elif after is None:
            lines.append(f"input {name!r} is gone (was {before['path']}, {_size(before)})")
        else:
            lines.append(f"input {name!r} changed: {after['path']}: {_size(before)} -> {_size(after)}")
    return lines


def rerun_notes(changed: list[str], cleared: int, store: str | None) -> list[str]:
    """What a rerun on changed sources says before it starts: what changed, what runs again."""
    reuse = (
        f"pairs whose content is unchanged take their trajectories from the store {store}"
        if store
        else "edits run again"
    )
    return [
        "the sources changed since this output was built:",
        *(f"  {line}" for line in changed),
        f"rebuilding on the new content: deleted the old build ({cleared} objects; the run state and the "
        "answer cache stay), so pooling runs again, then generate, select, write steps and finalize on "
        f"every partition; {reuse}, and model answers already paid for come from the answer cache",
    ]
