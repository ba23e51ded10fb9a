"""Run rollouts in this process, one after another: the plain loop that tests, debugging
and benchmarks compare the actor pools against."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from editthinker_data.backends import Backend, BackendContext, create_backend
from editthinker_data.config import BuildConfig
from editthinker_data.loop import Call, Rollout, drive
from editthinker_data.schema import Trajectory


def local_backends(cfg: BuildConfig, context: BackendContext | None = None) -> dict[tuple[str, str], Backend]:
    backends = {
        (role, spec.name): create_backend(role, spec, cfg.seed, context) for role, spec in cfg.backend_specs()
    }
    for backend in backends.values():
        backend.setup()
    return backends


def local_executor(cfg: BuildConfig, backends: dict[tuple[str, str], Backend] | None = None):
    backends = backends or local_backends(cfg)

    def call(c: Call) -> Any:
        return backends[(c.role, c.backend)].run_batch([c.request])[0]

    def run(
        items: Sequence[Any], make: Callable[[Any], Rollout], on_done: Callable[[int, Trajectory], None]
    ) -> dict[str, int]:
        for i, item in enumerate(items):
            on_done(i, drive(make(item), call))
        return {"requests": 0}

    return run
