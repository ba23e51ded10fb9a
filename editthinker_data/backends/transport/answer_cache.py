"""Content-addressed cache of model answers, so a rerun or a resumed build never pays twice
for the same call.

The key is a sha256 over everything that decides an answer: model, template version, the
messages (images included, as their PNG bytes in the data URLs), sampling parameters and
the re-ask number. Entries are small JSON objects written whole through the storage layer,
so the cache can live on local disk or beside the build's output (local or S3); every
process of a build (all actors, all nodes) then shares it.

Where (`run.llm_cache`): `output` (default) is `<output>/cache/llm`, kept by --overwrite;
`local` is the run state's cache folder on this machine; `off` disables it; anything else
is a path or an s3:// URL.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from editthinker_data.backends import BackendContext
from editthinker_data.io.storage import LocalStorage, Storage, open_storage

OUTPUT_PREFIX = "cache/llm"


def cache_key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class AnswerCache:
    def __init__(self, storage: Storage, prefix: str = ""):
        self.storage = storage
        self.prefix = prefix.strip("/")

    @property
    def url(self) -> str:
        return f"{self.storage.url}/{self.prefix}" if self.prefix else self.storage.url

    def _name(self, key: str) -> str:
        name = f"{key[:2]}/{key}.json"
        return f"{self.prefix}/{name}" if self.prefix else name

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.storage.read_bytes(self._name(key)))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            return None  # a damaged entry is a miss; the next put replaces it

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self.storage.write_bytes(self._name(key), json.dumps(entry, sort_keys=True).encode())


def local_cache_root() -> str:
    from editthinker_data.core.runenv import user_state_root

    return os.path.join(os.environ.get("EDITTHINKER_CACHE_DIR") or str(user_state_root() / "cache"), "llm")


def open_answer_cache(context: BackendContext | None, cache_dir: str | None = None) -> AnswerCache | None:
    """The cache a backend uses: an explicit `cache_dir` param wins (tests, benchmarks), then
    the build's `run.llm_cache`; a backend made outside a build caches on local disk."""
    if cache_dir:
        return AnswerCache(LocalStorage(os.path.join(cache_dir, "llm")))
    setting = context.llm_cache if context else "local"
    if setting == "off":
        return None
    if setting == "local":
        return AnswerCache(LocalStorage(context.local_cache_dir if context and context.local_cache_dir
                                        else local_cache_root()))  # fmt: skip
    s3 = {"endpoint_url": context.s3_endpoint_url, "region": context.s3_region} if context else {}
    if setting == "output":
        if not context or not context.output_url:
            raise ValueError("run.llm_cache: output needs the build's output location")
        return AnswerCache(open_storage(context.output_url, **s3), OUTPUT_PREFIX)
    return AnswerCache(open_storage(setting, **s3))
