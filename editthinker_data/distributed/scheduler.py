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

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from editthinker_data.backends import BackendError, TransientBackendError
from editthinker_data.core.progress import current as progress
from editthinker_data.core.schema import Role, Trajectory
from editthinker_data.distributed.batches import PoolTraffic, Queued
from editthinker_data.distributed.events import TrajectoryDone, UnitEnd, UnitError
from editthinker_data.distributed.jobs import InFlight, UnitJob
from editthinker_data.distributed.load import (
    PoolLoad,
    auto_in_flight,
    ewma,
    pool_report,
)
from editthinker_data.distributed.metrics import ROLLOUTS, TURNS
from editthinker_data.distributed.pools import Workers
from editthinker_data.distributed.refs import InputLost, deliver
from editthinker_data.pipeline.loop import Rollout

log = logging.getLogger(__name__)
POLL_S = 0.05  # how soon a newly submitted unit is seen while batches are out
MIN_LEAD = 8  # sources read ahead of the room in the budget, at least (`feed_to`)


class Dispatcher:
    """The build's one scheduler: `run(items, make, on_done, on_usage)` from any number of
    unit threads at once; `close()` when the build is done."""

    def __init__(
        self,
        workers: Workers,
        *,
        max_in_flight: int | str = "auto",
        retries: int,
        reorder_window: int = 0,
        outage_wait_s: float = 1800.0,
        on_breakers: Callable[[list[dict[str, Any]]], None] | None = None,
    ):
        self.workers = workers
        self.fixed = None if max_in_flight == "auto" else int(max_in_flight)
        self.retries = retries
        self.reorder_window = reorder_window  # 0: twice the in-flight target, at least 16
        self.loads = {
            key: PoolLoad(p.role, p.spec.num_actors, p.spec.batch_size) for key, p in workers.pools.items()
        }
        self.peak_in_flight = 0
        self.last_admitted = 0.0
        self.jobs_submitted = 0  # run() calls so far (any thread)
        self.items_submitted = 0
        self._count_lock = threading.Lock()
        self.jobs_ended = 0
        self._inbox: deque[tuple[str, UnitJob]] = deque()
        self._wake = threading.Event()
        self._jobs: list[UnitJob] = []  # admission order: the earliest unit's items first
        self._rollouts: dict[int, InFlight] = {}  # in flight, by rollout id
        self.away_s: float | None = None  # EWMA of a rollout's time between two edits
        self._traffic = PoolTraffic(
            workers, self.loads, self._rollouts, retries, self._answer, self._fail, outage_wait_s, on_breakers
        )
        # Batches (and replacements' set-ups) that answered, put here by Ray's completion
        # callbacks (`_watch`): the loop takes what answered without a ray.wait over every
        # batch out, which costs O(batches out) per answer (565 us at 4,000 refs, measured:
        # a dispatcher of thousands of GPUs spent most of its CPU there).
        self._answered: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._watched_starts: set[Any] = set()
        self._traffic.watch = self._watch
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

    def wants_unit(self, running: int, setting: int | str, most: int, unit_size: float = 1.0) -> bool:
        """Whether to start another unit (`run.concurrent_partitions`). With auto: while the
        rollouts in flight plus those still to come (started units' unadmitted pairs, and
        units still starting up at the mean unit size, `unit_size` before any has started)
        leave room in the budget, so a unit that is draining its tail leaves room that the
        next units fill, and units that take a while to start (a Ray task reading its
        sources) start several at a time, but no more than the budget needs plus one
        (each is a worker process to start); at most `most` run at once."""
        if setting != "auto":
            return running < int(setting)
        if running == 0:
            return True
        window = self.window()
        jobs = [j for j in list(self._jobs) if not j.held_back(window)]  # held back: room for another
        waiting = self._arriving()
        unadmitted = sum(len(j.items) - j.next_item for j in jobs) + sum(len(j.items) for j in waiting)
        starting = max(0, running - (self.jobs_submitted - self.jobs_ended))
        mean = self.items_submitted / self.jobs_submitted if self.jobs_submitted else unit_size
        coming = unadmitted + starting * max(mean, 1.0)
        # One unit beyond the budget: a unit takes a moment to start, so the next is ready
        # when room frees (with a small budget, one at a time would leave gaps).
        return running < most and len(self._rollouts) + coming < self.in_flight_target() + mean

    def feed_to(self, job: UnitJob) -> int:
        """How many of `job`'s items its unit should have fed (read and put in the object
        store). Sources are read only as far ahead as the build will admit them soon: the room
        in the budget plus a lead (for rollouts that end while a unit reads its next sources),
        shared out in admission order, not a read-ahead per unit (32 units reading the budget
        ahead each would hold 32 budgets of source images)."""
        target = self.in_flight_target()
        room = target - len(self._rollouts) + max(MIN_LEAD, target // 4)
        window = self.window()
        for j in [*list(self._jobs), *self._arriving()]:
            if j.cancelled:
                continue
            share = 0 if j.held_back(window) else max(0, min(len(j.items) - j.next_item, room))
            if j is job:
                return job.next_item + share
            room -= share
        return job.next_item

    def _arriving(self) -> list[UnitJob]:
        """Units submitted that the dispatcher's thread has not taken in yet."""
        return [job for what, job in list(self._inbox) if what == "submit"]

    def window(self) -> int:
        return self.reorder_window or max(16, 2 * self.in_flight_target())

    def start_job(
        self,
        items: Sequence[Any],
        make: Callable[[Any], Rollout],
        prepare: Callable[[Any], Any] | None = None,
        fed: int | None = None,
    ) -> UnitJob:
        """Hand over a unit's items; `make(prepare(item))` runs as each is admitted. With
        `fed`, only that many items have arrived: `feed` adds the next ones."""
        job = UnitJob(list(items), make, prepare, fed)  # its own list: admitted items are taken out
        with self._count_lock:  # unit threads submit at once
            self._post("submit", job)
            self.jobs_submitted += 1
            self.items_submitted += len(items)
        return job

    def feed(self, job: UnitJob, items: Sequence[Any]) -> None:
        start = job.available()
        for k, item in enumerate(items):
            job.items[start + k] = item
        job.fed = start + len(items)
        self._wake.set()

    def cancel(self, job: UnitJob) -> None:
        self._post("cancel", job)  # its rollouts leave the budget; late results are dropped

    def run(
        self,
        items: Sequence[Any],
        make: Callable[[Any], Rollout],
        on_done: Callable[[int, Trajectory], None],
        on_usage: Callable[[str, dict[str, float]], None] | None = None,
        prepare: Callable[[Any], Any] | None = None,
    ) -> dict[str, Any]:
        """Run `make(item)` for every item; `on_done(index, trajectory)` as each ends, in this
        thread (which fetches its turn images). Returns this unit's counters and its window's
        per-pool load."""
        job = self.start_job(items, make, prepare)
        try:
            while (end := deliver(job.events.get(), on_done, on_usage)) is None:
                pass
            return end
        except BaseException:
            self.cancel(job)
            raise

    def report(self) -> dict[str, Any]:
        """The whole build's load: per pool busy fraction, idle and dry seconds."""
        active = self._active_now()
        return {
            "max_in_flight": self.fixed if self.fixed is not None else "auto",
            "in_flight_target": self.in_flight_target(),
            "peak_in_flight": self.peak_in_flight,
            "in_flight": len(self._rollouts),
            "queued": self._traffic.queued(),
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

    def _post(self, what: str, job: UnitJob) -> None:
        if self._closed or self._failure is not None:
            raise RuntimeError(f"the rollout dispatcher is not running: {self._failure or 'closed'}")
        self._inbox.append((what, job))
        self._wake.set()

    # -- the dispatcher's thread ---------------------------------------------------------

    def _active_now(self) -> float:
        return self._active_s + (time.monotonic() - self._active_since if self._active_since else 0.0)

    def _set_active(self, active: bool) -> None:
        since = self._active_since
        if active == (since is not None):
            return
        if since is None:  # becoming active
            self._active_since = time.monotonic()
        else:
            self._active_s += time.monotonic() - since
            self._active_since = None
        for load in self.loads.values():
            load.set_active(active)

    def _loop(self) -> None:
        try:
            while not self._closed:
                self._take_inbox()
                self._admit()
                self._set_active(bool(self._rollouts))
                # Once every pair is admitted the build only drains.
                self._traffic.send(
                    draining=not self._inbox and all(j.next_item >= len(j.items) for j in self._jobs)
                )
                self._finish_jobs()
                if self.workers.metrics.due():
                    self._meter()
                # Replacements still setting up: a batch goes to one only once it has answered,
                # so one that Ray placed on a node that just died costs no request a retry.
                starting = {
                    ref: pool
                    for pool in self.workers.pools.values()
                    for ref, _ in list(pool.pending.values())
                }
                for ref in starting.keys() - self._watched_starts:
                    self._watched_starts.add(ref)
                    self._watch(ref)
                # A partial batch left to fill is sent on time, not at the next poll.
                fill_by = self._traffic.fill_by
                wait_s = POLL_S if fill_by is None else min(POLL_S, max(0.0, fill_by - time.monotonic()))
                if self._answered.empty():
                    self._wake.wait(wait_s)
                    self._wake.clear()
                ready = []
                with contextlib.suppress(queue.Empty):
                    while True:
                        ready.append(self._answered.get_nowait())
                if not ready and starting:
                    for pool in self.workers.pools.values():
                        pool.check_pending(time.monotonic())
                for ref in ready:
                    if ref in self._watched_starts:  # a replacement's set-up, if still pending
                        self._watched_starts.discard(ref)
                        if ref in starting:
                            starting[ref].settle(ref)
                    else:
                        self._traffic.collect(ref)
        except BaseException as err:  # a scheduler bug: every waiting unit fails with it
            self._failure = err
        with contextlib.suppress(Exception):  # the last second's counts (metrics only)
            self._meter()
        # Closed or failed: no unit may wait for an answer that will not come.
        waiting = self._jobs + self._arriving()
        reason = f"failed: {self._failure!r}" if self._failure else "closed"
        for job in waiting:
            job.events.put(UnitError(RuntimeError(f"the rollout dispatcher {reason}")))

    def _watch(self, ref: Any) -> None:
        """`ref` goes to `_answered`, and wakes the loop, once its object exists (a value or
        an error: `collect` and `settle` tell which)."""

        def answered(_: Any) -> None:
            self._answered.put(ref)
            self._wake.set()

        ref.future().add_done_callback(answered)

    def _meter(self) -> None:
        """The gauges and the counters' sums to Ray (at most every `metrics.FLUSH_S`)."""
        traffic = self._traffic
        pools = {
            key: (
                len(traffic.queues.get(key, ())) + len(traffic.parked.get(key, ())),
                load.outstanding,
                key in traffic.breakers and traffic.breakers[key].open,
            )
            for key, load in self.loads.items()
        }
        self.workers.metrics.flush(len(self._rollouts), self.in_flight_target(), pools)

    def _take_inbox(self) -> None:
        while self._inbox:
            what, job = self._inbox.popleft()
            if what == "submit":
                job.start = {key: load.totals() for key, load in self.loads.items()}
                job.active_at_start = self._active_now()
                self._jobs.append(job)
            else:
                self._drop(job)

    def _drop(self, job: UnitJob) -> None:
        job.cancelled = True
        if job in self._jobs:
            self._jobs.remove(job)
            self.jobs_ended += 1
        for rid in [rid for rid, r in self._rollouts.items() if r.job is job]:
            del self._rollouts[rid]
        self._traffic.forget(job)

    def _fail(self, job: UnitJob, err: BaseException) -> None:
        """The unit cannot go on: it hears why, and its rollouts leave the budget."""
        job.events.put(UnitError(err))
        self._drop(job)

    def notes(self) -> list[str]:
        """What the live table says of backends that are out (`breakers.Breaker.describe`)."""
        return self._traffic.notes()

    def _admit(self) -> None:
        if self._traffic.paused():  # a backend is out: nothing new starts until it is back
            return
        budget, window = self.in_flight_target(), self.window()
        for job in list(self._jobs):
            while (
                len(self._rollouts) < budget
                and job.next_item < job.available()
                and not job.held_back(window)
                and not job.cancelled
            ):
                index = job.next_item
                job.next_item += 1
                # Taken out: an admitted pair lives with its rollout (`InFlight`), so its source
                # image leaves the object store when the rollout ends, not when its unit does.
                item, job.items[index] = job.items[index], None
                if item is None:
                    continue
                try:
                    pair = job.prepare(item) if job.prepare else item
                    if isinstance(pair, Trajectory):  # settled before it started (unreadable source)
                        job.events.put(TrajectoryDone(index, pair))
                        continue
                    gen = job.make(pair)
                except Exception as err:  # a bad item fails its unit, not the build
                    self._fail(job, err)
                    break
                rid = self._next_rid
                self._next_rid += 1
                job.live += 1
                job.admit(index)
                self._rollouts[rid] = InFlight(job, index, pair, gen)
                self.last_admitted = time.monotonic()
                self._advance(rid, None, first=True)
        self.peak_in_flight = max(self.peak_in_flight, len(self._rollouts))

    def _answer(self, rid: int, value: Any) -> None:
        """A call's result for a rollout: the next step, or a restart when an image it needed
        was lost with its node."""
        if isinstance(value, InputLost):
            self._restart(rid, value)
        else:
            self._advance(rid, value)

    def _restart(self, rid: int, lost: InputLost) -> None:
        """An image this rollout needs was lost with its node: start the rollout again from
        its source (rollouts are deterministic, so its trajectory is the same)."""
        rollout = self._rollouts[rid]
        if rollout.restarts >= self.retries:
            detail = f"an image was lost {rollout.restarts + 1} times: {lost.detail}"
            self._advance(rid, TransientBackendError(detail))
            return
        rollout.restarts += 1
        rollout.job.counters["restarts"] += 1
        rollout.gen.close()
        rollout.gen = rollout.job.make(rollout.pair)
        self._advance(rid, None, first=True)

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
            job.events.put(UnitEnd({**job.counters, "in_flight_target": target, "pools": pools}))

    def _advance(self, rid: int, value: Any, first: bool = False) -> None:
        rollout = self._rollouts[rid]
        job, index = rollout.job, rollout.index
        try:
            call = next(rollout.gen) if first else rollout.gen.send(value)
        except StopIteration as stop:
            del self._rollouts[rid]
            job.live -= 1
            job.end(index)
            traj: Trajectory = stop.value
            failed = traj.stop_reason == "failed"
            progress().add(pairs_done=1, turns=len(traj.turns), failed=int(failed))
            self.workers.metrics.count(ROLLOUTS, 1, (("outcome", "failed" if failed else "done"),))
            self.workers.metrics.count(TURNS, len(traj.turns))
            job.events.put(TrajectoryDone(index, traj))
            return
        except Exception as err:  # a bug in one rollout fails its unit, not the build
            self._fail(job, err)
            return
        key = (call.role, call.backend)
        if key not in self.workers.pools:
            self._advance(rid, BackendError(f"no {call.role} named {call.backend!r} in this build"))
            return
        now = time.monotonic()
        self._traffic.enqueue(key, Queued(rid, call))
        rollout.queued_at = now
        if call.role == Role.EDITOR and rollout.left_editor is not None:
            self.away_s = ewma(self.away_s, now - rollout.left_editor)
            rollout.left_editor = None
