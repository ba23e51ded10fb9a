"""A build's Ray runtime: the cluster it starts or joins, the Ray executor, and, for as long
as generate runs, the dispatcher actor that owns the backend actor pools and the build's one
in-flight budget. Generate units run on cluster workers and hand it their rollouts, so the
driver never holds an image; when generate ends the backend actors go, freeing their GPUs
for the next build."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray

from editthinker_data.config import BuildConfig
from editthinker_data.core.progress import current as progress
from editthinker_data.distributed.executor import RayExecutor
from editthinker_data.distributed.load import load_lines
from editthinker_data.distributed.remote import RemoteRunner
from editthinker_data.distributed.runtime import ensure_ray, shutdown
from editthinker_data.distributed.service import DispatcherLost, service_name, start_service, stop_service
from editthinker_data.execution.base import Executor
from editthinker_data.execution.runtime import Backends, BackendSummary
from editthinker_data.stages.base import backend_context

log = logging.getLogger(__name__)

# Generate units at once, at most (each a worker process, and a thread in the flow waiting
# for its report). A unit draining its tail holds only its last few rollouts, so with small
# partitions (the demo's 12 pairs) many units are in their tails at any time: at 16, the
# units still admitting could not fill an in-flight budget of about 100, and the editors
# idled 3-4% of the time mid-build. `wants_unit` starts a unit only when the budget has room.
MAX_UNITS = 32


MAX_DISPATCHER_RESTARTS = 3  # in one build; a dispatcher that keeps dying has a cause to fix


class Supervisor:
    """The build's dispatcher actor, started again under the same name when it dies: its
    backend actors die with it (it owns them) and come up again with it; its units fail with
    `DispatcherLost` and their retries resume from their journals against the new one, and
    every edit they had made is still in the edit store. So a dead dispatcher costs each
    running unit a retry, not the build."""

    def __init__(self, cfg: BuildConfig, context: Any):
        self.cfg, self.context = cfg, context
        self.name = service_name(cfg)
        self.restarts = 0
        self.service, self.actors = start_service(cfg, context, name=self.name)

    def call(self, method: str, *args: Any) -> Any:
        """`service.<method>(*args)`, on the dispatcher alive now."""
        try:
            return ray.get(getattr(self.service, method).remote(*args))
        except ray.exceptions.RayActorError as err:
            self._restart(err)
            return ray.get(getattr(self.service, method).remote(*args))

    def _restart(self, err: BaseException) -> None:
        self.restarts += 1
        first_line = str(err).splitlines()[0] if str(err) else ""
        if self.restarts > MAX_DISPATCHER_RESTARTS:
            raise DispatcherLost(
                f"the build's dispatcher actor died {self.restarts} times (last: {type(err).__name__}: "
                f"{first_line}); see its log under the Ray session's logs folder, then run the same "
                "command again: finished units and journaled trajectories are kept"
            ) from None
        log.warning(
            "the dispatcher died (%s: %s); starting it again (%d of %d): its units resume from their journals",
            type(err).__name__, first_line, self.restarts, MAX_DISPATCHER_RESTARTS,
        )  # fmt: skip
        # A dead actor keeps its name while a handle to it lives: killing the handle frees it.
        with contextlib.suppress(Exception):
            ray.kill(self.service, no_restart=True)
        deadline = time.monotonic() + 30
        while True:  # and Ray frees it a moment later
            try:
                self.service, self.actors = start_service(self.cfg, self.context, name=self.name)
                return
            except ValueError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        stop_service(self.service)


class DispatcherAdmission:
    """The generate stage's admission: the dispatcher starts the next unit when the build's
    in-flight budget has room for it (`Dispatcher.wants_unit`), so one budget serves every
    unit and a unit's tail never idles the editors."""

    def __init__(self, supervisor: Supervisor, setting: int | str, unit_size: float):
        self.supervisor, self.setting, self.unit_size = supervisor, setting, unit_size

    def __call__(self, running: int) -> bool:
        wants: bool = self.supervisor.call("wants_unit", running, self.setting, MAX_UNITS, self.unit_size)
        return wants


class RayRuntime:
    def __init__(self, cfg: BuildConfig, output: str, state_dir: str):
        self.cfg, self.output, self.state_dir = cfg, output, state_dir
        self.executor: Executor = RayExecutor(workers=MAX_UNITS)
        self._started = False

    def __enter__(self) -> RayRuntime:
        self._started = ensure_ray(self.cfg.run.ray_address, self.cfg.run.num_cpus, Path(self.state_dir))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            shutdown()

    @contextlib.contextmanager
    def backends(self, pairs_per_unit: float) -> Iterator[Backends]:
        supervisor = Supervisor(self.cfg, backend_context(self.cfg, self.output, self.state_dir))

        def tick() -> None:
            progress().mirror("dispatcher", supervisor.call("progress"))
            progress().set_notes("dispatcher", supervisor.call("notes"))

        def summary() -> BackendSummary:
            tick()
            scheduler = supervisor.call("report")
            return BackendSummary(supervisor.call("info"), scheduler, load_lines(scheduler))

        try:
            yield Backends(
                runner=RemoteRunner(supervisor.name),
                admit=DispatcherAdmission(supervisor, self.cfg.run.concurrent_partitions, pairs_per_unit),
                actors=supervisor.actors,
                tick=tick,
                summary=summary,
            )
        finally:
            supervisor.stop()  # the backend actors' GPUs are free for the next stage
