"""One generate unit's rollouts as the dispatcher keeps them (`scheduler.Dispatcher`)."""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from editthinker_data.distributed.events import Event
from editthinker_data.pipeline.loop import Rollout

Key = tuple[str, str]  # (role, backend name): one actor pool


@dataclass(eq=False)
class UnitJob:
    """One unit's rollouts: admitted in item order, reported back through `events`."""

    items: list[Any]  # a None item was settled by its unit (an unreadable source), or admitted
    make: Callable[[Any], Rollout]
    prepare: Callable[[Any], Any] | None = None  # item -> SourcePair, or a finished Trajectory
    fed: int | None = None  # items that have arrived so far (None: all of them)
    events: queue.SimpleQueue[Event] = field(default_factory=queue.SimpleQueue)
    next_item: int = 0
    live: int = 0
    live_items: set[int] = field(default_factory=set)
    # The live items in admission order, which is item order; ended ones leave from the front
    # when they get there, so the oldest live item costs O(1), not a min() over every live
    # one (asked for each unit on every poll and on every admission).
    _admitted: deque[int] = field(default_factory=deque)
    cancelled: bool = False
    start: dict[Key, dict[str, float]] = field(default_factory=dict)
    active_at_start: float = 0.0
    counters: dict[str, int] = field(
        default_factory=lambda: {
            "batches": 0,
            "requests": 0,
            "retries": 0,
            "actors_replaced": 0,
            "restarts": 0,
        }
    )

    def available(self) -> int:
        return len(self.items) if self.fed is None else self.fed

    def held_back(self, window: int) -> bool:
        """Whether its next item must wait for the oldest unfinished one: what a unit holds
        for writing in pair order stays within `window` trajectories."""
        oldest = self.oldest_live()
        return self.next_item >= oldest + window

    def admit(self, index: int) -> None:
        """`index` (the next item) is in flight."""
        self.live_items.add(index)
        self._admitted.append(index)

    def end(self, index: int) -> None:
        self.live_items.discard(index)

    def oldest_live(self) -> int:
        """The oldest item in flight, or the next item when none is."""
        while self._admitted and self._admitted[0] not in self.live_items:
            self._admitted.popleft()
        return self._admitted[0] if self._admitted else self.next_item


@dataclass(eq=False)
class InFlight:
    """One rollout the dispatcher keeps: its unit and pair index, the pair (to start it again
    when an image it needs is lost), its generator, and the times its load figures need."""

    job: UnitJob
    index: int
    pair: Any
    gen: Rollout
    restarts: int = 0
    queued_at: float | None = None  # when its current call joined a pool's queue
    left_editor: float | None = None  # when its last edit came back
