"""Where a build runs: its executor, and the backends its generate stage drives. The flow
asks a `Runtime` for both and never learns whether Ray is underneath; `distributed.build`
is the Ray one, `LocalRuntime` below runs everything in this process."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from editthinker_data.config import BuildConfig
from editthinker_data.execution.base import Admission, Executor, LocalExecutor, window
from editthinker_data.execution.local_rollouts import local_backends, local_runner
from editthinker_data.pipeline.runner import RolloutRunner
from editthinker_data.stages.base import backend_context


@dataclass
class Backends:
    """The backends of a running generate stage: the runner each unit hands its pairs to,
    when to start the next unit, the live progress and, at the end, the summary."""

    runner: RolloutRunner
    admit: Admission
    actors: int
    tick: Callable[[], None] = lambda: None
    summary: Callable[[], BackendSummary] = lambda: BackendSummary()


@dataclass(frozen=True)
class BackendSummary:
    """What the backends report when generate ends: every actor's counters (replaced ones
    included), the scheduler's report, and lines for the log."""

    actors: list[dict[str, Any]] = field(default_factory=list)
    scheduler: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


class Runtime(Protocol):
    executor: Executor

    def backends(self, pairs_per_unit: float) -> contextlib.AbstractContextManager[Backends]:
        """The backends, set up (models loaded), for as long as generate runs."""
        ...

    def __enter__(self) -> Runtime: ...

    def __exit__(self, *exc: object) -> None: ...


class LocalRuntime:
    """Everything in this process: units one at a time, rollouts one after another."""

    def __init__(self, cfg: BuildConfig, output: str, state_dir: str):
        self.cfg, self.output, self.state_dir = cfg, output, state_dir
        self.executor: Executor = LocalExecutor()

    def __enter__(self) -> LocalRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @contextlib.contextmanager
    def backends(self, pairs_per_unit: float) -> Iterator[Backends]:
        backends = local_backends(self.cfg, backend_context(self.cfg, self.output, self.state_dir))
        yield Backends(runner=local_runner(self.cfg, backends), admit=window(1), actors=len(backends))
