from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from editthinker_data.config import BuildConfig
from editthinker_data.core.layout import part_name
from editthinker_data.distributed.executor import run_remote_unit
from editthinker_data.stages.write_steps import WriteStepsStage


@task(name="write-steps", cache_policy=NONE, retries=1)
def write_steps_task(cfg: BuildConfig, output: str, partition: int) -> dict:
    """The selected step samples of one partition as sft/rl WebDataset shards, written by a
    Ray task (it reads the turn images it needs from storage); this thread only waits for
    the unit's report."""
    return run_remote_unit(WriteStepsStage(cfg), output, part_name(partition), {})
