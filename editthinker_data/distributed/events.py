"""What the dispatcher tells a unit, in order, through the unit's queue (and, for a unit on
another worker, in the answers to its polls). Frozen dataclasses handled with `match`: a kind
nobody handles is an error, never mistaken for the unit's end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from editthinker_data.core.schema import Trajectory


@dataclass(frozen=True)
class TrajectoryDone:
    """A rollout ended: `index` is its pair's position in the unit's items."""

    index: int
    trajectory: Trajectory


@dataclass(frozen=True)
class BatchUsage:
    """This unit's share of one batch's cost, for `backend` ("role/name")."""

    backend: str
    cost: dict[str, float]


@dataclass(frozen=True)
class UnitError:
    """The unit cannot go on (a bug in a rollout, a lost object, the dispatcher stopped)."""

    error: BaseException


@dataclass(frozen=True)
class UnitEnd:
    """Every rollout of the unit ended: its counters and its window's per-pool load."""

    counters: dict[str, Any]


Event = TrajectoryDone | BatchUsage | UnitError | UnitEnd
