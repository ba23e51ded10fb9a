"""build_dataset: pool -> generate (per partition, on Ray actor pools) -> select ->
write steps (per partition) -> finalize -> exports, figures, gallery and card."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from editthinker_data.config import BuildConfig
from editthinker_data.distributed.pools import Workers
from editthinker_data.distributed.runtime import ensure_ray, shutdown
from editthinker_data.preflight import preflight
from editthinker_data.progress import current as progress
from editthinker_data.units import check_output, output_storage
from tasks.finalize import finalize_task
from tasks.generate import generate_task
from tasks.pool import pool_task
from tasks.release import release_task
from tasks.select import select_task
from tasks.write_steps import write_steps_task


@flow(name="build-dataset", task_runner=ThreadPoolTaskRunner(max_workers=4), log_prints=True)
def build_dataset(config: dict[str, Any], output: str, state_dir: str) -> dict[str, Any]:
    cfg = BuildConfig.model_validate(config)
    log = get_run_logger()
    preflight(cfg)
    check_output(cfg, output_storage(cfg, output))
    started = time.monotonic()
    progress().set_stage("pooling")
    pool_report = pool_task(cfg, output)
    partitions = pool_report["partitions"]
    progress().set_total(pool_report["pairs"])
    log.info("pooled %d pairs into %d partitions", pool_report["pairs"], len(partitions))

    progress().set_stage("starting actors")
    started_ray = ensure_ray(cfg.run.ray_address, cfg.run.num_cpus, Path(state_dir))
    workers = Workers(cfg)
    try:
        actors = workers.start()
        log.info("started %d backend actors", len(actors))
        progress().set_stage("generating")
        generate = []
        window = cfg.run.concurrent_partitions
        futures = []
        for p in partitions:
            futures.append(generate_task.submit(cfg, output, p, workers))
            if len(futures) >= window:
                generate.append(futures.pop(0).result())
        generate.extend(f.result() for f in futures)
        actor_info = workers.info()
    finally:
        workers.stop()
        if started_ray:
            shutdown()
    progress().set_stage("selecting")
    select = select_task(cfg, output, partitions)
    progress().set_stage("writing shards")
    writes = [f.result() for f in [write_steps_task.submit(cfg, output, p) for p in partitions]]
    extra = {
        "actors": [{k: a[k] for k in ("role", "name", "setups", "calls")} for a in actor_info],
        "elapsed_s": round(time.monotonic() - started, 2),
    }
    progress().set_stage("finalizing")
    result = finalize_task(cfg, output, pool_report, generate, select, writes, extra)
    if cfg.output.exports or cfg.output.report:
        progress().set_stage("exports and card")
        result["release"] = release_task(cfg, output)
    progress().set_stage("done")
    return result
