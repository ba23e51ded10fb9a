"""Long-lived Ray actors for every backend: the model is set up once per actor, then the
actor serves batches. A pool is the actors of one backend (one editor, the expert, the
scorer) with the resources its config asks for."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from editthinker_data.backends import BackendContext, BackendError, BackendFatal, create_backend
from editthinker_data.config import BackendSpec, BuildConfig


class BackendActor:
    def __init__(self, role: str, spec: BackendSpec, seed: int, context: BackendContext | None = None):
        self.role = role
        self.backend = create_backend(role, spec, seed, context)
        started = time.perf_counter()
        self.backend.setup()
        self.setup_seconds = time.perf_counter() - started
        self.setups = 1
        self.calls = 0

    def info(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "name": self.backend.name,
            "pid": os.getpid(),
            "setups": self.setups,
            "setup_seconds": self.setup_seconds,
            "calls": self.calls,
            "counters": self._counters(),
        }

    def _counters(self) -> dict[str, Any]:
        return self.backend.stats() if hasattr(self.backend, "stats") else {}

    def run_counted(self, requests: list[Any]) -> tuple[list[Any], dict[str, float], float]:
        """Results with what this batch cost (the backend's counters before and after) and how
        long it ran here: the caller keeps usage per unit, so it survives reruns and replaced
        actors, and measures busy time without the queueing in front of the actor."""
        before = self._counters()
        started = time.perf_counter()
        results = self.run_batch(requests)
        seconds = time.perf_counter() - started
        after = self._counters()
        cost = {k: v - before.get(k, 0) for k, v in after.items() if isinstance(v, int | float)}
        return results, cost, seconds

    def run_batch(self, requests: list[Any]) -> list[Any]:
        self.calls += 1
        try:
            return self.backend.run_batch(requests)
        except BackendError as err:
            return [err] * len(requests)
        except BackendFatal as err:
            # Exit like a crash: Ray fails this call with RayActorError, the scheduler
            # replaces the actor and retries the batch elsewhere (bounded).
            print(
                f"{self.role} {self.backend.name!r} cannot continue, exiting: {err}",
                file=sys.stderr,
                flush=True,
            )
            os._exit(1)
        except Exception as err:  # a backend bug fails its batch, not the actor
            return [BackendError(f"{type(err).__name__}: {err}")] * len(requests)


@dataclass
class Pool:
    role: str
    name: str
    spec: BackendSpec
    seed: int
    context: BackendContext | None = None
    actors: list[Any] = field(default_factory=list)
    replaced: int = 0

    def _new_actor(self) -> Any:
        options = {
            "num_cpus": self.spec.resources.num_cpus,
            "num_gpus": self.spec.resources.num_gpus,
            "max_restarts": 0,
        }
        cls = ray.remote(BackendActor)
        return cls.options(**options).remote(self.role, self.spec, self.seed, self.context)

    def start(self) -> None:
        self.actors = [self._new_actor() for _ in range(self.spec.num_actors)]

    def replace(self, index: int) -> None:
        """A dead actor (crash, OOM) gets a fresh one; its requests are retried by the caller."""
        with contextlib.suppress(Exception):  # already gone
            ray.kill(self.actors[index], no_restart=True)
        self.actors[index] = self._new_actor()
        self.replaced += 1

    def stop(self) -> None:
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []


class Workers:
    """All pools of a build, keyed by (role, backend name). `context` (output location,
    answer cache) reaches every actor's backend."""

    def __init__(self, cfg: BuildConfig, context: BackendContext | None = None):
        self.pools: dict[tuple[str, str], Pool] = {
            (role, spec.name): Pool(role, spec.name, spec, cfg.seed, context)
            for role, spec in cfg.backend_specs()
        }

    def check_resources(self) -> None:
        """Ray would wait forever for GPUs that the cluster does not have: refuse instead."""
        have = ray.cluster_resources()
        for resource, field_name in (("GPU", "num_gpus"), ("CPU", "num_cpus")):
            want = sum(getattr(p.spec.resources, field_name) * p.spec.num_actors for p in self.pools.values())
            if want > have.get(resource, 0) + 1e-9:
                asks = ", ".join(
                    f"{p.role} {p.name!r}: {p.spec.num_actors} x {getattr(p.spec.resources, field_name):g}"
                    for p in self.pools.values()
                    if getattr(p.spec.resources, field_name)
                )
                raise RuntimeError(
                    f"the backends ask for {want:g} {resource}s ({asks}) but the Ray cluster has "
                    f"{have.get(resource, 0):g}; lower resources.{field_name} or num_actors, or join a larger "
                    f"cluster with run.ray_address"
                )

    def start(self, timeout_s: float = 600.0) -> list[dict[str, Any]]:
        """Start every actor and wait until each has set up; a failing set-up (missing model,
        bad params) raises here, before any data is processed."""
        self.check_resources()
        for pool in self.pools.values():
            pool.start()
        refs = [a.info.remote() for p in self.pools.values() for a in p.actors]
        try:
            return ray.get(refs, timeout=timeout_s)
        except ray.exceptions.RayActorError as err:
            self.stop()
            raise RuntimeError(f"a backend actor failed to start: {err}") from err

    def info(self) -> list[dict[str, Any]]:
        return ray.get([a.info.remote() for p in self.pools.values() for a in p.actors])

    def stop(self) -> None:
        for pool in self.pools.values():
            pool.stop()
