"""Executors: where a stage's units run, and the one loop that runs them.

Siblings over one base, which owns what they all share: every unit goes through
`stages.base.run_unit` (a unit marked by this config is reused, a marker is written last), a
failing unit fails alone and is reported by name, reports come back in unit order whatever
order the units finished in, and the next unit starts when the stage's `Admission` says so.

`LocalExecutor` runs units in this process (tests, a laptop, the plain loop benchmarks
compare against); `distributed.executor.RayExecutor` runs them as Ray tasks on the cluster,
each reading its inputs from storage and writing its outputs there, so the driver sees only
the small reports. The orchestrator (the Prefect flow) decides how a unit's call is launched
(`Launch`: a task with retries and a name in the UI); the executor decides where it runs.
"""

from __future__ import annotations

import concurrent.futures
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol

from editthinker_data.core.reports import StageReport
from editthinker_data.io.storage import Storage
from editthinker_data.stages.base import R, Stage, output_storage, run_unit

Inputs = Callable[[str], dict[str, Any]]  # a unit's extra arguments, by unit name
WAIT_S = 0.4  # the longest wait for a unit to end before asking the admission again


class Admission(Protocol):
    """Whether to start another unit now, given how many run."""

    def __call__(self, running: int) -> bool: ...


class Launch(Protocol):
    """Start `call` (one unit, blocking) somewhere that runs it concurrently; its future."""

    def __call__(
        self, stage: Stage[Any], unit: str, call: Callable[[], StageReport]
    ) -> concurrent.futures.Future[Any]: ...


def window(size: int) -> Admission:
    """At most `size` units at once."""
    return lambda running: running < max(1, size)


@dataclass
class StageRun(Generic[R]):
    """What one stage's units returned: reports in unit order; failures by unit name."""

    reports: list[R] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # "Type: message", for logs and reports
    errors: dict[str, BaseException] = field(default_factory=dict)  # as raised, for the caller to raise

    @property
    def unfinished(self) -> list[R]:
        """Reports of units that ran but could not finish (a backend did not answer)."""
        return [r for r in self.reports if not r.finished]

    @property
    def finished(self) -> list[R]:
        return [r for r in self.reports if r.finished]

    def raise_first(self) -> None:
        """Raise the first failed unit's own error (a stage that needs every unit)."""
        for err in self.errors.values():
            raise err

    def one(self) -> R:
        """The report of a one-unit stage; raises its own error when it failed."""
        self.raise_first()
        return self.reports[0]


def run_unit_at(stage: Stage[R], output: str | Storage, unit: str, inputs: dict[str, Any]) -> R:
    """One unit against the output at `output`: a path or URL (so it can run on any node: a
    storage client does not travel), or, in this process, an open storage."""
    storage = output if isinstance(output, Storage) else output_storage(stage.cfg, output)
    return run_unit(stage, storage, unit, **inputs)


class Executor(ABC):
    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)  # units at once when the caller gives no admission

    @abstractmethod
    def run_one(self, stage: Stage[R], output: str | Storage, unit: str, **inputs: Any) -> R:
        """One unit, in the calling thread until it ends; raises the unit's own error."""

    def default_launch(self, workers: int) -> tuple[Launch, Callable[[], None]]:
        """Threads in this process, each waiting on one unit (the default when no
        orchestrator launches them); returns the launcher and what closes it."""
        pool = concurrent.futures.ThreadPoolExecutor(max(1, workers), thread_name_prefix="unit")
        return (lambda stage, unit, call: pool.submit(call)), pool.shutdown

    def run(
        self,
        stage: Stage[R],
        output: str | Storage,
        units: Sequence[str],
        inputs: Inputs | None = None,
        *,
        admit: Admission | None = None,
        launch: Launch | None = None,
        tick: Callable[[], None] | None = None,
        on_end: Callable[[str, R | None, str | None], None] | None = None,
    ) -> StageRun[R]:
        """Run `units` of `stage`: start the next whenever `admit(running)` says so (default:
        one at a time), each through `launch` (default: a thread here), and collect them in
        any finishing order, so a slow unit never holds up the next one's start. `tick` runs
        between waits (live progress); `on_end(unit, report, error)` as each ends."""
        args = inputs or (lambda unit: {})
        admit = admit or window(self.workers)
        closer = None
        if launch is None:
            launch, closer = self.default_launch(workers=32)
        todo = deque(units)
        running: dict[concurrent.futures.Future[Any], str] = {}
        outcomes: dict[str, R | BaseException] = {}
        try:
            while todo or running:
                if todo and admit(len(running)):
                    unit = todo.popleft()
                    call = self._call(stage, output, unit, args(unit))
                    running[launch(stage, unit, call)] = unit
                    continue
                done, _ = concurrent.futures.wait(
                    list(running), timeout=WAIT_S, return_when="FIRST_COMPLETED"
                )
                for future in done:
                    unit = running.pop(future)
                    try:  # a unit that fails (after its retries) fails alone; the others go on
                        outcomes[unit] = report = future.result()
                        if on_end:
                            on_end(unit, report, None)
                    except Exception as err:
                        outcomes[unit] = err
                        if on_end:
                            on_end(unit, None, f"{type(err).__name__}: {err}")
                if tick is not None:
                    tick()
        finally:
            if closer is not None:
                closer()
        result: StageRun[R] = StageRun()
        for unit in units:
            outcome = outcomes[unit]
            if isinstance(outcome, BaseException):
                result.failed[unit] = f"{type(outcome).__name__}: {outcome}"
                result.errors[unit] = outcome
            else:
                result.reports.append(outcome)
        return result

    def _call(
        self, stage: Stage[R], output: str | Storage, unit: str, inputs: dict[str, Any]
    ) -> Callable[[], R]:
        return lambda: self.run_one(stage, output, unit, **inputs)


class LocalExecutor(Executor):
    """Units in this process (threads: units wait on storage and on the actor pools, not on
    this process's CPU)."""

    def run_one(self, stage: Stage[R], output: str | Storage, unit: str, **inputs: Any) -> R:
        return run_unit_at(stage, output, unit, inputs)
