from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from editthinker_data import stages
from editthinker_data.config import BuildConfig


@task(name="select", cache_policy=NONE)
def select_task(cfg: BuildConfig, output: str, partitions: list[int]) -> dict:
    """Trajectory filter, unrolling, RL/SFT split and balancing over all partitions' scores."""
    return stages.run_select(cfg, stages.output_storage(cfg, output), partitions)
