"""build_dataset: pool -> generate (per partition, on Ray actor pools) -> select ->
write steps (per partition) -> finalize -> exports, figures, gallery and card."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from editthinker_data.config import BuildConfig
from editthinker_data.core.layout import SOURCE_CONTENT_CACHE, part_name
from editthinker_data.core.outcome import BuildIncomplete, BuildUnusable, failure_share, verdict
from editthinker_data.core.progress import current as progress
from editthinker_data.core.stats import llm_usage, merge_usage, usage_as_actor_info
from editthinker_data.distributed.drive import MAX_UNITS, run_units
from editthinker_data.distributed.load import load_lines
from editthinker_data.distributed.runtime import ensure_ray, ray_get, shutdown
from editthinker_data.distributed.service import start_service, stop_service
from editthinker_data.pipeline.preflight import preflight
from editthinker_data.sources.content import with_source_content
from editthinker_data.stages import backend_context, check_output, output_storage
from tasks.finalize import finalize_task
from tasks.generate import generate_task
from tasks.pool import pool_task
from tasks.release import release_task
from tasks.select import select_task
from tasks.write_steps import write_steps_task

WRITE_WINDOW = 4  # write_steps units at once (Ray tasks: each decodes its partition's turn images)


@flow(name="build-dataset", task_runner=ThreadPoolTaskRunner(max_workers=MAX_UNITS), log_prints=True)
def build_dataset(config: dict[str, Any], output: str, state_dir: str) -> dict[str, Any]:
    """The build's result; an unfinished build raises `BuildIncomplete` and an unusable one
    `BuildUnusable` (`editthinker_data.core.outcome`) in the caller, and fails the flow run."""
    cfg = BuildConfig.model_validate(config)
    if cfg.source_content is None:  # a caller that did not measure the inputs (a deployment run)
        cfg = with_source_content(cfg, Path(state_dir) / SOURCE_CONTENT_CACHE)
    log = get_run_logger()
    preflight(cfg)
    for note in check_output(cfg, output_storage(cfg, output)):  # changed sources: what reruns
        log.warning(note)
    started = time.monotonic()
    progress().set_stage("pooling")
    pool_report = pool_task(cfg, output)
    partitions = pool_report["partitions"]
    progress().set_total(pool_report["pairs"])
    log.info("pooled %d pairs into %d partitions", pool_report["pairs"], len(partitions))

    progress().set_stage("starting actors")
    started_ray = ensure_ray(cfg.run.ray_address, cfg.run.num_cpus, Path(state_dir))
    service = None
    try:
        # The dispatcher actor owns the backend pools; generate units run on cluster workers
        # and hand it their rollouts, so this process never holds an image.
        service, actors = start_service(cfg, backend_context(cfg, output, state_dir))
        log.info("started %d backend actors", actors)
        progress().set_stage("generating")
        generate: list[dict[str, Any]] = []
        failed: dict[int, str] = {}
        incomplete: dict[int, dict[str, Any]] = {}  # pairs a backend could not answer
        task = generate_task.with_options(retries=cfg.run.unit_retries)

        def collect(p: int, future: Any) -> None:
            try:  # a unit that fails (after its retries) fails alone; the others go on
                report = future.result()
            except Exception as err:
                failed[p] = f"{type(err).__name__}: {err}"
                log.error("unit %s failed: %s", part_name(p), failed[p])
                return
            if report.get("incomplete"):
                incomplete[p] = report
                who = ", ".join(f"{w}: {t['count']}" for w, t in report["transient"].items())
                log.warning("unit %s unfinished: pairs a backend could not answer (%s)", part_name(p), who)
            else:
                generate.append(report)

        # One budget for the whole build: the next unit starts as soon as there is room,
        # while the units before it drain their tails.
        setting, unit_size = cfg.run.concurrent_partitions, pool_report["pairs"] / max(len(partitions), 1)
        run_units(
            partitions,
            lambda p: task.submit(cfg, output, p, service),
            lambda future: future.wrapped_future,
            collect,
            wants=lambda running: ray_get(service.wants_unit.remote(running, setting, MAX_UNITS, unit_size)),
            tick=lambda: progress().mirror("dispatcher", ray_get(service.progress.remote())),
        )
        progress().mirror("dispatcher", ray_get(service.progress.remote()))
        actor_info = ray_get(service.info.remote())
        scheduler = ray_get(service.report.remote())
        for line in load_lines(scheduler):
            log.info(line)
    except BaseException:
        if service is not None:
            stop_service(service)
        if started_ray:
            shutdown()
        raise
    stop_service(service)  # the backend actors' GPUs are free for the next build
    try:
        if failed or incomplete:  # a Failed state, not a raise: the caller sees the error, not a traceback
            stop = BuildIncomplete(failed, len(partitions), incomplete)
            return Failed(message=str(stop), data=stop)
        progress().set_stage("selecting")
        select = select_task(cfg, output, partitions)
        progress().set_stage("writing shards")
        writes: list[dict[str, Any]] = []
        pending: list[Any] = []
        for p in partitions:  # each unit a Ray task that reads and writes its images itself
            pending.append(write_steps_task.submit(cfg, output, p))
            if len(pending) >= WRITE_WINDOW:
                writes.append(pending.pop(0).result())
        writes.extend(f.result() for f in pending)
    finally:
        if started_ray:
            shutdown()
    # Usage is summed from the unit reports (every process that worked on the build), not
    # from the actors alive now; `actors` lists this process's actors, replaced ones included.
    usage = merge_usage(*(r.get("usage", {}) for r in generate))
    share = failure_share(generate, cfg.run.max_failed_fraction)
    extra = {
        "llm_usage": llm_usage(cfg, usage_as_actor_info(usage)),
        "backends": usage,
        "actors": actor_info,
        "generate_failures": share,
        "scheduler": scheduler,
        "elapsed_s": round(time.monotonic() - started, 2),
    }
    progress().set_stage("finalizing")
    result = finalize_task(cfg, output, pool_report, generate, select, writes, extra)
    if cfg.output.exports or cfg.output.report:
        progress().set_stage("exports and card")
        result["release"] = release_task(cfg, output)
        result["manifest"] = result["release"].pop("manifest")  # now listing the release files
    progress().set_stage("done")
    problem = verdict(share, result["manifest"]["totals"])
    if problem:
        return Failed(message=problem, data=BuildUnusable(problem, result))
    return result
