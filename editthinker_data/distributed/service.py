"""The build's dispatcher as a Ray actor, so generate units can run on any cluster worker.

The actor owns the backend actor pools and the one in-flight budget for the whole build
(`scheduler.Dispatcher`); units on other workers hand it their rollouts through
`remote.RemoteRunner` and get back small events: finished trajectories whose turn images
are object references, and each batch's cost. It runs on the driver's node (the head, in a
cluster), so losing a worker node never takes the scheduler with it; it never reads an image.

It owns every edit (it submits the editor calls), and Ray frees an object's entry in its
owner's in-process store only when the owner itself lets go of it last: when the last to let
go is a borrower (the unit that got the reference in a poll's answer), the entry stays for the
owner's life. Measured: one entry per turn, the whole edit for images under Ray's 100 KiB
inline limit, about 20 MB per 1,000 pairs in `bench/scheduler.py`. So a poll's answer is kept
here until the unit has let go of it (its next poll, or `release` after its last), and
`LET_GO_S` longer, since Ray tells the owner of a borrower's release asynchronously.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from editthinker_data.backends import BackendContext
from editthinker_data.config import BuildConfig
from editthinker_data.core.progress import current as progress
from editthinker_data.distributed.breaker_record import open_record
from editthinker_data.distributed.events import Event, TrajectoryDone, UnitEnd, UnitError
from editthinker_data.distributed.jobs import UnitJob
from editthinker_data.distributed.pools import Workers
from editthinker_data.distributed.scheduler import Dispatcher
from editthinker_data.pipeline.loop import Rollout

CONCURRENCY = 64  # methods at once: each running unit polls while others feed
LINGER_S = 0.1
LET_GO_S = 1.0  # how long a unit's handled answer is still kept (see the module docstring)


class DispatchService:
    def __init__(
        self, cfg: BuildConfig, context: BackendContext | None, max_in_flight: int | str, retries: int
    ):
        self.workers = Workers(cfg, context)
        self.started = self.workers.start()  # a set-up failure raises here, before any unit runs
        self.record = open_record(context)  # the open breakers, in the output, for `status`
        self.dispatcher = Dispatcher(
            self.workers,
            max_in_flight=max_in_flight,
            retries=retries,
            outage_wait_s=cfg.run.outage_wait_s,
            on_breakers=self.record.publish if self.record else None,
        )
        self.jobs: dict[int, UnitJob] = {}
        self.answered: dict[int, list[Event]] = {}  # each unit's last events, until it lets go
        self.let_go: deque[tuple[float, list[Event]]] = deque()  # handled answers, by when
        self.lock = threading.Lock()
        self.next_job = 0

    def actors(self) -> int:
        return len(self.started)

    def submit(self, count: int, make: Callable[[Any], Rollout]) -> tuple[int, int]:
        """A unit of `count` rollouts, whose pairs arrive through `feed`; returns its id and
        how many pairs to feed first."""
        job = self.dispatcher.start_job([None] * count, make, None, fed=0)
        with self.lock:
            jid, self.next_job = self.next_job, self.next_job + 1
            self.jobs[jid] = job
        return jid, self.dispatcher.feed_to(job)

    def feed(self, jid: int, pairs: list[Any]) -> None:
        """The unit's next pairs (images as references; None for a pair it settled itself)."""
        self.dispatcher.feed(self.jobs[jid], pairs)

    def poll(self, jid: int, timeout_s: float) -> tuple[list[Event], int]:
        """The unit's events so far (waiting up to `timeout_s` for one), and how many of its
        pairs it should have fed by now (`Dispatcher.feed_to`)."""
        self._handled(jid)  # the unit fetched what it was sent last, and let go of it
        job = self.jobs[jid]
        events = []
        try:
            events.append(_slim(job.events.get(timeout=timeout_s)))
            # News comes in bursts (a batch finishes many rollouts): take what follows within
            # LINGER_S in the same answer, so a unit's polls stay few.
            deadline = time.monotonic() + LINGER_S
            while (left := deadline - time.monotonic()) > 0:
                events.append(_slim(job.events.get(timeout=left)))
        except queue.Empty:
            pass
        if any(isinstance(e, UnitEnd | UnitError) for e in events):
            with self.lock:
                self.jobs.pop(jid, None)
        if events:
            self.answered[jid] = events
        return events, self.dispatcher.feed_to(job)

    def release(self, jid: int) -> None:
        """The unit has handled its last answer and let go of its references."""
        self._handled(jid)

    def _handled(self, jid: int) -> None:
        now = time.monotonic()
        with self.lock:
            events = self.answered.pop(jid, None)
            if events:
                self.let_go.append((now + LET_GO_S, events))
            while self.let_go and self.let_go[0][0] <= now:
                self.let_go.popleft()

    def cancel(self, jid: int) -> None:
        self._handled(jid)
        with self.lock:
            job = self.jobs.pop(jid, None)
        if job is not None:
            self.dispatcher.cancel(job)

    def wants_unit(self, running: int, setting: int | str, most: int, unit_size: float = 1.0) -> bool:
        return self.dispatcher.wants_unit(running, setting, most, unit_size)

    def progress(self) -> dict[str, int]:
        return progress().counts()

    def notes(self) -> list[str]:
        return self.dispatcher.notes()

    def report(self) -> dict[str, Any]:
        return self.dispatcher.report()

    def last_admitted(self) -> float:
        """When the last rollout was admitted (this machine's monotonic clock; benchmarks)."""
        return self.dispatcher.last_admitted

    def info(self) -> list[dict[str, Any]]:
        return self.workers.info()

    def close(self) -> None:
        self.dispatcher.close()
        self.workers.stop()
        if self.record is not None:
            self.record.close()


