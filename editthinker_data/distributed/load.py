"""Load bookkeeping for the scheduler, free of Ray so it is tested on its own: which actor
gets the next batch, how busy each pool was, and how many rollouts keep the editors fed.

The in-flight target follows Little's law: to keep every editor actor with
PER_ACTOR_OUTSTANDING batches (one running, one queued), the build needs that many requests
at the editors plus the editors' full throughput x the time a rollout spends away from them
(scoring, refining, waiting for a batch of those), since a rollout waiting on the expert
cannot be editing. A batched backend makes that time grow with its batches: measuring it
per rollout, rather than summing service times, catches the wait for the next batch.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from editthinker_data.core.schema import Role

PER_ACTOR_OUTSTANDING = 2  # one batch running, one queued at the actor: no idle gap
AUTO_MAX_IN_FLIGHT = 1024  # each rollout holds its images in the object store: a sane ceiling
EWMA = 0.1  # weight of the newest batch in a pool's service time (follows a build's drift)
# Under load, a partial batch for an idle actor waits up to this share of the pool's batch
# time for more requests: a model whose batch costs the same full or not serves more per
# second with full ones (dynamic batching, as inference servers do).
BATCH_WAIT = 0.25


@dataclass
class PoolLoad:
    """One pool's outstanding batches per actor and its measured service times.

    `busy_s` sums the actors' own batch times; `idle_s` sums actor-seconds with nothing
    sent while the build had rollouts in flight; `dry_s` counts seconds in which the whole
    pool had nothing to do while rollouts were in flight (waiting on other pools).

    The dispatcher asks for an actor on every batch and every turn of its loop, so nothing
    here scans the pool: the actors with room are kept in one min-heap of indices per
    outstanding count (`_room`), so `pick` costs O(log actors), not O(actors) (3.4 ms per
    pick at 1,000 actors, measured; a pool of thousands of GPUs is asked hundreds of times
    a second). `outstanding` changes only through `sent` and `returned`."""

    role: str
    actors: int
    batch_size: int
    clock: Callable[[], float] = time.monotonic
    outstanding: list[int] = field(default_factory=list)
    service_s: float | None = None  # EWMA of one batch's time inside the actor
    response_s: float | None = None  # EWMA of a request's time from queued to answered
    batches: int = 0
    requests: int = 0
    busy_s: float = 0.0
    idle_s: float = 0.0
    dry_s: float = 0.0
    _active: bool = False
    _since: float = 0.0
    _idle: int = 0  # actors with nothing outstanding
    # Per outstanding count below PER_ACTOR_OUTSTANDING: a min-heap of the indices that may
    # have it, and the set of indices in that heap. An entry is stale when its actor's count
    # has moved on; it is dropped when it reaches the top, and valid again if the count comes back.
    _room: list[tuple[list[int], set[int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.outstanding = [0] * self.actors
        self._idle = self.actors
        self._room = [([], set()) for _ in range(PER_ACTOR_OUTSTANDING)]
        self._room[0][0].extend(range(self.actors))  # ascending: already a heap
        self._room[0][1].update(range(self.actors))
        self._since = self.clock()

    def _moved(self, actor: int, was: int) -> None:
        now = self.outstanding[actor]
        self._idle += (now == 0) - (was == 0)
        if now < PER_ACTOR_OUTSTANDING:
            heap, members = self._room[now]
            if actor not in members:
                members.add(actor)
                heapq.heappush(heap, actor)

    def _lowest(self, count: int, usable=None) -> int | None:
        """The lowest usable index with `count` outstanding, if any."""
        heap, members = self._room[count]
        skipped = []
        found = None
        while heap:
            i = heap[0]
            if self.outstanding[i] != count:  # stale
                heapq.heappop(heap)
                members.discard(i)
            elif usable is not None and not usable(i):  # set aside, put back below
                skipped.append(heapq.heappop(heap))
            else:
                found = i
                break
        for i in skipped:
            heapq.heappush(heap, i)
        return found

    def least_loaded(self, usable=None) -> int | None:
        """The usable actor with the fewest batches outstanding, below PER_ACTOR_OUTSTANDING
        (ties: the lowest index); None when every usable actor is full."""
        for count in range(PER_ACTOR_OUTSTANDING):
            found = self._lowest(count, usable)
            if found is not None:
                return found
        return None

    def has_idle(self, usable=None) -> bool:
        """Whether a usable actor has nothing outstanding."""
        return self._lowest(0, usable) is not None

    def pick(self, queued: int, usable=None, waited: float = 0.0, loaded: bool = False) -> int | None:
        """The least-loaded actor with room for another batch (ties go to the lowest index),
        so batches spread over the pool instead of stacking on actor 0. An idle actor takes
        whatever is queued; a busy one is sent only a full batch to queue behind its running
        one, since a backend that pays per batch would serve a partial one at full cost while
        the requests that come next wait behind it. `usable(i)` leaves out actors that cannot
        take work yet (a replacement before its set-up has answered). When the pool is
        `loaded` (more requests are on their way), a partial batch whose oldest request has
        `waited` less than BATCH_WAIT of a batch's time waits for more."""
        best = self.least_loaded(usable)
        if best is None:  # every usable actor is full, or every actor is a replacement setting up
            return None
        if self.outstanding[best] == 0:
            if queued >= self.batch_size or not loaded or waited >= self.fill_wait():
                return best
            return None
        if self.outstanding[best] < PER_ACTOR_OUTSTANDING and queued >= self.batch_size:
            return best
        return None

    def fill_wait(self) -> float:
        """How long a partial batch may wait to fill while the pool is loaded."""
        return BATCH_WAIT * (self.service_s or 0.0)

    def _tick(self) -> None:
        now = self.clock()
        if self._active:
            self.idle_s += self._idle * (now - self._since)
            if self._idle == self.actors:
                self.dry_s += now - self._since
        self._since = now

    def set_active(self, active: bool) -> None:
        """Idle time counts only while the build has rollouts in flight."""
        self._tick()
        self._active = active

    def sent(self, actor: int, requests: int) -> None:
        self._tick()
        self.outstanding[actor] += 1
        self._moved(actor, self.outstanding[actor] - 1)
        self.batches += 1
        self.requests += requests

    def returned(self, actor: int, service_s: float | None, response_s: float | None = None) -> None:
        self._tick()
        self.outstanding[actor] -= 1
        self._moved(actor, self.outstanding[actor] + 1)
        if service_s is not None:
            self.busy_s += service_s
            self.service_s = ewma(self.service_s, service_s)
        if response_s is not None:
            self.response_s = ewma(self.response_s, response_s)

    def totals(self) -> dict[str, float]:
        self._tick()
        return {"busy_s": self.busy_s, "idle_s": self.idle_s, "dry_s": self.dry_s, "requests": self.requests}


