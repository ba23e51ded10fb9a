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
from editthinker_data.stats import llm_usage
from editthinker_data.units import backend_context, check_output, output_storage, part_name
from tasks.finalize import finalize_task
from tasks.generate import generate_task
from tasks.pool import pool_task
from tasks.release import release_task
from tasks.select import select_task
from tasks.write_steps import write_steps_task


class BuildIncomplete(RuntimeError):
    """Some units failed; the finished ones are kept (markers), so a rerun does only the rest."""

    def __init__(self, failed: dict[int, str], total: int):
        self.failed = failed
        lines = "\n".join(f"  {part_name(p)}: {why}" for p, why in sorted(failed.items()))
        super().__init__(
            f"{len(failed)} of {total} generate units failed; {total - len(failed)} are finished and kept. "
            f"Run the same command again to finish the rest:\n{lines}"
        )


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
    workers = Workers(cfg, backend_context(cfg, output, state_dir))
    try:
        actors = workers.start()
        log.info("started %d backend actors", len(actors))
        progress().set_stage("generating")
        generate: list[dict[str, Any]] = []
        failed: dict[int, str] = {}
        task = generate_task.with_options(retries=cfg.run.unit_retries)
        window = cfg.run.concurrent_partitions
        futures: list[tuple[int, Any]] = []

        def collect(p: int, future: Any) -> None:
            try:  # a unit that fails (after its retries) fails alone; the others go on
                generate.append(future.result())
            except Exception as err:
                failed[p] = f"{type(err).__name__}: {err}"
                log.error("unit %s failed: %s", part_name(p), failed[p])

        for p in partitions:
            futures.append((p, task.submit(cfg, output, p, workers)))
            if len(futures) >= window:
                collect(*futures.pop(0))
        for p, future in futures:
            collect(p, future)
        actor_info = workers.info()
    finally:
        workers.stop()
        if started_ray:
            shutdown()
    if failed:
        raise BuildIncomplete(failed, len(partitions))
    progress().set_stage("selecting")
    select = select_task(cfg, output, partitions)
    progress().set_stage("writing shards")
    writes = [f.result() for f in [write_steps_task.submit(cfg, output, p) for p in partitions]]
    extra = {
        "llm_usage": llm_usage(cfg, actor_info),
        "actors": [{k: a[k] for k in ("role", "name", "setups", "calls", "counters")} for a in actor_info],
        "elapsed_s": round(time.monotonic() - started, 2),
    }
    progress().set_stage("finalizing")
    result = finalize_task(cfg, output, pool_report, generate, select, writes, extra)
    if cfg.output.exports or cfg.output.report:
        progress().set_stage("exports and card")
        result["release"] = release_task(cfg, output)
        result["manifest"] = result["release"].pop("manifest")  # now listing the release files
    progress().set_stage("done")
    return result
