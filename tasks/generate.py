from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from editthinker_data import stages
from editthinker_data.config import BuildConfig
from editthinker_data.distributed.scheduler import Dispatcher


@task(name="generate", cache_policy=NONE, retry_delay_seconds=5)
def generate_task(cfg: BuildConfig, output: str, partition: int, dispatcher: Dispatcher) -> dict:
    """Think-while-edit rollouts for one partition, handed to the build's one dispatcher
    (shared actor pools and in-flight budget)."""
    return stages.run_generate(cfg, stages.output_storage(cfg, output), partition, dispatcher.run)
