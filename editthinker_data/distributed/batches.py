"""The dispatcher's traffic with the actor pools: each pool's queued calls go out in batches
to its least-loaded ready actor; edits come back as object references (each its own object,
never fetched here), other results as values with the batch's cost; a dead actor is
replaced and its requests retried. A mixin of `scheduler.Dispatcher`, which owns the state."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import ray

from editthinker_data.backends import TransientBackendError
from editthinker_data.core.progress import calls_counter
from editthinker_data.core.progress import current as progress
from editthinker_data.core.stats import BATCH_SHARE
from editthinker_data.distributed.load import split_cost
from editthinker_data.distributed.pools import DEATHS
from editthinker_data.distributed.refs import InputLost

log = logging.getLogger(__name__)


class BatchTraffic:
    def _dispatch(self) -> None:
        now = time.monotonic()
        # Once every pair is admitted the build only drains: nothing waits to fill a batch
        # then, since each turn's wait would lengthen the last rollouts' chain.
        draining = not self._inbox and all(j.next_item >= len(j.items) for j in self._jobs)
        self.fill_by = None  # when the earliest partial batch left to fill must go
        for key, q in self._queues.items():
            pool, load = self.workers.pools[key], self.loads[key]
            while q:
                waited = now - self._queued_at.get(q[0][0], now)
                # Other rollouts may join this queue. Editors never wait: they are what the
                # build keeps busy, and each has its next batch queued while one runs.
                loaded = key[0] != "editor" and not draining and len(self._gens) > len(q)
                ai = load.pick(len(q), usable=pool.ready, waited=waited, loaded=loaded)
                if ai is None:
                    idle = any(n == 0 and pool.ready(i) for i, n in enumerate(load.outstanding))
                    if loaded and idle and waited < load.fill_wait():  # an idle actor lets it fill
                        due = now - waited + load.fill_wait()
                        self.fill_by = due if self.fill_by is None else min(self.fill_by, due)
                    break
                batch = [q.popleft() for _ in range(min(pool.spec.batch_size, len(q)))]
                actor = pool.actors[ai]
                requests = [c.request for _, c, _ in batch]
                if key[0] == "editor":  # each edit its own object: passed on, never fetched here
                    *outs, ref = actor.run_split.options(num_returns=len(batch) + 1).remote(requests)
                    self._futures[ref] = (key, ai, actor, batch, outs)
                else:
                    ref = actor.run_counted.remote(requests)
                    self._futures[ref] = (key, ai, actor, batch, None)
                load.sent(ai, len(batch))
                # Counted once, for the unit of its first request: a batch may carry several units'.
                self._gens[batch[0][0]][0].counters["batches"] += 1
                for rid, _, _ in batch:
                    self._gens[rid][0].counters["requests"] += 1

    def _collect(self, ref: Any) -> None:
        key, ai, actor, sent, outs = self._futures.pop(ref)
        batch = [e for e in sent if e[0] in self._gens]  # a cancelled unit's results are dropped
        try:
            if outs is None:
                results, cost, seconds = ray.get(ref)
            else:  # errors and lost inputs by position; the edits stay references
                notes, cost, seconds = ray.get(ref)
                results = [notes.get(i, out) for i, out in enumerate(outs)]
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
        shares: dict[Any, int] = defaultdict(int)
        for rid, _, _ in batch:
            shares[self._gens[rid][0]] += 1
        backend = f"{key[0]}/{key[1]}"
        self.workers.pools[key].tally(actor, cost)
        for job, part in split_cost({**cost, BATCH_SHARE: 1}, shares).items():
            job.events.put(("usage", backend, part))
        progress().add(**{calls_counter(key[0]): len(batch)})
        for (rid, _, _), result in zip(sent, results, strict=True):
            if key[0] == "editor":
                self._left_editor[rid] = now
            if rid not in self._gens:  # an earlier result may have failed (and dropped) its unit
                continue
            if isinstance(result, InputLost):
                self._restart(rid, result)
            else:
                self._advance(rid, result)

    def _actor_died(self, key: tuple[str, str], ai: int, actor: Any, batch: list, err: BaseException) -> None:
        pool = self.workers.pools[key]
        # What the batch cost died with it: counted as lost (its calls may have reached the endpoint).
        pool.lost(actor)
        log.warning(
            "%s %r: an actor died (%s: %s); its %d requests go back to the pool",
            *key, type(err).__name__, str(err).splitlines()[0] if str(err) else "", len(batch),
        )  # fmt: skip
        shares: dict[Any, int] = defaultdict(int)
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
