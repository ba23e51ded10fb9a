"""One batch of rollouts on a dispatcher of its own, in this process: for tests and
benchmarks that measure the dispatcher without a build around it (a build's units go
through the executor, `distributed/build.py`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from editthinker_data.core.schema import Trajectory
from editthinker_data.distributed.pools import Workers
from editthinker_data.distributed.scheduler import Dispatcher
from editthinker_data.pipeline.loop import Rollout


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
