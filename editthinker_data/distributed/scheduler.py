"""Keeps many think-while-edit rollouts in flight over the actor pools, for the whole build.

Each rollout is a generator of backend calls (`loop.rollout`). One `Dispatcher` per build
owns the pools and one in-flight budget; every running generate unit hands it its rollouts
(`Dispatcher.run`), so while one unit drains its tail the next unit's rollouts already fill
the editors. Calls are queued per pool and sent in batches (the pool's batch_size) to the
least-loaded actor; the budget is `run.max_in_flight`, or with `auto` sized from the pools'
measured service times (`load.auto_in_flight`). An actor that dies is replaced; its requests
are retried up to `retries` times, then delivered as a TransientBackendError (the trajectory
is left unfinished, and a rerun retries it).

The dispatcher's own thread advances the rollouts and talks to Ray; each unit's thread gets
its finished trajectories and each batch's cost through a queue and handles them itself
(journal, shards), so one unit's writing never holds up dispatch. Each batch comes back with
what it cost (the backend's counter deltas), split over the units whose requests it carried,
so usage is kept with the unit (journal, marker), not with actors a crash takes away.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray

from editthinker_data.backends import BackendError, TransientBackendError
from editthinker_data.core.progress import current as progress
from editthinker_data.core.schema import Trajectory
from editthinker_data.core.stats import BATCH_SHARE
from editthinker_data.distributed.load import (
    PoolLoad,
    auto_in_flight,
    ewma,
    pool_report,
    split_cost,
)
from editthinker_data.distributed.pools import DEATHS, Workers
from editthinker_data.pipeline.loop import Call, Rollout

Key = tuple[str, str]
log = logging.getLogger(__name__)
POLL_S = 0.05  # how soon a newly submitted unit is seen while batches are out


@dataclass(eq=False)
class _Job:
    """One unit's rollouts: admitted in item order, reported back through `events`."""

    items: Sequence[Any]
    make: Callable[[Any], Rollout]
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    next_item: int = 0
    live: int = 0
    cancelled: bool = False
    start: dict[Key, dict[str, float]] = field(default_factory=dict)
    active_at_start: float = 0.0
    counters: dict[str, int] = field(
        default_factory=lambda: {"batches": 0, "requests": 0, "retries": 0, "actors_replaced": 0}
    )


