"""A build's Ray runtime: the cluster it starts or joins, the Ray executor, and, for as long
as generate runs, the dispatcher actor that owns the backend actor pools and the build's one
in-flight budget. Generate units run on cluster workers and hand it their rollouts, so the
driver never holds an image; when generate ends the backend actors go, freeing their GPUs
for the next build."""

from __future__ import annotations

import contextlib
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
from editthinker_data.distributed.service import start_service, stop_service
from editthinker_data.execution.base import Executor
from editthinker_data.execution.runtime import Backends, BackendSummary
from editthinker_data.stages.base import backend_context

# Generate units at once, at most (each a worker process, and a thread in the flow waiting
# for its report). A unit draining its tail holds only its last few rollouts, so with small
# partitions (the demo's 12 pairs) many units are in their tails at any time: at 16, the
# units still admitting could not fill an in-flight budget of about 100, and the editors
# idled 3-4% of the time mid-build. `wants_unit` starts a unit only when the budget has room.
MAX_UNITS = 32


class DispatcherAdmission:
    """The generate stage's admission: the dispatcher starts the next unit when the build's
    in-flight budget has room for it (`Dispatcher.wants_unit`), so one budget serves every
    unit and a unit's tail never idles the editors."""

    def __init__(self, service: Any, setting: int | str, unit_size: float):
        self.service, self.setting, self.unit_size = service, setting, unit_size

    def __call__(self, running: int) -> bool:
        wants: bool = ray.get(
            self.service.wants_unit.remote(running, self.setting, MAX_UNITS, self.unit_size)
        )
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
        service, actors = start_service(self.cfg, backend_context(self.cfg, self.output, self.state_dir))

        def tick() -> None:
            progress().mirror("dispatcher", ray.get(service.progress.remote()))

        def summary() -> BackendSummary:
            tick()
            scheduler = ray.get(service.report.remote())
            return BackendSummary(ray.get(service.info.remote()), scheduler, load_lines(scheduler))

        try:
            yield Backends(
                runner=RemoteRunner(service),
                admit=DispatcherAdmission(service, self.cfg.run.concurrent_partitions, pairs_per_unit),
                actors=actors,
                tick=tick,
                summary=summary,
            )
        finally:
            stop_service(service)  # the backend actors' GPUs are free for the next stage
