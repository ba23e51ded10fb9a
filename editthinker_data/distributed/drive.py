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

# Generate units at once, at most (each a worker process, and a thread in the flow waiting
# for its report). A unit draining its tail holds only its last few rollouts, so with small
# partitions (the demo's 12 pairs) many units are in their tails at any time: at 16, the
# units still admitting could not fill an in-flight budget of about 100, and the editors
# idled 3-4% of the time mid-build (bench/scheduler.py, 2,000 pairs: 93.4% -> 96.6% busy
# before the drain at 32). `wants_unit` starts a unit only when the budget has room.
MAX_UNITS = 32


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
