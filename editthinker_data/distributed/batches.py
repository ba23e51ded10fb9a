"""The dispatcher's traffic with the actor pools: each pool's queued calls go out in batches
to its least-loaded ready actor; edits come back as object references (each its own object,
never fetched here), other results as values with the batch's cost; a dead actor is
replaced and its requests retried.

A part of `scheduler.Dispatcher`, composed, not inherited: it owns the queues and the batches
out, reads the rollouts in flight, and hands every answer back through `answer(rid, value)`
and every unit it cannot serve through `fail(job, error)`.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any, NamedTuple

import ray

from editthinker_data.backends import TransientBackendError
from editthinker_data.core.progress import calls_counter
from editthinker_data.core.progress import current as progress
from editthinker_data.core.schema import Role
from editthinker_data.core.stats import BATCH_SHARE
from editthinker_data.distributed.breaker_record import open_breakers, signature
from editthinker_data.distributed.breakers import Breaker
from editthinker_data.distributed.events import BatchUsage
from editthinker_data.distributed.jobs import InFlight, Key, UnitJob
from editthinker_data.distributed.load import PoolLoad, split_cost
from editthinker_data.distributed.metrics import (
    BATCH_S,
    BATCHES,
    BUSY_S,
    EDITS,
    FAILURES,
    REQUESTS,
    RESPONSE_S,
    failure_kind,
)
from editthinker_data.distributed.pools import DEATHS, Workers
from editthinker_data.pipeline.loop import Call

log = logging.getLogger(__name__)


class Queued(NamedTuple):
    """A call waiting for its pool: whose, what, and how many tries it has had."""

    rid: int
    call: Call
    attempts: int = 0


class Sent(NamedTuple):
    """A batch out: where it went, what it carried, and (editors) each edit's reference."""

    key: Key
    actor_index: int
    actor: Any
    batch: list[Queued]
    outs: list[Any] | None
    probe: bool = False  # one parked call, asking whether a backend that was out is back


