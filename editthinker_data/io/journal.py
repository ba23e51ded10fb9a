"""Finished trajectories of a unit that is still running, saved in small batches, so that a
crash costs at most one batch: a rerun loads them and runs only the rest. The unit's
shards are written from journal + new results in pair order, so a resumed unit is byte
for byte the unit an uninterrupted run would have written. Cleared after the unit's
marker is written."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable

from editthinker_data.core.schema import SourcePair, Trajectory
from editthinker_data.io.storage import Storage


class Journal:
    def __init__(self, storage: Storage, prefix: str, every: int, on_flush: Callable[[], None] | None = None):
        self.storage = storage
        self.on_flush = on_flush  # saves what belongs with each batch (the unit's usage so far)
        self.prefix = prefix
        self.every = every
        self.buffer: list[Trajectory] = []
        self.batches = len(storage.list(prefix))

    def load(self, pairs: list[SourcePair]) -> dict[int, Trajectory]:
        """{index into pairs: trajectory} for pairs a previous run finished."""
        index = {p.id: i for i, p in enumerate(pairs)}
        done: dict[int, Trajectory] = {}
        for name in self.storage.list(self.prefix):
            for traj in pickle.loads(self.storage.read_bytes(name)):
                i = index.get(traj.pair.id)
                if i is not None:  # the pair is still in this unit: reattach its source image
                    done[i] = dataclasses.replace(traj, pair=pairs[i])
        return done

    def add(self, traj: Trajectory) -> None:
        self.buffer.append(dataclasses.replace(traj, pair=dataclasses.replace(traj.pair, image=None)))
        if len(self.buffer) >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        self.storage.write_bytes(f"{self.prefix}/{self.batches:06d}.pkl", pickle.dumps(self.buffer))
        self.batches += 1
        self.buffer = []
        if self.on_flush is not None:
            self.on_flush()

    def clear(self) -> None:
        for name in self.storage.list(self.prefix):
            self.storage.delete(name)
