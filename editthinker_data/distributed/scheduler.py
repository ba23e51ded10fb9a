"""Keeps many think-while-edit rollouts in flight over the actor pools.

Each rollout is a generator of backend calls (`loop.rollout`). The scheduler queues calls
per pool, sends them in batches (the pool's batch_size) to actors with spare capacity,
and feeds results back as they arrive, so editors keep working while other trajectories
wait on the expert or the scorer. An actor that dies is replaced; its requests are
retried up to `retries` times, then delivered as a TransientBackendError (the trajectory
is left unfinished, and a rerun retries it). A replacement gets no batch until its set-up
has answered, so one that Ray placed on a node that just died costs no request a retry.

Each batch comes back with what it cost (the backend's counter deltas), handed to
`on_usage(backend, cost)` as it arrives, so usage is kept with the unit (journal, marker),
not with actors that a crash or a replacement takes away.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from typing import Any

import ray

from editthinker_data.backends import BackendError, TransientBackendError
from editthinker_data.core.progress import current as progress
from editthinker_data.core.schema import Trajectory
from editthinker_data.distributed.pools import DEATHS, Workers
from editthinker_data.pipeline.loop import Call, Rollout

PER_ACTOR_OUTSTANDING = 2  # one batch running, one queued at the actor: no idle gap
START_POLL_S = 5.0  # how often to check on replacements that Ray has not placed yet
log = logging.getLogger(__name__)


def run_rollouts(
    workers: Workers,
    items: Sequence[Any],
    make_rollout: Callable[[Any], Rollout],
    on_done: Callable[[int, Trajectory], None],
    *,
    max_in_flight: int,
    retries: int,
    on_usage: Callable[[str, dict[str, float]], None] | None = None,
) -> dict[str, int]:
    """Run `make_rollout(item)` for every item; `on_done(index, trajectory)` as each ends.
    Returns counters (calls, retries, actor replacements)."""
    gens: dict[int, Rollout] = {}
    queues: dict[tuple[str, str], deque[tuple[int, Call, int]]] = defaultdict(deque)
    busy: dict[tuple[tuple[str, str], int], int] = defaultdict(int)
    futures: dict[Any, tuple[tuple[str, str], int, Any, list[tuple[int, Call, int]]]] = {}
    counters = {"batches": 0, "requests": 0, "retries": 0, "actors_replaced": 0}
    next_item = 0

    def advance(rid: int, value: Any, first: bool = False) -> None:
        gen = gens[rid]
        try:
            call = next(gen) if first else gen.send(value)
        except StopIteration as stop:
            del gens[rid]
            traj: Trajectory = stop.value
            progress().add(pairs_done=1, turns=len(traj.turns), failed=int(traj.stop_reason == "failed"))
            on_done(rid, traj)
            return
        key = (call.role, call.backend)
        if key not in workers.pools:
            advance(rid, BackendError(f"no {call.role} named {call.backend!r} in this build"))
            return
        queues[key].append((rid, call, 0))

    def dispatch() -> None:
        for key, queue in queues.items():
            pool = workers.pools[key]
            for ai, actor in enumerate(pool.actors):
                while pool.ready(ai) and queue and busy[(key, ai)] < PER_ACTOR_OUTSTANDING:
                    batch = [queue.popleft() for _ in range(min(pool.spec.batch_size, len(queue)))]
                    ref = actor.run_counted.remote([c.request for _, c, _ in batch])
                    futures[ref] = (key, ai, actor, batch)
                    busy[(key, ai)] += 1
                    counters["batches"] += 1
                    counters["requests"] += len(batch)

    while True:
        while len(gens) < max_in_flight and next_item < len(items):
            rid = next_item
            next_item += 1
            gens[rid] = make_rollout(items[rid])
            advance(rid, None, first=True)
        dispatch()
        starting = {ref: pool for pool in workers.pools.values() for ref, _ in list(pool.pending.values())}
        if not futures and not starting:
            if gens or next_item < len(items):
                continue
            break
        ready, _ = ray.wait([*futures, *starting], num_returns=1, timeout=START_POLL_S if starting else None)
        if not ready:  # only replacements are awaited, and none came up yet
            for pool in workers.pools.values():
                pool.check_pending(time.monotonic())
        for ref in ready:
            if ref in starting:  # a replacement came up (or died first)
                starting[ref].settle(ref)
                continue
            key, ai, actor, batch = futures.pop(ref)
            busy[(key, ai)] -= 1
            pool = workers.pools[key]
            try:
                results, cost = ray.get(ref)
            except DEATHS as err:
                # The actor, its process or its node is gone, and with it what this batch
                # cost: counted as lost (its calls may have reached the endpoint).
                pool.lost(actor)
                log.warning(
                    "%s %r: an actor died (%s: %s); its %d requests go back to the pool",
                    *key, type(err).__name__, str(err).splitlines()[0] if str(err) else "", len(batch),
                )  # fmt: skip
                if on_usage is not None:
                    on_usage(f"{key[0]}/{key[1]}", {"lost_batches": 1, "lost_requests": len(batch)})
                if pool.replace(ai, actor, type(err).__name__):
                    counters["actors_replaced"] += 1
                for rid, call, attempts in batch:
                    if attempts < retries:
                        counters["retries"] += 1
                        queues[key].append((rid, call, attempts + 1))
                    else:
                        advance(
                            rid,
                            TransientBackendError(
                                f"{key[0]} {key[1]!r} actor died {attempts + 1} times: {type(err).__name__}"
                            ),
                        )
                continue
            pool.tally(actor, cost)
            if on_usage is not None:
                on_usage(f"{key[0]}/{key[1]}", cost)
            progress().add(**{f"{key[0]}_calls": len(batch)})
            for (rid, _, _), result in zip(batch, results, strict=True):
                advance(rid, result)
    return counters
