"""The rollout runner: what the generate stage hands a partition's pairs to. Three run
today: the plain in-process loop (`execution/local_rollouts.py`), the Ray dispatcher in one
process (`distributed/drive.py`, tests and benchmarks) and the remote runner of a unit on a
cluster worker (`distributed/remote.py`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from editthinker_data.core.schema import SourcePair, Trajectory
from editthinker_data.pipeline.loop import Rollout

OnDone = Callable[[int, Trajectory], None]  # (index in items, the finished trajectory)
OnUsage = Callable[[str, dict[str, float]], None]  # ("role/backend", one batch's cost)
# A pair made ready to run (its source image read), or settled with a failed trajectory.
Prepare = Callable[[SourcePair], SourcePair | Trajectory]


class RolloutRunner(Protocol):
    def __call__(
        self,
        items: Sequence[SourcePair],
        make: Callable[[SourcePair], Rollout],
        on_done: OnDone,
        on_usage: OnUsage | None = None,
        prepare: Prepare | None = None,
    ) -> dict[str, Any]:
        """Run `make(prepare(pair))` for every pair, in any order and as many at once as the
        runner likes; report each end to `on_done` and each batch's cost to `on_usage` as they
        happen; return the runner's counters."""
        ...