def ewma(old: float | None, new: float) -> float:
    return new if old is None else (1 - EWMA) * old + EWMA * new


def auto_in_flight(
    pools: Iterable[PoolLoad], away_s: float | None = None, cap: int = AUTO_MAX_IN_FLIGHT
) -> int:
    """Rollouts in flight that keep every editor actor fed (Little's law, see the module doc).

    `away_s` is the measured mean time a rollout spends between leaving an editor and coming
    back to one (scorer, expert, their queues, the driver). Until it is known, each other
    role counts two service times per edit (one batch running, the next one filling), and a
    pool that has not answered yet counts the editors' time. Never more than the pools can
    hold at once (PER_ACTOR_OUTSTANDING full batches per actor): more would only queue."""
    pools = list(pools)
    editors = [p for p in pools if p.role == Role.EDITOR]
    if not editors:
        return cap
    floor = sum(p.actors * p.batch_size * PER_ACTOR_OUTSTANDING for p in editors)
    hold = sum(p.actors * p.batch_size * PER_ACTOR_OUTSTANDING for p in pools)
    known = [p.service_s for p in editors if p.service_s]
    edit_s = sum(known) / len(known) if known else 1.0
    throughput = sum(p.actors * p.batch_size / (p.service_s or edit_s) for p in editors)  # requests/s
    if away_s is None:
        away_s = 0.0
        for role in {p.role for p in pools} - {Role.EDITOR}:
            times = [p.service_s for p in pools if p.role == role and p.service_s]
            away_s += 2 * (sum(times) / len(times) if times else edit_s)
    return max(floor, min(cap, hold, math.ceil(floor + throughput * away_s)))


