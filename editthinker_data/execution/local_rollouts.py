"""Run rollouts in this process, one after another: the plain loop that tests, debugging
and benchmarks compare the actor pools against."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from editthinker_data.backends import Backend, BackendContext, create_backend
from editthinker_data.backends.transport.edit_store import with_edit_store
from editthinker_data.config import BuildConfig
from editthinker_data.core.schema import Trajectory
from editthinker_data.pipeline.loop import Call, Rollout, drive
from editthinker_data.pipeline.runner import RolloutRunner


def local_backends(cfg: BuildConfig, context: BackendContext | None = None) -> dict[tuple[str, str], Backend]:
    backends = {
        (role, spec.name): with_edit_store(role, spec, create_backend(role, spec, cfg.seed, context), context)
        for role, spec in cfg.backend_specs()
    }
    for backend in backends.values():
        backend.setup()
    return backends


def local_runner(cfg: BuildConfig, backends: dict[tuple[str, str], Backend] | None = None) -> RolloutRunner:
    """A `RolloutRunner` that drives each rollout to its end before the next starts."""
    backends = backends or local_backends(cfg)

    calls: Counter[tuple[str, str]] = Counter()

    def call(c: Call) -> Any:
        calls[(c.role, c.backend)] += 1
        return backends[(c.role, c.backend)].run_batch([c.request])[0]

    def counters() -> dict[tuple[str, str], dict[str, Any]]:
        return {key: b.stats() if hasattr(b, "stats") else {} for key, b in backends.items()}

    def report(before, calls_before, on_usage) -> None:
        for (role, name), after in counters().items():
            was = before.get((role, name), {})
            cost = {k: v - was.get(k, 0) for k, v in after.items() if isinstance(v, int | float)}
            for _ in range(calls[(role, name)] - calls_before[(role, name)]):
                on_usage(f"{role}/{name}", cost)  # one "batch" per call; the cost rides on the first
                cost = dict.fromkeys(cost, 0)

    def run(
        items: Sequence[Any],
        make: Callable[[Any], Rollout],
        on_done: Callable[[int, Trajectory], None],
        on_usage: Callable[[str, dict[str, float]], None] | None = None,
        prepare: Callable[[Any], Any] | None = None,
    ) -> dict[str, Any]:
        for i, item in enumerate(items):
            pair = prepare(item) if prepare else item
            if isinstance(pair, Trajectory):  # settled before it started
                on_done(i, pair)
                continue
            before, calls_before = counters(), Counter(calls)
            traj = drive(make(pair), call)
            if on_usage is not None:
                report(before, calls_before, on_usage)
            on_done(i, traj)
        return {"requests": 0}

    return run
