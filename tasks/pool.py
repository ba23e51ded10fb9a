from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from editthinker_data import stages
from editthinker_data.config import BuildConfig


@task(name="pool", cache_policy=NONE)
def pool_task(cfg: BuildConfig, output: str) -> dict:
    """Read, validate, dedup, balance and assign the source pairs; write pool/pairs.parquet."""
    return stages.run_pool(cfg, stages.output_storage(cfg, output))
