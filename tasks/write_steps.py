from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from editthinker_data import stages
from editthinker_data.config import BuildConfig


@task(name="write-steps", cache_policy=NONE, retries=1)
def write_steps_task(cfg: BuildConfig, output: str, partition: int) -> dict:
    """The selected step samples of one partition as sft/rl WebDataset shards."""
    return stages.run_write_steps(cfg, stages.output_storage(cfg, output), partition)
