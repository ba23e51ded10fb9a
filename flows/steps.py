"""The build's stages in order, and what each needs from the ones before it: its units, each
unit's inputs, how many run at once, its retries. The flow runs them in a loop; adding a
stage is one `Step` here (and its Stage class), not an edit to the flow.

Pure of Prefect and Ray: `Reports` gathers the typed reports as stages end and says when the
build must stop (a unit failed, a backend could not answer, the result is unusable).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from editthinker_data.config import BuildConfig
from editthinker_data.core.layout import POOL_UNIT, StageName, part_name, part_range_name, partition_of
from editthinker_data.core.outcome import BuildIncomplete, BuildUnusable, failure_share, verdict
from editthinker_data.core.reports import (
    BuildResult,
    FinalizeReport,
    GenerateReport,
    PoolReport,
    ReleaseReport,
    SelectReport,
    WriteStepsReport,
)
from editthinker_data.core.stats import llm_usage, merge_usage, usage_as_actor_info
from editthinker_data.execution.base import Admission, StageRun, window
from editthinker_data.execution.runtime import Backends, BackendSummary
from editthinker_data.release.run import ReleaseStage
from editthinker_data.stages import (
    FinalizeStage,
    GenerateStage,
    PoolStage,
    SelectStage,
    Stage,
    WriteStepsStage,
)

WRITE_WINDOW = 4  # write_steps units at once (each decodes one partition's turn images at a time)


@dataclass
class Reports:
    """Every stage's reports so far, typed; what the next stage reads."""

    cfg: BuildConfig
    started: float = field(default_factory=time.monotonic)
    pool: PoolReport | None = None
    generate: list[GenerateReport] = field(default_factory=list)
    backends: BackendSummary = field(default_factory=BackendSummary)
    select: SelectReport | None = None
    write: list[WriteStepsReport] = field(default_factory=list)
    final: FinalizeReport | None = None
    release: ReleaseReport | None = None

    @property
    def partitions(self) -> list[int]:
        assert self.pool is not None, "the pool stage runs first"
        return self.pool.partitions

    @property
    def pairs_per_unit(self) -> float:
        assert self.pool is not None, "the pool stage runs first"
        return self.pool.pairs_per_partition

    def finished(self) -> FinalizeReport:
        assert self.final is not None, "finalize ran"
        return self.final

    def add(self, name: StageName, run: StageRun[Any]) -> BuildIncomplete | None:
        """Keep a stage's reports; the reason to stop the build here, if any."""
        if name == StageName.GENERATE:
            self.generate = run.finished
            failed = {partition_of(unit): why for unit, why in run.failed.items()}
            unfinished = {r.partition: r for r in run.unfinished}
            return BuildIncomplete(failed, len(self.partitions), unfinished) if failed or unfinished else None
        run.raise_first()  # the other stages cannot go on without every unit
        match name:
            case StageName.POOL:
                self.pool = run.one()
            case StageName.SELECT:
                self.select = run.one()
            case StageName.WRITE_STEPS:
                self.write = run.reports
            case StageName.FINALIZE:
                self.final = run.one()
            case StageName.RELEASE:
                self.release = run.reports[0] if run.reports else None
            case _:
                raise ValueError(f"no report slot for stage {name!r}")
        return None

    def finalize_inputs(self) -> dict[str, Any]:
        usage = merge_usage(*(r.usage for r in self.generate))
        # Usage is summed from the unit reports (every process that worked on the build),
        # not from the actors alive now; `actors` lists this build's actors, replaced ones too.
        extra = {
            "llm_usage": llm_usage(self.cfg, usage_as_actor_info(usage)),
            "backends": usage,
            "actors": self.backends.actors,
            "generate_failures": self.share(),
            "scheduler": self.backends.scheduler,
            "elapsed_s": round(time.monotonic() - self.started, 2),
        }
        return {
            "pool": self.pool,
            "generate": self.generate,
            "select": self.select,
            "write": self.write,
            "extra": extra,
        }

    def share(self) -> dict[str, Any]:
        return failure_share(self.generate, self.cfg.run.max_failed_fraction)

    def result(self) -> BuildResult:
        final = self.finished()
        manifest = self.release.manifest if self.release else final.manifest  # with the release's files
        return BuildResult(stats=final.stats, manifest=manifest, release=self.release)

    def unusable(self) -> BuildUnusable | None:
        result = self.result()
        problem = verdict(self.share(), result.manifest["totals"])
        return BuildUnusable(problem, result) if problem else None


@dataclass(frozen=True)
class Step:
    """One stage of the build. `units` and `inputs` read the reports so far; `backends`: the
    stage runs while the backend actors are up, and its admission is theirs."""

    stage: type[Stage[Any]]
    label: str  # what the live table says while it runs
    units: Callable[[Reports], list[str]]
    inputs: Callable[[Reports, Backends | None], dict[str, Any]] = lambda reports, backends: {}
    admit: Admission = window(1)
    backends: bool = False
    retries: Callable[[BuildConfig], int] = lambda cfg: 0

    def run_admission(self, backends: Backends | None) -> Admission:
        return backends.admit if self.backends and backends is not None else self.admit


def _partitions(reports: Reports) -> list[str]:
    return [part_name(p) for p in reports.partitions]


def _write_units(reports: Reports) -> list[str]:
    assert reports.select is not None, "select runs before write_steps"
    return [part_range_name(run[0], run[-1]) for run in reports.select.write_runs]


def _release_units(reports: Reports) -> list[str]:
    out = reports.cfg.output
    return ["all"] if out.exports or out.report else []


STEPS: tuple[Step, ...] = (
    Step(PoolStage, "pooling", lambda r: [POOL_UNIT]),
    Step(
        GenerateStage,
        "generating",
        _partitions,
        inputs=lambda r, backends: {"runner": backends.runner} if backends else {},
        backends=True,
        retries=lambda cfg: cfg.run.unit_retries,
    ),
    Step(SelectStage, "selecting", lambda r: ["all"], inputs=lambda r, b: {"partitions": r.partitions}),
    Step(WriteStepsStage, "writing shards", _write_units, admit=window(WRITE_WINDOW), retries=lambda cfg: 1),
    Step(FinalizeStage, "finalizing", lambda r: ["all"], inputs=lambda r, b: r.finalize_inputs()),
    Step(ReleaseStage, "exports and card", _release_units),
)