def _slim(event: Event) -> Event:
    """A finished trajectory goes back without its pair's source image: the unit puts back
    the pair it holds (`remote.RemoteRunner`), and each object reference in an answer costs
    its pickling and Ray's borrower bookkeeping on both sides."""
    if isinstance(event, TrajectoryDone):
        traj = event.trajectory
        return TrajectoryDone(
            event.index, dataclasses.replace(traj, pair=dataclasses.replace(traj.pair, image=None))
        )
    return event


class DispatcherLost(RuntimeError):
    """The build's dispatcher actor died while a unit talked to it: the unit stops, and its
    retry resumes from its journal with the dispatcher the flow started again."""


def service_name(cfg: BuildConfig) -> str:
    """The dispatcher's actor name: units find it (and its replacement) by this name."""
    return f"dispatch-{cfg.fingerprint()[:8]}-{id(cfg):x}"


def find_service(name: str, wait_s: float) -> Any:
    """The live dispatcher named `name`, waiting up to `wait_s` while it is being started
    again after a death."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            service = ray.get_actor(name)
            ray.get(service.actors.remote(), timeout=60)  # alive, and done setting up
            return service
        except (ValueError, ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            # not registered yet, or the dead one's name not yet released
            if time.monotonic() >= deadline:
                raise DispatcherLost(
                    f"no dispatcher named {name!r} came up within {wait_s:.0f}s; the build's driver "
                    "starts it again after a death, so the driver itself is gone or stuck"
                ) from None
            time.sleep(0.5)


def start_service(
    cfg: BuildConfig, context: BackendContext | None, timeout_s: float = 900.0, name: str | None = None
) -> tuple[Any, int]:
    """The dispatcher actor on this process's node, once its backend actors are all set up;
    returns it and the number of backend actors."""
    here = ray.get_runtime_context().get_node_id()
    service: Any = (  # an actor handle: Ray's hints do not type its methods' .remote
        ray.remote(DispatchService)
        .options(
            num_cpus=0,
            max_concurrency=CONCURRENCY,
            max_restarts=0,
            name=name or service_name(cfg),
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
        )
        .remote(cfg, context, cfg.run.max_in_flight, cfg.run.backend_retries)
    )
    try:
        actors = ray.get(service.actors.remote(), timeout=timeout_s)
    except ray.exceptions.RayActorError as err:  # its __init__ raised: a backend did not set up
        cause = getattr(err, "cause", None) or err
        raise RuntimeError(f"a backend actor failed to start: {cause}") from err
    return service, actors


def stop_service(service: Any) -> None:
    """Stop the backend actors, then the dispatcher actor (its node may be gone already)."""
    with contextlib.suppress(ray.exceptions.RayError):
        ray.get(service.close.remote(), timeout=60)
    ray.kill(service, no_restart=True)
