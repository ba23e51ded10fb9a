"""The edit store: GPU work is never made twice. Every edit an editor makes is kept, keyed by
what decides it (the editor's spec, the source image's hash, the instruction and the seed),
until the trajectory that holds it is journaled. A rerun after an outage, a rollout started
again after its node was lost, a unit retried after its process died: each takes the edits
it made before from here instead of asking the model again.

Where: beside the answer cache and shared like it (`run.llm_cache`): `output` keeps it in
`<output>/cache/edits` (every actor on every node sees it), `local` in the run state of each
machine, a path or URL under it, `off` nowhere. Edits are stored as lossless PNG, so a stored
edit decodes to the same pixels the model made and the shards stay byte-identical.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any, NamedTuple

from PIL import Image

from editthinker_data.backends import Backend, BackendContext, BackendError, EditRequest
from editthinker_data.backends.transport.answer_cache import cache_key, local_cache_root
from editthinker_data.config import SCALING_FIELDS, BackendSpec
from editthinker_data.core.schema import Role
from editthinker_data.io.storage import LocalStorage, Storage, open_storage

log = logging.getLogger(__name__)
EDITS_PREFIX = "cache/edits"


def editor_key(spec: BackendSpec) -> str:
    """What of an editor's spec decides its edits: all but how many actors and how fast."""
    return cache_key(editor=spec.model_dump(mode="json", exclude=set(SCALING_FIELDS)))


def edit_key(editor: str, source_sha256: str, instruction: str, seed: int) -> str:
    return cache_key(editor=editor, source=source_sha256, instruction=instruction, seed=seed)


class EditStore:
    def __init__(self, storage: Storage, prefix: str = EDITS_PREFIX):
        self.storage, self.prefix = storage, prefix.strip("/")

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key[:2]}/{key}.png" if self.prefix else f"{key[:2]}/{key}.png"

    def get(self, key: str) -> Image.Image | None:
        try:
            data = self.storage.read_bytes(self._name(key))
        except FileNotFoundError:
            return None
        try:
            with Image.open(io.BytesIO(data)) as img:
                return img.convert("RGB") if img.mode != "RGB" else img.copy()
        except OSError:
            return None  # a damaged entry is a miss; the next put replaces it

    def put(self, key: str, image: Image.Image) -> None:
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=1)  # lossless; fast beside the model's seconds
        self.storage.write_bytes(self._name(key), buf.getvalue())

    def drop(self, keys: Iterable[str]) -> None:
        """Forget edits whose trajectories are safe (journaled): the store holds only what a
        rerun could still need, not a second copy of the trajectory shards."""
        for key in keys:
            self.storage.delete(self._name(key))


def open_edit_store(context: BackendContext | None) -> EditStore | None:
    """The build's edit store, where `run.llm_cache` keeps the answer cache; None when off or
    outside a build."""
    if context is None or context.llm_cache == "off":
        return None
    if context.llm_cache == "local":
        answers = context.local_cache_dir or local_cache_root()  # <state>/cache/llm: edits go beside it
        return EditStore(LocalStorage(os.path.dirname(answers.rstrip("/"))), "edits")
    s3 = {"endpoint_url": context.s3_endpoint_url, "region": context.s3_region}
    if context.llm_cache == "output":
        if not context.output_url:
            return None
        return EditStore(open_storage(context.output_url, **s3))
    return EditStore(open_storage(context.llm_cache, **s3), "edits")


class Lookup(NamedTuple):
    """What the store had of a batch: each request's stored edit (None: to be made), and the
    store key of each (None: outside a build's loop, never stored)."""

    found: list[Any]
    keys: list[str | None]

    @property
    def todo(self) -> list[int]:
        return [i for i, f in enumerate(self.found) if f is None]


class StoredEdits:
    """An editor whose edits go through the store: a request already edited is read back, only
    the others reach the model (in one batch), and every new edit is kept. Requests without a
    source hash (made outside a build's loop) pass straight through.

    `run_batch` does all three in turn; a build's actor calls `lookup`, the editor and `keep`
    itself, so that the store's reads and writes happen outside its device lock (a GPU never
    waits on storage) while each new edit is still stored before its answer leaves the actor."""

    def __init__(self, editor: Backend, key: str, store: EditStore):
        self.editor, self.key, self.store = editor, key, store
        self.name = editor.name
        self.reused = 0
        self.stored = 0
        self._count = threading.Lock()  # an actor looks up one batch while it stores another

    def setup(self) -> None:
        self.editor.setup()

    def __getattr__(self, name: str) -> Any:  # the editor's own attributes (stats, health, ...)
        return getattr(self.editor, name)

    def stats(self) -> dict[str, Any]:
        inner = self.editor.stats() if hasattr(self.editor, "stats") else {}
        return {**inner, "edits_reused": self.reused, "edits_stored": self.stored}

    def run_batch(self, requests: list[EditRequest]) -> list[Any]:
        lookup = self.lookup(requests)
        todo = lookup.todo
        made = self.editor.run_batch([requests[i] for i in todo]) if todo else []
        return self.keep(lookup, made)[0]

    def lookup(self, requests: list[EditRequest]) -> Lookup:
        """The edits the store has for `requests`; one it cannot read is made again."""
        keys = [self._key(r) for r in requests]
        found: list[Any] = []
        for key in keys:
            try:
                found.append(self.store.get(key) if key else None)
            except Exception as err:  # the store is out: edit again rather than fail the batch
                log.warning("edit store: could not read %s: %s", key, err)
                found.append(None)
        with self._count:
            self.reused += sum(f is not None for f in found)
        return Lookup(found, keys)

    def keep(self, lookup: Lookup, made: list[Any]) -> tuple[list[Any], dict[str, int]]:
        """The batch's answers, the edits just `made` (for `lookup.todo`, in order) stored
        first, and this batch's counts of reused and stored edits."""
        out = list(lookup.found)
        stored = 0
        for i, result in zip(lookup.todo, made, strict=True):
            out[i] = result
            key = lookup.keys[i]
            if key and isinstance(result, Image.Image) and not isinstance(result, BackendError):
                try:
                    self.store.put(key, result)
                    stored += 1
                except Exception as err:  # the edit is good; only a rerun would make it again
                    log.warning("edit store: could not keep %s: %s", key, err)
        with self._count:
            self.stored += stored
        return out, {"edits_reused": len(out) - len(lookup.todo), "edits_stored": stored}

    def _key(self, request: EditRequest) -> str | None:
        if not request.source_sha256:
            return None
        return edit_key(self.key, request.source_sha256, request.instruction, request.seed)


def with_edit_store(
    role: str, spec: BackendSpec, backend: Backend, context: BackendContext | None
) -> Backend:
    """The backend as a build's actor should run it: an editor behind the edit store."""
    store = open_edit_store(context) if role == Role.EDITOR else None
    return StoredEdits(backend, editor_key(spec), store) if store is not None else backend


def trajectory_edit_keys(spec: BackendSpec, source_sha256: str, turns: Iterable[Any]) -> list[str]:
    """The store keys of a trajectory's edits (each turn's instruction and seed)."""
    editor = editor_key(spec)
    return [edit_key(editor, source_sha256, t.instruction, t.seed) for t in turns]