def pool_report(load: PoolLoad, start: dict[str, float] | None, active_s: float) -> dict[str, float | None]:
    """Busy fraction and idle time of one pool over a window (a unit, or the whole build)."""
    now, start = load.totals(), start or {}
    busy = now["busy_s"] - start.get("busy_s", 0.0)
    return {
        "actors": load.actors,
        "requests": int(now["requests"] - start.get("requests", 0)),
        "busy": round(busy / (load.actors * active_s), 3) if active_s > 0 else 0.0,
        "busy_s": round(busy, 3),
        "idle_s": round(now["idle_s"] - start.get("idle_s", 0.0), 3),
        "dry_s": round(now["dry_s"] - start.get("dry_s", 0.0), 3),
        "service_s": round(load.service_s, 4) if load.service_s else None,
        "response_s": round(load.response_s, 4) if load.response_s else None,
    }


K = TypeVar("K", bound=Hashable)


def split_cost(cost: Mapping[str, float], shares: Mapping[K, int]) -> dict[K, dict[str, float]]:
    """One batch's cost split over the units whose requests it carried, by request count;
    whole numbers (calls, tokens) stay whole and still add up to the batch's figure."""
    total = sum(shares.values())
    out: dict[K, dict[str, float]] = {k: {} for k in shares}
    for key, value in cost.items():
        if isinstance(value, int) and not isinstance(value, bool):
            exact = {k: value * n / total for k, n in shares.items()}
            parts = {k: math.floor(v) for k, v in exact.items()}
            rest = value - sum(parts.values())
            for k in sorted(shares, key=lambda k: parts[k] - exact[k])[:rest]:
                parts[k] += 1  # largest remainders first
            for k in shares:
                out[k][key] = parts[k]
        else:
            for k, n in shares.items():
                out[k][key] = value * n / total
    return out


DRY_SHARE = 0.05  # an editor pool idle this much longer than the others is reported
ALL_DRY_SHARE = (
    0.10  # every editor pool idle this share of the build is reported (a few % is the final drain)
)


def load_lines(report: dict) -> list[str]:
    """The build summary's line on editor load, one warning per editor pool that ran dry
    while other editor pools worked (its share of pairs is too small for its actors), and
    one when all editors waited (too little expert/scorer capacity, or too few in flight)."""
    pools = {k.split("/", 1)[1]: v for k, v in report.get("pools", {}).items() if k.startswith("editor/")}
    if not pools:
        return []
    active = report.get("active_s") or 0.0
    busy = ", ".join(f"{name} {v['busy']:.0%}" for name, v in pools.items())
    target, peak = report.get("in_flight_target"), report.get("peak_in_flight")
    lines = [f"editors busy: {busy} (in flight: {report.get('max_in_flight')} -> {target}, peak {peak})"]
    if not active:
        return lines
    least = min(v["dry_s"] for v in pools.values())
    for name, v in pools.items():
        if v["dry_s"] - least > DRY_SHARE * active:
            lines.append(
                f"editor pool {name!r} ran dry for {v['dry_s']:.1f}s of {active:.1f}s while other editors worked: "
                f"give it a larger share of pairs (ratio) or fewer actors"
            )
    if least > ALL_DRY_SHARE * active:
        lines.append(
            f"every editor pool sat idle for {least:.1f}s of {active:.1f}s with rollouts in flight: they waited "
            f"on the expert or scorer (give those more actors or concurrency) or on too few rollouts "
            f"(max_in_flight, concurrent_partitions: auto)"
        )
    return lines
