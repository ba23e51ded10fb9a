"""Two ways to drive the dispatcher: `run_units` (a build's generate units, started as
room in the budget frees up, in any finishing order) and `run_rollouts` (one batch of
rollouts, for tests and benchmarks that want the old one-call shape)."""

from __future__ import annotations

import concurrent.futures
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from editthinker_data.core.schema import Trajectory
from editthinker_data.distributed.pools import Workers
from editthinker_data.distributed.scheduler import POLL_S, Dispatcher
from editthinker_data.pipeline.loop import Rollout


def run_units(
    partitions: Sequence[int],
    start: Callable[[int], Any],
    done: Callable[[Any], concurrent.futures.Future],
    finish: Callable[[int, Any], None],
    *,
    wants: Callable[[int], bool],
    tick: Callable[[], None] | None = None,
) -> None:
    """Start a unit per partition (`start(p)` returns a handle, `done(handle)` its future)
    whenever `wants(running)` says so (the dispatcher's `wants_unit`), and `finish(p, handle)`
    each as it ends, in any order: a slow unit never holds up the next one's start. `tick`
    runs between waits (the live progress)."""
    todo, running = deque(partitions), {}
    while todo or running:
        if todo and wants(len(running)):
            p = todo.popleft()
            running[p] = start(p)
            continue
        futures = {done(handle): p for p, handle in running.items()}
        finished, _ = concurrent.futures.wait(futures, timeout=POLL_S * 4, return_when="FIRST_COMPLETED")
        for future in finished:
            p = futures[future]
            finish(p, running.pop(p))
        if tick is not None:
            tick()


def run_rollouts(
    workers: Workers,
    items: Sequence[Any],
    make_rollout: Callable[[Any], Rollout],
    on_done: Callable[[int, Trajectory], None],
    *,
    max_in_flight: int | str = "auto",
    retries: int,
    on_usage: Callable[[str, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """One unit on its own dispatcher (tests, benchmarks). Returns its counters."""
    with Dispatcher(workers, max_in_flight=max_in_flight, retries=retries) as dispatcher:
        return dispatcher.run(items, make_rollout, on_done, on_usage)
