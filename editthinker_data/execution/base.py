"""Executors: where a stage's units run. Siblings over one base, which owns what they all
share: every unit goes through `stages.base.run_unit` (a unit marked by this config is
reused, a marker is written last), a failing unit fails alone and is reported by name,
and reports come back in unit order whatever order the units finished in.

`LocalExecutor` runs units in this process (tests, the embedded demo, a laptop);
`distributed.executor.RayExecutor` runs them as Ray tasks on the cluster, each reading its inputs
from storage and writing its outputs there, so the driver sees only the small reports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from editthinker_data.stages.base import Stage, output_storage, run_unit


@dataclass
class StageRun:
    """What one stage's units returned: reports in unit order; failures by unit name."""

    reports: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def run_unit_at(stage: Stage, output: str, unit: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """One unit against the output at `output` (a path or URL, so it can run on any node: a
    storage client does not travel)."""
    return run_unit(stage, output_storage(stage.cfg, output), unit, **inputs)


class Executor(ABC):
    def run(
        self,
        stage: Stage,
        output: str,
        units: Sequence[str],
        inputs: Callable[[str], dict[str, Any]] | None = None,
    ) -> StageRun:
        """Run `units` of `stage`; `inputs(unit)` gives a unit's extra arguments."""
        outcomes = self._map(stage, output, list(units), inputs or (lambda unit: {}))
        result = StageRun()
        for unit, outcome in zip(units, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                result.failed[unit] = f"{type(outcome).__name__}: {outcome}"
            else:
                result.reports.append(outcome)
        return result

    @abstractmethod
    def _map(
        self, stage: Stage, output: str, units: list[str], inputs: Callable[[str], dict[str, Any]]
    ) -> list[dict[str, Any] | BaseException]:
        """Each unit's report, or the exception it ended with, in unit order."""


class LocalExecutor(Executor):
    """Units in this process, `workers` at a time (threads: units wait on storage and on the
    actor pools, not on this process's CPU)."""

    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)

    def _map(self, stage, output, units, inputs):
        def one(unit: str) -> dict[str, Any] | BaseException:
            try:
                return run_unit_at(stage, output, unit, inputs(unit))
            except Exception as err:  # a unit fails alone; the caller decides what that means
                return err

        if self.workers == 1:
            return [one(u) for u in units]
        with ThreadPoolExecutor(self.workers, thread_name_prefix=f"{stage.name}-unit") as pool:
            return list(pool.map(one, units))
