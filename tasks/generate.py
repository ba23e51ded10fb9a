from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from editthinker_data import stages
from editthinker_data.config import BuildConfig
from editthinker_data.distributed.pools import Workers
from editthinker_data.distributed.scheduler import run_rollouts


@task(name="generate", cache_policy=NONE, retry_delay_seconds=5)
def generate_task(cfg: BuildConfig, output: str, partition: int, workers: Workers) -> dict:
    """Think-while-edit rollouts for one partition on the shared actor pools."""

    def executor(items, make, on_done, on_usage=None):
        return run_rollouts(
            workers,
            items,
            make,
            on_done,
            max_in_flight=cfg.run.max_in_flight,
            retries=cfg.run.backend_retries,
            on_usage=on_usage,
        )

    return stages.run_generate(cfg, stages.output_storage(cfg, output), partition, executor)
