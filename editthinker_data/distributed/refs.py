"""Images travel between actors as object references, never through the process that
schedules them. A request's image fields may be `ObjectRef`s: the actor that serves the
request fetches them (`resolve`); an editor returns each edit as its own object, so the
scheduler forwards references it never reads; the generate unit that writes a trajectory
fetches its turn images (`materialize`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import ray

from editthinker_data.core.schema import Trajectory
from editthinker_data.distributed.events import BatchUsage, Event, TrajectoryDone, UnitEnd, UnitError

if TYPE_CHECKING:
    from PIL import Image

# The object (or its owner, or the node that held it) is gone: the request that needed it
# cannot run here, but its rollout can start again from its source image.
LOST = (
    ray.exceptions.ObjectLostError,
    ray.exceptions.OwnerDiedError,
    ray.exceptions.ObjectFetchTimedOutError,
)


@dataclasses.dataclass(frozen=True)
class InputLost:
    """In place of a result: an image the request refers to was lost with its node."""

    detail: str


def _ref_fields(request: Any) -> list[str]:
    if not dataclasses.is_dataclass(request):
        return []
    return [
        f.name for f in dataclasses.fields(request) if isinstance(getattr(request, f.name), ray.ObjectRef)
    ]


def resolve(requests: list[Any]) -> tuple[list[Any], dict[int, InputLost]]:
    """The requests with their referenced images fetched, and the positions whose images
    are lost (those requests must not run)."""
    wanted = [(i, name) for i, r in enumerate(requests) for name in _ref_fields(r)]
    if not wanted:
        return requests, {}
    refs = [getattr(requests[i], name) for i, name in wanted]
    try:
        values: list[Any] = ray.get(refs)
    except LOST:  # find which: fetch one by one
        values = []
        for ref in refs:
            try:
                values.append(ray.get(ref))
            except LOST as err:
                values.append(
                    InputLost(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
                )
    lost: dict[int, InputLost] = {}
    changes: dict[int, dict[str, Any]] = {}
    for (i, name), value in zip(wanted, values, strict=True):
        if isinstance(value, InputLost):
            lost[i] = value
        changes.setdefault(i, {})[name] = value
    out = [
        dataclasses.replace(r, **changes[i]) if i in changes and i not in lost else r
        for i, r in enumerate(requests)
    ]
    return out, lost


def materialize(traj: Trajectory) -> Trajectory:
    """The trajectory with its turn images fetched (raises if one was lost)."""
    # Turn.image is typed as the image it stands for; here some are references to one.
    refs: list[ray.ObjectRef[Image.Image]] = [
        cast("ray.ObjectRef[Image.Image]", t.image) for t in traj.turns if isinstance(t.image, ray.ObjectRef)
    ]
    if not refs:
        return traj
    images = iter(ray.get(refs))
    turns = [
        dataclasses.replace(t, image=next(images)) if isinstance(t.image, ray.ObjectRef) else t
        for t in traj.turns
    ]
    return dataclasses.replace(traj, turns=turns)


def deliver(
    event: Event,
    on_done: Callable[[int, Trajectory], None],
    on_usage: Callable[[str, dict[str, float]], None] | None,
    keep: Callable[[int, Trajectory], Trajectory] = lambda k, traj: traj,
) -> dict[str, Any] | None:
    """One of a unit's events from the dispatcher: a finished trajectory (to `on_done`, turn
    images fetched, then `keep`), a batch's cost (to `on_usage`), an error (raised), or the
    end (its counters, returned; None for the others)."""
    match event:
        case TrajectoryDone(index, traj):
            on_done(index, keep(index, materialize(traj)))
        case BatchUsage(backend, cost):
            if on_usage is not None:
                on_usage(backend, cost)
        case UnitError(error):
            raise error
        case UnitEnd(counters):
            return counters
        case _:
            raise TypeError(f"unknown dispatcher event {event!r}")
    return None
