"""build_dataset: the build's stages (`flows/steps.py`: pool -> generate per partition ->
select -> write steps per partition -> finalize -> release), each run by the runtime's
executor in one loop, each unit a Prefect task with its stage's retries."""

from __future__ import annotations

import contextlib
from functools import partial
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from editthinker_data.config import BuildConfig
from editthinker_data.core.layout import SOURCE_CONTENT_CACHE
from editthinker_data.core.progress import current as progress
from editthinker_data.core.reports import BuildResult, GenerateReport, PoolReport, StageReport
from editthinker_data.execution.runtime import Backends, LocalRuntime, Runtime
from editthinker_data.pipeline.preflight import preflight
from editthinker_data.sources.content import with_source_content
from editthinker_data.stages import check_output, output_storage
from flows.steps import STEPS, Reports, Step
from tasks.artifacts import BuildArtifacts, summary_artifact
from tasks.units import prefect_launch

MAX_UNITS = 32  # units waiting at once (threads of this flow; each waits on a unit's task)


def _unit_inputs(step: Step, reports: Reports, backends: Backends | None, unit: str) -> dict[str, Any]:
    return step.inputs(reports, backends)


def open_runtime(cfg: BuildConfig, output: str, state_dir: str) -> Runtime:
    if cfg.run.executor == "local":
        return LocalRuntime(cfg, output, state_dir)
    from editthinker_data.distributed.build import RayRuntime  # Ray is imported only for a Ray build

    return RayRuntime(cfg, output, state_dir)


# Prefect types `task_runner` as TaskRunner[PrefectFuture[Any]], invariant, so its own
# ThreadPoolTaskRunner (a TaskRunner[PrefectConcurrentFuture[...]]) does not match it.
@flow(name="build-dataset", task_runner=ThreadPoolTaskRunner(max_workers=MAX_UNITS), log_prints=True)  # type: ignore[arg-type]
def build_dataset(config: dict[str, Any], output: str, state_dir: str) -> BuildResult | Any:
    """The build's result; an unfinished build returns a Failed state carrying
    `BuildIncomplete`, an unusable one `BuildUnusable` (`core/outcome.py`)."""
    cfg = BuildConfig.model_validate(config)
    if cfg.source_content is None:  # a caller that did not measure the inputs (a deployment run)
        cfg = with_source_content(cfg, Path(state_dir) / SOURCE_CONTENT_CACHE)
    log = get_run_logger()
    preflight(cfg)
    for note in check_output(cfg, output_storage(cfg, output)):  # changed sources: what reruns
        log.warning(note)
    reports = Reports(cfg)
    artifacts = BuildArtifacts(cfg, output, progress())
    with open_runtime(cfg, output, state_dir) as runtime:
        for step in STEPS:
            units = step.units(reports)
            progress().set_stage("starting actors" if step.backends else step.label)
            serving = runtime.backends(reports.pairs_per_unit) if step.backends else contextlib.nullcontext()
            with serving as backends:
                if backends is not None:
                    log.info("started %d backend actors", backends.actors)
                    progress().set_stage(step.label)
                run = runtime.executor.run(
                    step.stage(cfg),
                    output,
                    units,
                    partial(_unit_inputs, step, reports, backends),
                    admit=step.run_admission(backends),
                    launch=prefect_launch(step.retries(cfg)),
                    tick=backends.tick if backends else None,
                    on_end=lambda unit, report, error: _unit_ended(log, artifacts, unit, report, error),
                )
                if backends is not None:
                    reports.backends = backends.summary()
                    for line in reports.backends.lines:
                        log.info(line)
            artifacts.stage_ended(step.stage.name)
            if (stop := reports.add(step.stage.name, run)) is not None:
                return Failed(message=str(stop), data=stop)
    summary_artifact(cfg, output, reports.finished())
    progress().set_stage("done")
    artifacts.finished()
    if (unusable := reports.unusable()) is not None:
        return Failed(message=str(unusable), data=unusable)
    return reports.result()


def _unit_ended(
    log: Any, artifacts: BuildArtifacts, unit: str, report: StageReport | None, error: str | None
) -> None:
    """A unit's end in the log, the pool's size in the live table, the unit in the artifacts."""
    if error is not None:
        log.error("unit %s failed: %s", unit, error)
    elif isinstance(report, GenerateReport) and not report.finished:
        who = ", ".join(f"{w}: {t.count}" for w, t in report.transient.items())
        log.warning("unit %s unfinished: pairs a backend could not answer (%s)", unit, who)
    elif isinstance(report, PoolReport):
        progress().set_total(report.pairs)
        log.info("pooled %d pairs into %d partitions", report.pairs, len(report.partitions))
    artifacts.unit_ended(unit, report, error)
