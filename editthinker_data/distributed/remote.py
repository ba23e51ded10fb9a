"""The rollout runner of a generate unit that runs on a cluster worker: it reads its source
images only as far ahead as the dispatcher asks (one read-ahead for the build, not a window
per unit), puts each in the object store (so the editor reads it from there), hands the pairs
to the build's dispatcher actor (`service.DispatchService`) and fetches each finished
trajectory's turn images for its journal and shards. The driver and the dispatcher see
references and small events only."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import ray

from editthinker_data.core.schema import Trajectory
from editthinker_data.distributed.events import Event
from editthinker_data.distributed.refs import deliver
from editthinker_data.distributed.service import DispatcherLost, find_service
from editthinker_data.pipeline.loop import Rollout

POLL_S = 0.5  # a poll returns at once when there is news; this is the longest it waits
FEED_POLL_S = 0.1  # the longest wait of a unit with pairs still to feed


class RemoteRunner:
    """Finds the dispatcher by name, so a unit retried after the dispatcher died talks to the
    one the flow started in its place."""

    def __init__(self, name: str, wait_s: float = 900.0):
        self.name, self.wait_s = name, wait_s

    def __call__(
        self,
        items: Sequence[Any],
        make: Callable[[Any], Rollout],
        on_done: Callable[[int, Trajectory], None],
        on_usage: Callable[[str, dict[str, float]], None] | None = None,
        prepare: Callable[[Any], Any] | None = None,
    ) -> dict[str, Any]:
        service = find_service(self.name, self.wait_s)
        try:
            return self._run(service, items, make, on_done, on_usage, prepare)
        except ray.exceptions.RayActorError as err:  # the dispatcher died under this unit
            raise DispatcherLost(
                f"the dispatcher {self.name!r} died while this unit ran ({type(err).__name__}); the unit "
                "resumes from its journal on its retry"
            ) from None

    def _run(
        self,
        service: Any,
        items: Sequence[Any],
        make: Callable[[Any], Rollout],
        on_done: Callable[[int, Trajectory], None],
        on_usage: Callable[[str, dict[str, float]], None] | None,
        prepare: Callable[[Any], Any] | None,
    ) -> dict[str, Any]:
        jid, feed_to = ray.get(service.submit.remote(len(items), make))
        fed = 0
        try:
            while True:
                ahead = min(len(items), feed_to)
                if fed < ahead:
                    ray.get(
                        service.feed.remote(
                            jid, [self._ready(items, k, prepare, on_done) for k in range(fed, ahead)]
                        )
                    )
                    fed = ahead
                # Pairs still to feed: room in the budget may free up without news for this unit.
                wait_s = POLL_S if fed == len(items) else FEED_POLL_S
                events, feed_to = ray.get(service.poll.remote(jid, wait_s))
                end = _deliver_all(events, items, on_done, on_usage)
                # Let go of the answer's references before the next poll: the dispatcher frees
                # its copies then (`service.DispatchService`).
                del events
                if end is not None:
                    service.release.remote(jid)
                    return end
        except BaseException:
            service.cancel.remote(jid)
            raise

    @staticmethod
    def _ready(items: Sequence[Any], k: int, prepare: Callable | None, on_done: Callable) -> Any:
        pair = prepare(items[k]) if prepare else items[k]
        if isinstance(pair, Trajectory):  # settled here (an unreadable source): nothing to run
            on_done(k, pair)
            return None
        return dataclasses.replace(pair, image=ray.put(pair.image))


def _deliver_all(
    events: list[Event], items: Sequence[Any], on_done: Callable, on_usage: Callable | None
) -> dict[str, Any] | None:
    """A poll's events handled in order; the unit's end counters, if it ended."""
    for event in events:
        # A finished pair's source reference goes: the unit keeps the pair as it came.
        end = deliver(event, on_done, on_usage, lambda k, traj: dataclasses.replace(traj, pair=items[k]))
        if end is not None:
            return end
    return None
