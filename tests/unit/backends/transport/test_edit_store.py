"""The edit store: an edit is made once. A request already edited is read back with the same
pixels; a different seed, instruction or source is a new edit; requests made outside a build's
loop (no source hash) pass straight through."""

from __future__ import annotations

import numpy as np
from PIL import Image

from editthinker_data.backends import EditRequest
from editthinker_data.backends.transport.edit_store import EditStore, StoredEdits, editor_key
from editthinker_data.config import BackendSpec
from editthinker_data.io.storage import LocalStorage


class CountingEditor:
    name = "noisy"

    def __init__(self):
        self.edited: list[tuple[str, int]] = []

    def setup(self) -> None:
        pass

    def run_batch(self, requests):
        out = []
        for r in requests:
            self.edited.append((r.instruction, r.seed))
            rng = np.random.default_rng(r.seed)  # an edit whose pixels a lossy store would change
            out.append(Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)))
        return out


def test_an_edit_is_made_once_and_read_back_pixel_for_pixel(tmp_path):
    source = Image.new("RGB", (32, 24), "gray")
    inner = CountingEditor()
    spec = BackendSpec(name="noisy", kind="procedural")
    editor = StoredEdits(inner, editor_key(spec), EditStore(LocalStorage(tmp_path)))
    first = editor.run_batch(
        [EditRequest(source, "add a hat", 1, "abc"), EditRequest(source, "add a hat", 2, "abc")]
    )
    again = editor.run_batch(
        [
            EditRequest(source, "add a hat", 1, "abc"),  # the same edit: from the store
            EditRequest(source, "add a cat", 1, "abc"),  # another instruction
            EditRequest(source, "add a hat", 1, "def"),  # another source
            EditRequest(source, "add a hat", 1),  # no source hash: outside a build, never stored
        ]
    )
    assert inner.edited == [
        ("add a hat", 1),
        ("add a hat", 2),
        ("add a cat", 1),
        ("add a hat", 1),
        ("add a hat", 1),
    ]
    assert np.array_equal(np.asarray(again[0]), np.asarray(first[0]))
    assert editor.stats() == {"edits_reused": 1, "edits_stored": 4}
    assert len(LocalStorage(tmp_path).list("cache/edits")) == 4


def test_another_editor_spec_is_another_edit(tmp_path):
    store = EditStore(LocalStorage(tmp_path))
    source = Image.new("RGB", (8, 8))
    a = StoredEdits(CountingEditor(), editor_key(BackendSpec(name="a", kind="procedural")), store)
    b_inner = CountingEditor()
    b = StoredEdits(
        b_inner, editor_key(BackendSpec(name="a", kind="procedural", params={"skill": 0.2})), store
    )
    a.run_batch([EditRequest(source, "x", 0, "s")])
    b.run_batch([EditRequest(source, "x", 0, "s")])
    assert b_inner.edited == [("x", 0)] and b.reused == 0
    scaled = editor_key(BackendSpec(name="a", kind="procedural", num_actors=8))  # how many, not how
    assert scaled == editor_key(BackendSpec(name="a", kind="procedural"))
