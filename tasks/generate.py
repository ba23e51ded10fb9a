from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from editthinker_data.config import BuildConfig
from editthinker_data.core.layout import part_name
from editthinker_data.distributed.executor import run_remote_unit
from editthinker_data.distributed.remote import RemoteRunner
from editthinker_data.stages.generate import GenerateStage


@task(name="generate", cache_policy=NONE, retry_delay_seconds=5)
def generate_task(cfg: BuildConfig, output: str, partition: int, service: Any) -> dict:
    """Think-while-edit rollouts for one partition, run on a cluster worker that hands them
    to the build's dispatcher actor (shared actor pools and in-flight budget); this thread
    only waits for the unit's small report."""
    runner = RemoteRunner(service)
    return run_remote_unit(GenerateStage(cfg), output, part_name(partition), {"runner": runner})