class PoolTraffic:
    def __init__(
        self,
        workers: Workers,
        loads: dict[Key, PoolLoad],
        rollouts: dict[int, InFlight],
        retries: int,
        answer: Callable[[int, Any], None],
        fail: Callable[[UnitJob, BaseException], None],
        outage_wait_s: float = 1800.0,
        on_breakers: Callable[[list[dict[str, Any]]], None] | None = None,
    ):
        self.workers, self.loads, self.rollouts, self.retries = workers, loads, rollouts, retries
        self.answer, self.fail = answer, fail
        self.outage_wait_s = outage_wait_s
        self.metrics = workers.metrics
        self.queues: dict[Key, deque[Queued]] = defaultdict(deque)
        self.out: dict[Any, Sent] = {}  # each batch's last reference -> the batch
        self.fill_by: float | None = None  # when the earliest partial batch left to fill must go
        self.breakers: dict[Key, Breaker] = {}
        self.parked: dict[Key, deque[Queued]] = defaultdict(deque)  # calls waiting out an outage
        # Told the open breakers whenever their state changes (`breaker_record.BreakerRecord`).
        self.on_breakers = on_breakers
        self._recorded: tuple[Any, ...] = ()
        self.watch: Callable[[Any], None] = lambda ref: None  # told of every batch's last reference

    def breaker(self, key: Key) -> Breaker:
        if key not in self.breakers:
            self.breakers[key] = Breaker(str(key[0]), key[1])
        return self.breakers[key]

    def paused(self) -> bool:
        """A backend is out and the build waits for it: no new rollout, no new edit."""
        return any(b.open and not b.gave_up for b in self.breakers.values())

    def notes(self) -> list[str]:
        now = time.monotonic()
        return [b.describe(now) for b in self.breakers.values() if b.open]

    def record_breakers(self) -> None:
        """Hand the open breakers on when their state changed since last time."""
        if self.on_breakers is None:
            return
        breakers = list(self.breakers.values())
        if (sig := signature(breakers)) != self._recorded:
            self._recorded = sig
            self.on_breakers(open_breakers(breakers))

    def enqueue(self, key: Key, entry: Queued) -> None:
        (self.parked if self.breaker(key).open else self.queues)[key].append(entry)

    def forget(self, job: UnitJob) -> None:
        """A dropped unit's calls leave the queues (its batches out are dropped on return)."""
        for key, q in self.queues.items():
            self.queues[key] = deque(e for e in q if e.rid in self.rollouts)

    def queued(self) -> dict[str, int]:
        return {f"{r}/{n}": len(q) for (r, n), q in self.queues.items()}

    def send(self, draining: bool) -> None:
        """Batches out to every pool that has an actor for them. `draining`: every pair is
        admitted, so nothing waits to fill a batch (each turn's wait would lengthen the last
        rollouts' chain)."""
        now = time.monotonic()
        self.fill_by = None
        self._mind_breakers(now)
        self.record_breakers()
        hold_edits = any(b.open for b in self.breakers.values())
        for key, q in self.queues.items():
            if hold_edits and key[0] == Role.EDITOR:  # no edit starts while a backend is out
                continue
            pool, load = self.workers.pools[key], self.loads[key]
            while q:
                first = self.rollouts.get(q[0].rid)
                waited = now - (first.queued_at if first and first.queued_at is not None else now)
                # Other rollouts may join this queue. Editors never wait: they are what the
                # build keeps busy, and each has its next batch queued while one runs.
                loaded = key[0] != Role.EDITOR and not draining and len(self.rollouts) > len(q)
                ai = load.pick(len(q), usable=pool.ready, waited=waited, loaded=loaded)
                if ai is None:
                    idle = load.has_idle(usable=pool.ready)
                    if loaded and idle and waited < load.fill_wait():  # an idle actor lets it fill
                        due = now - waited + load.fill_wait()
                        self.fill_by = due if self.fill_by is None else min(self.fill_by, due)
                    break
                self._send(key, ai, [q.popleft() for _ in range(min(pool.spec.batch_size, len(q)))])

    def _send(self, key: Key, ai: int, batch: list[Queued], probe: bool = False) -> None:
        actor = self.workers.pools[key].actors[ai]
        requests = [e.call.request for e in batch]
        if key[0] == Role.EDITOR:  # each edit its own object: passed on, never fetched here
            *outs, ref = actor.run_split.options(num_returns=len(batch) + 1).remote(requests)
            self.out[ref] = Sent(key, ai, actor, batch, outs, probe)
        else:
            ref = actor.run_counted.remote(requests)
            self.out[ref] = Sent(key, ai, actor, batch, None, probe)
        self.watch(ref)
        self.loads[key].sent(ai, len(batch))
        self.metrics.pool(BATCHES, key)
        self.metrics.pool(REQUESTS, key, len(batch))
        # Counted once, for the unit of its first request: a batch may carry several units'.
        self.rollouts[batch[0].rid].job.counters["batches"] += 1
        for e in batch:
            self.rollouts[e.rid].job.counters["requests"] += 1

    def _mind_breakers(self, now: float) -> None:
        """Probe the backends that are out; give up on one out past `outage_wait_s`: its
        parked calls are answered with the outage and edits are refused from then on, so the
        build ends unfinished (the same command finishes it) with no edit started since."""
        for key, b in list(self.breakers.items()):
            if b.overdue(now, self.outage_wait_s):
                b.gave_up = True
                log.warning("%s; the build stops waiting after %.0f s", b.describe(now), self.outage_wait_s)
            if b.probe_due(now) and self.parked[key]:
                pool, load = self.workers.pools[key], self.loads[key]
                ai = load.pick(1, usable=pool.ready, waited=float("inf"), loaded=False)
                if ai is not None:
                    b.probing = True
                    self._send(key, ai, [self.parked[key].popleft()], probe=True)
        refused: list[tuple[int, BaseException]] = []
        for key, b in self.breakers.items():
            if b.gave_up:
                why = f"{b.role} {b.name!r} unreachable for over {self.outage_wait_s:.0f} s (run.outage_wait_s): {b.last_error}"
                refused += [(e.rid, TransientBackendError(why)) for e in self.parked.pop(key, ())]
        if any(b.gave_up for b in self.breakers.values()):
            for key, q in self.queues.items():
                if key[0] == Role.EDITOR:
                    refused += [
                        (
                            e.rid,
                            TransientBackendError(
                                "no edit is started after a backend's outage outlasted run.outage_wait_s"
                            ),
                        )
                        for e in q
                    ]
                    q.clear()
        for rid, err in refused:  # answered after the loops: an answer may queue the rollout's next call
            if rid in self.rollouts:
                self.answer(rid, err)

    def collect(self, ref: Any) -> None:
        """A batch came back (or its actor died): its answers go back to their rollouts."""
        sent = self.out.pop(ref)
        key, ai = sent.key, sent.actor_index
        live = [e for e in sent.batch if e.rid in self.rollouts]  # a cancelled unit's results are dropped
        try:
            if sent.outs is None:
                results, cost, seconds = ray.get(ref)
            else:  # errors and lost inputs by position; the edits stay references
                notes, cost, seconds = ray.get(ref)
                results = [notes.get(i, out) for i, out in enumerate(sent.outs)]
        except DEATHS as err:  # the actor, its process or its node is gone (and results with it)
            self.loads[key].returned(ai, None)
            self.metrics.pool(FAILURES, key, len(sent.batch), kind="actor_died")
            self._actor_died(sent, live, err)
            return
        except ray.exceptions.RayError as err:  # lost object, and the like: those units fail
            self.loads[key].returned(ai, None)
            self.metrics.pool(FAILURES, key, len(sent.batch), kind="ray_error")
            for job in {self.rollouts[e.rid].job for e in live}:
                self.fail(job, err)
            return
        now = time.monotonic()
        waited = [now - q for e in live if (q := self.rollouts[e.rid].queued_at) is not None]
        self.loads[key].returned(ai, seconds, sum(waited) / len(waited) if waited else None)
        self._meter(key, results, seconds, waited)
        backend = f"{key[0]}/{key[1]}"
        self.workers.pools[key].tally(sent.actor, cost)
        for job, part in split_cost({**cost, BATCH_SHARE: 1}, self._shares(live)).items():
            job.events.put(BatchUsage(backend, part))
        progress().add(**{calls_counter(key[0]): len(live)})
        breaker = self.breaker(key)
        if sent.probe:
            breaker.probing = False
        for e, result in zip(sent.batch, results, strict=True):
            rollout = self.rollouts.get(e.rid)
            if rollout is None:  # an earlier result may have failed (and dropped) its unit
                continue
            rollout.queued_at = None
            if key[0] == Role.EDITOR:
                rollout.left_editor = now
            if isinstance(result, TransientBackendError) and not breaker.gave_up:
                if self._outage(key, breaker, e, result, sent.probe, now):
                    continue
            elif not isinstance(result, TransientBackendError) and breaker.answered():
                log.warning("%s %r answers again: the build resumes", *key)
                self.queues[key].extendleft(reversed(self.parked.pop(key, deque())))
            self.answer(e.rid, result)
        self.record_breakers()

    def _outage(
        self, key: Key, breaker: Breaker, e: Queued, err: BaseException, probe: bool, now: float
    ) -> bool:
        """A transient failure: the call waits (parked, or sent again) rather than ending its
        rollout, unless the breaker stays closed and its retries are spent. True: it waits."""
        was_open = breaker.open
        breaker.failed(now, str(err).splitlines()[0] if str(err) else type(err).__name__)
        if probe:
            breaker.probe_failed(now)
        if breaker.open:
            if not was_open:  # what waits to be sent waits out the outage too
                log.warning("%s: %s", breaker.describe(now), breaker.last_error)
                self.parked[key].extend(self.queues.pop(key, deque()))
            self.parked[key].append(e)
            return True
        if e.attempts < self.retries:
            self.rollouts[e.rid].job.counters["retries"] += 1
            self.queues[key].append(e._replace(attempts=e.attempts + 1))
            return True
        return False

    def _meter(self, key: Key, results: list[Any], seconds: float, waited: list[float]) -> None:
        """A batch's metrics: its time, its failures by kind, its edits."""
        self.metrics.pool(BUSY_S, key, seconds)
        self.metrics.observe(BATCH_S, key, seconds)
        if waited:
            self.metrics.observe(RESPONSE_S, key, sum(waited) / len(waited))
        failed = 0
        for result in results:
            if (kind := failure_kind(result)) is not None:
                failed += 1
                self.metrics.pool(FAILURES, key, kind=kind)
        if key[0] == Role.EDITOR:
            self.metrics.pool(EDITS, key, len(results) - failed)

    def _shares(self, batch: list[Queued]) -> dict[UnitJob, int]:
        shares: dict[UnitJob, int] = defaultdict(int)
        for e in batch:
            shares[self.rollouts[e.rid].job] += 1
        return shares

    def _actor_died(self, sent: Sent, batch: list[Queued], err: BaseException) -> None:
        key = sent.key
        pool = self.workers.pools[key]
        # What the batch cost died with it: counted as lost (its calls may have reached the endpoint).
        pool.lost(sent.actor)
        log.warning(
            "%s %r: an actor died (%s: %s); its %d requests go back to the pool",
            *key, type(err).__name__, str(err).splitlines()[0] if str(err) else "", len(batch),
        )  # fmt: skip
        shares = self._shares(batch)
        lost = {"lost_batches": 1, "lost_requests": len(batch), BATCH_SHARE: 1}
        for job, part in split_cost(lost, shares).items():
            job.events.put(BatchUsage(f"{key[0]}/{key[1]}", part))
        replaced = pool.replace(sent.actor_index, sent.actor, type(err).__name__)  # False: already replaced
        for job in shares:
            job.counters["actors_replaced"] += int(replaced)
        for e in batch:
            if e.attempts < self.retries:
                self.rollouts[e.rid].job.counters["retries"] += 1
                self.queues[key].append(e._replace(attempts=e.attempts + 1))
            else:
                self.answer(
                    e.rid,
                    TransientBackendError(
                        f"{key[0]} {key[1]!r} actor died {e.attempts + 1} times: {type(err).__name__}"
                    ),
                )
