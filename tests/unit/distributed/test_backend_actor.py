"""An editor actor's edit store works outside its device lock: the store is read before a
batch takes the device and written after it lets go (each new edit stored before its answer
leaves the actor), so a GPU never waits on storage and no edit is made twice. The actor class
runs in this process here; Ray only makes it remote."""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from editthinker_data.backends import BackendContext, EditRequest
from editthinker_data.config import BackendSpec
from editthinker_data.distributed.pools import BackendActor

SOURCE = Image.new("RGB", (32, 24), "gray")


class DeviceEditor:
    """Edits (noise from the seed, so a lossy store would show), noting whether the actor's
    device lock was held while it worked; `hold` keeps it on the device until set."""

    name = "noisy"

    def __init__(self, device: threading.Lock):
        self.device, self.edited, self.locked = device, [], []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()

    def setup(self) -> None:
        pass

    def run_batch(self, requests):
        self.entered.set()
        self.hold.wait(30)
        self.locked.append(self.device.locked())
        self.edited += [(r.instruction, r.seed) for r in requests]
        return [
            Image.fromarray(np.random.default_rng(r.seed).integers(0, 256, (24, 32, 3), dtype=np.uint8))
            for r in requests
        ]


class WatchedStorage:
    """The store's storage, noting for each read and write whether the device lock was held."""

    def __init__(self, inner, device: threading.Lock):
        self.inner, self.device, self.io = inner, device, []
        self.fail_writes = False

    def read_bytes(self, name):
        self.io.append(("read", self.device.locked()))
        return self.inner.read_bytes(name)

    def write_bytes(self, name, data):
        self.io.append(("write", self.device.locked()))
        if self.fail_writes:
            raise OSError("the bucket is out")
        self.inner.write_bytes(name, data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def editor_actor(tmp_path):
    actor = BackendActor(
        "editor", BackendSpec(name="noisy", kind="procedural"), 0, BackendContext(output_url=str(tmp_path))
    )
    inner = actor.backend.editor = DeviceEditor(actor.device)
    storage = actor.backend.store.storage = WatchedStorage(actor.backend.store.storage, actor.device)
    return actor, inner, storage


def req(instruction: str, seed: int) -> EditRequest:
    return EditRequest(SOURCE, instruction, seed, "sha-of-the-source")


def test_the_store_is_read_and_written_outside_the_device_lock_and_an_edit_is_made_once(tmp_path):
    actor, inner, storage = editor_actor(tmp_path)
    first, cost, _ = actor.run_counted([req("add a hat", 1), req("add a hat", 2)])
    assert cost["edits_stored"] == 2 and cost["edits_reused"] == 0
    again, cost, _ = actor.run_counted([req("add a hat", 1), req("add a cat", 1)])
    assert cost["edits_stored"] == 1 and cost["edits_reused"] == 1
    assert inner.edited == [("add a hat", 1), ("add a hat", 2), ("add a cat", 1)]  # never twice
    assert np.array_equal(np.asarray(again[0]), np.asarray(first[0]))  # read back pixel for pixel
    assert inner.locked == [True, True]  # the model ran under the lock...
    assert [kind for kind, _ in storage.io].count("write") == 3 and storage.io
    assert not any(held for _, held in storage.io)  # ...the store never did
    assert actor.backend.stats() == {"edits_reused": 1, "edits_stored": 3}


def test_a_batch_reads_the_store_while_another_is_on_the_device(tmp_path):
    actor, inner, storage = editor_actor(tmp_path)
    actor.run_counted([req("add a hat", 1)])  # stored
    inner.hold.clear()
    busy = threading.Thread(target=actor.run_counted, args=([req("add a dog", 5)],))
    busy.start()
    assert inner.entered.wait(10)  # the first batch holds the device
    storage.io.clear()
    reads = threading.Event()
    answer: list = []

    def second():
        answer.append(actor.run_counted([req("add a hat", 1)]))  # all from the store
        reads.set()

    threading.Thread(target=second).start()
    try:
        # It is answered while the device is still busy with the other batch: its store
        # read never waited for the device.
        assert reads.wait(10) and answer[0][1]["edits_reused"] == 1
        assert busy.is_alive() and actor.device.locked()
    finally:
        inner.hold.set()
        busy.join(10)
    # Its read ran while the other batch held the device; that batch stored its edit after.
    assert storage.io == [("read", True), ("write", False)]


def test_an_edit_the_store_cannot_keep_is_still_answered(tmp_path):
    actor, inner, storage = editor_actor(tmp_path)
    storage.fail_writes = True
    [edit], cost, _ = actor.run_counted([req("add a hat", 1)])
    assert isinstance(edit, Image.Image) and cost["edits_stored"] == 0 and inner.edited == [("add a hat", 1)]