class Dispatcher:
    """The build's one scheduler: `run(items, make, on_done, on_usage)` from any number of
    unit threads at once; `close()` when the build is done."""

    def __init__(self, workers: Workers, *, max_in_flight: int | str = "auto", retries: int):
        self.workers = workers
        self.fixed = None if max_in_flight == "auto" else int(max_in_flight)
        self.retries = retries
        self.loads = {
            key: PoolLoad(p.role, p.spec.num_actors, p.spec.batch_size) for key, p in workers.pools.items()
        }
        self.peak_in_flight = 0
        self.last_admitted = 0.0
        self.jobs_submitted = 0  # run() calls so far (any thread)
        self._count_lock = threading.Lock()
        self.jobs_ended = 0
        self._inbox: deque[tuple[str, _Job]] = deque()
        self._wake = threading.Event()
        self._jobs: list[_Job] = []  # admission order: the earliest unit's items first
        self._gens: dict[int, tuple[_Job, int, Rollout]] = {}
        self._queues: dict[Key, deque[tuple[int, Call, int]]] = defaultdict(deque)
        self._queued_at: dict[int, float] = {}  # rollout -> when its call joined a queue
        self._left_editor: dict[int, float] = {}  # rollout -> when its last edit came back
        self.away_s: float | None = None  # EWMA of a rollout's time between two edits
        self._futures: dict[Any, tuple[Key, int, Any, list[tuple[int, Call, int]]]] = {}
        self._next_rid = 0
        self._active_s = 0.0
        self._active_since: float | None = None
        self._closed = False
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="rollout-dispatcher", daemon=True)
        self._thread.start()

    # -- the units' side ---------------------------------------------------------------

    def in_flight_target(self) -> int:
        return self.fixed if self.fixed is not None else auto_in_flight(self.loads.values(), self.away_s)

    def wants_unit(self, running: int, setting: int | str, most: int) -> bool:
        """Whether to start another unit (`run.concurrent_partitions`). With auto: when every
        started unit's rollouts are admitted and the budget still has room, so a unit that is
        draining its tail leaves room that the next unit fills; at most one unit may be
        loading its sources (not yet handed over) at a time, and at most `most` run at once."""
        if setting != "auto":
            return running < int(setting)
        if running == 0:
            return True
        jobs = list(self._jobs)
        waiting = [job for what, job in list(self._inbox) if what == "submit"]
        unadmitted = sum(len(j.items) - j.next_item for j in jobs) + sum(len(j.items) for j in waiting)
        handed_over = self.jobs_submitted - self.jobs_ended
        return (
            running < most
            and handed_over >= running - 1
            and unadmitted == 0
            and len(self._gens) < self.in_flight_target()
        )

    def run(
        self,
        items: Sequence[Any],
        make: Callable[[Any], Rollout],
        on_done: Callable[[int, Trajectory], None],
        on_usage: Callable[[str, dict[str, float]], None] | None = None,
    ) -> dict[str, Any]:
        """Run `make(item)` for every item; `on_done(index, trajectory)` as each ends, in this
        thread. Returns this unit's counters and its window's per-pool load."""
        job = _Job(items, make)
        with self._count_lock:  # unit threads submit at once
            self._post("submit", job)
            self.jobs_submitted += 1
        try:
            while True:
                kind, *args = job.events.get()
                if kind == "done":
                    on_done(*args)
                elif kind == "usage":
                    if on_usage is not None:
                        on_usage(*args)
                elif kind == "error":
                    raise args[0]
                else:
                    return args[0]
        except BaseException:
            self._post("cancel", job)  # its rollouts leave the budget; late results are dropped
            raise

    def report(self) -> dict[str, Any]:
        """The whole build's load: per pool busy fraction, idle and dry seconds."""
        active = self._active_now()
        return {
            "max_in_flight": self.fixed if self.fixed is not None else "auto",
            "in_flight_target": self.in_flight_target(),
            "peak_in_flight": self.peak_in_flight,
            "away_s": round(self.away_s, 4) if self.away_s else None,
            "active_s": round(active, 3),
            "pools": {f"{r}/{n}": pool_report(load, None, active) for (r, n), load in self.loads.items()},
        }

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _post(self, what: str, job: _Job) -> None:
        if self._closed or self._failure is not None:
            raise RuntimeError(f"the rollout dispatcher is not running: {self._failure or 'closed'}")
        self._inbox.append((what, job))
        self._wake.set()

    # -- the dispatcher's thread ---------------------------------------------------------

    def _active_now(self) -> float:
        return self._active_s + (time.monotonic() - self._active_since if self._active_since else 0.0)

    def _set_active(self, active: bool) -> None:
        if active == (self._active_since is not None):
            return
        if active:
            self._active_since = time.monotonic()
        else:
            self._active_s += time.monotonic() - self._active_since
            self._active_since = None
        for load in self.loads.values():
            load.set_active(active)

    def _loop(self) -> None:
        try:
            while not self._closed:
                self._take_inbox()
                self._admit()
                self._set_active(bool(self._gens))
                self._dispatch()
                self._finish_jobs()
                # Replacements still setting up: a batch goes to one only once it has answered,
                # so one that Ray placed on a node that just died costs no request a retry.
                starting = {
                    ref: pool
                    for pool in self.workers.pools.values()
                    for ref, _ in list(pool.pending.values())
                }
                if not self._futures and not starting:
                    self._wake.wait(POLL_S)
                    self._wake.clear()
                    continue
                ready, _ = ray.wait([*self._futures, *starting], num_returns=1, timeout=POLL_S)
                if not ready:
                    for pool in self.workers.pools.values():
                        pool.check_pending(time.monotonic())
                for ref in ready:
                    if ref in starting:
                        starting[ref].settle(ref)
                    else:
                        self._collect(ref)
        except BaseException as err:  # a scheduler bug: every waiting unit fails with it
            self._failure = err
        # Closed or failed: no unit may wait for an answer that will not come.
        waiting = self._jobs + [job for what, job in list(self._inbox) if what == "submit"]
        reason = f"failed: {self._failure!r}" if self._failure else "closed"
        for job in waiting:
            job.events.put(("error", RuntimeError(f"the rollout dispatcher {reason}")))

    def _take_inbox(self) -> None:
        while self._inbox:
            what, job = self._inbox.popleft()
            if what == "submit":
                job.start = {key: load.totals() for key, load in self.loads.items()}
                job.active_at_start = self._active_now()
                self._jobs.append(job)
            else:
                self._drop(job)

    def _drop(self, job: _Job) -> None:
        job.cancelled = True
        if job in self._jobs:
            self._jobs.remove(job)
            self.jobs_ended += 1
        for rid in [rid for rid, (j, _, _) in self._gens.items() if j is job]:
            del self._gens[rid]
            self._queued_at.pop(rid, None)
            self._left_editor.pop(rid, None)
        for key, q in self._queues.items():
            self._queues[key] = deque(e for e in q if e[0] in self._gens)

    def _admit(self) -> None:
        budget = self.in_flight_target()
        for job in list(self._jobs):
            while len(self._gens) < budget and job.next_item < len(job.items) and not job.cancelled:
                index, rid = job.next_item, self._next_rid
                job.next_item += 1
                self._next_rid += 1
                try:
                    gen = job.make(job.items[index])
                except Exception as err:  # a bad item fails its unit, not the build
                    job.events.put(("error", err))
                    self._drop(job)
                    break
                job.live += 1
                self._gens[rid] = (job, index, gen)
                self.last_admitted = time.monotonic()
                self._advance(rid, None, first=True)
        self.peak_in_flight = max(self.peak_in_flight, len(self._gens))

    def _finish_jobs(self) -> None:
        for job in [j for j in self._jobs if j.live == 0 and j.next_item >= len(j.items)]:
            self._jobs.remove(job)
            self.jobs_ended += 1
            active = self._active_now() - job.active_at_start
            pools = {
                f"{r}/{n}": pool_report(load, job.start.get((r, n)), active)
                for (r, n), load in self.loads.items()
            }
            target = self.in_flight_target()
            job.events.put(("end", {**job.counters, "in_flight_target": target, "pools": pools}))

    def _advance(self, rid: int, value: Any, first: bool = False) -> None:
        job, index, gen = self._gens[rid]
        try:
            call = next(gen) if first else gen.send(value)
        except StopIteration as stop:
            del self._gens[rid]
            self._left_editor.pop(rid, None)
            job.live -= 1
            traj: Trajectory = stop.value
            progress().add(pairs_done=1, turns=len(traj.turns), failed=int(traj.stop_reason == "failed"))
            job.events.put(("done", index, traj))
            return
        except Exception as err:  # a bug in one rollout fails its unit, not the build
            job.events.put(("error", err))
            self._drop(job)
            return
        key = (call.role, call.backend)
        if key not in self.workers.pools:
            self._advance(rid, BackendError(f"no {call.role} named {call.backend!r} in this build"))
            return
        now = time.monotonic()
        self._queues[key].append((rid, call, 0))
        self._queued_at[rid] = now
        if call.role == "editor" and rid in self._left_editor:
            self.away_s = ewma(self.away_s, now - self._left_editor.pop(rid))

    def _dispatch(self) -> None:
        for key, q in self._queues.items():
            pool, load = self.workers.pools[key], self.loads[key]
            while q:
                ai = load.pick(len(q), usable=pool.ready)
                if ai is None:
                    break
                batch = [q.popleft() for _ in range(min(pool.spec.batch_size, len(q)))]
                actor = pool.actors[ai]
                ref = actor.run_counted.remote([c.request for _, c, _ in batch])
                self._futures[ref] = (key, ai, actor, batch)
                load.sent(ai, len(batch))
                # Counted once, for the unit of its first request: a batch may carry several units'.
                self._gens[batch[0][0]][0].counters["batches"] += 1
                for rid, _, _ in batch:
                    self._gens[rid][0].counters["requests"] += 1

    def _collect(self, ref: Any) -> None:
        key, ai, actor, sent = self._futures.pop(ref)
        batch = [e for e in sent if e[0] in self._gens]  # a cancelled unit's results are dropped
        try:
            results, cost, seconds = ray.get(ref)
        except DEATHS as err:  # the actor, its process or its node is gone (and results with it)
            self.loads[key].returned(ai, None)
            self._actor_died(key, ai, actor, batch, err)
            return
        except ray.exceptions.RayError as err:  # lost object, and the like: those units fail
            self.loads[key].returned(ai, None)
            for job in {self._gens[rid][0] for rid, _, _ in batch}:
                job.events.put(("error", err))
                self._drop(job)
            return
        now = time.monotonic()
        waited = [now - self._queued_at.pop(rid, now) for rid, _, _ in sent]
        self.loads[key].returned(ai, seconds, sum(waited) / len(waited) if waited else None)
        shares: dict[_Job, int] = defaultdict(int)
        for rid, _, _ in batch:
            shares[self._gens[rid][0]] += 1
        backend = f"{key[0]}/{key[1]}"
        self.workers.pools[key].tally(actor, cost)
        for job, part in split_cost({**cost, BATCH_SHARE: 1}, shares).items():
            job.events.put(("usage", backend, part))
        progress().add(**{f"{key[0]}_calls": len(batch)})
        for (rid, _, _), result in zip(sent, results, strict=True):
            if key[0] == "editor":
                self._left_editor[rid] = now
            if rid in self._gens:  # an earlier result may have failed (and dropped) its unit
                self._advance(rid, result)

    def _actor_died(self, key: Key, ai: int, actor: Any, batch: list, err: BaseException) -> None:
        pool = self.workers.pools[key]
        # What the batch cost died with it: counted as lost (its calls may have reached the endpoint).
        pool.lost(actor)
        log.warning(
            "%s %r: an actor died (%s: %s); its %d requests go back to the pool",
            *key, type(err).__name__, str(err).splitlines()[0] if str(err) else "", len(batch),
        )  # fmt: skip
        shares: dict[_Job, int] = defaultdict(int)
        for rid, _, _ in batch:
            shares[self._gens[rid][0]] += 1
        lost = {"lost_batches": 1, "lost_requests": len(batch), BATCH_SHARE: 1}
        for job, part in split_cost(lost, shares).items():
            job.events.put(("usage", f"{key[0]}/{key[1]}", part))
        replaced = pool.replace(ai, actor, type(err).__name__)  # False: an earlier batch replaced it
        for job in shares:
            job.counters["actors_replaced"] += int(replaced)
        for rid, call, attempts in batch:
            if attempts < self.retries:
                self._gens[rid][0].counters["retries"] += 1
                self._queues[key].append((rid, call, attempts + 1))
            else:
                self._advance(
                    rid,
                    TransientBackendError(
                        f"{key[0]} {key[1]!r} actor died {attempts + 1} times: {type(err).__name__}"
                    ),
                )
