"""A generate unit's progress as one small JSON record beside its journal, so that `status`
can tell from storage alone (a laptop reading s3:// while the build runs on a cluster) how
far a running unit is, how fast it goes and what failed, without unpickling journal batches
full of images.

It is written when a run of the unit starts, with every journal batch (one small object
beside the batch, replaced each time) and when the run ends; the unit's marker keeps the last
one, and the record goes with the journal. Shards never see it. Times are the unit host's
clock, in unix seconds; the history keeps one point every few seconds over the last quarter
hour, so the record stays a few kilobytes however long the unit runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from editthinker_data.core.layout import progress_record
from editthinker_data.core.schema import Trajectory
from editthinker_data.io.storage import Storage

FORMAT = 1
SPACING_S = 5.0  # a history point this close to the one before replaces it
KEEP_S = 900.0  # history kept: the last quarter hour of the run, and the point just before it


def failure_of(traj: Trajectory) -> tuple[str, str] | None:
    """(backend, reason) of a trajectory that ended in a final failure, as the unit's
    failures.jsonl entries count it; None for one that did not fail."""
    f = traj.failure
    if f is not None and f.stage == "load":
        return "source", "image_unreadable"
    if traj.error:
        return (f.who, f.reason) if f else ("unknown backend", "turn_failed")
    return None


class UnitProgress:
    """One run of a unit: `count` each finished trajectory, `save` at each journal batch."""

    def __init__(
        self,
        storage: Storage,
        unit: str,
        pairs: int,
        prices: dict[str, list[float]],
        clock: Callable[[], float] = time.time,
    ):
        self.storage, self.name, self.clock = storage, progress_record(unit), clock
        self.record: dict[str, Any] = {
            "format": FORMAT,
            "unit": unit,
            "pairs": pairs,
            "started": round(clock(), 3),
            "done": 0,
            "turns": 0,
            "failures": {},  # backend -> reason -> trajectories
            "prices": prices,  # "role/name" -> [USD per million tokens in, out]
            "history": [],  # [time, done, turns]
            "outcome": "running",
        }

    def count(self, traj: Trajectory) -> None:
        r = self.record
        r["done"] += 1
        r["turns"] += len(traj.turns)
        failed = failure_of(traj)
        if failed:
            reasons = r["failures"].setdefault(failed[0], {})
            reasons[failed[1]] = reasons.get(failed[1], 0) + 1

    def save(self, outcome: str = "running", **extra: Any) -> dict[str, Any]:
        """Write the record now; `outcome` is running, incomplete (a backend could not answer
        some pairs) or error (the run raised)."""
        record = self.stamp(outcome, **extra)
        self.storage.write_json(self.name, record)
        return record

    def stamp(self, outcome: str, **extra: Any) -> dict[str, Any]:
        """The record as of now (a finished unit's goes into its marker, not to storage)."""
        r = self.record
        now = round(self.clock(), 3)
        history = r["history"]
        if len(history) >= 2 and now - history[-2][0] < SPACING_S:
            history.pop()
        history.append([now, r["done"], r["turns"]])
        while len(history) > 2 and history[1][0] < now - KEEP_S:
            history.pop(0)
        r.update(outcome=outcome, updated=now, **extra)
        return r

    def clear(self) -> None:
        self.storage.delete(self.name)


def read_progress(storage: Storage, unit: str) -> dict[str, Any] | None:
    name = progress_record(unit)
    return storage.read_json(name) if storage.exists(name) else None
