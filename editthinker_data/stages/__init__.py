"""The build's units of work, one module per stage, free of Prefect and Ray: pool ->
generate (per partition) -> select -> write steps (per partition) -> finalize; the release
(exports, card, gallery) is in release/. `base` holds the Stage type and `run_unit`, the
one place markers and resume live; executors (execution/) decide where units run."""

from editthinker_data.core.layout import DECISIONS_FILE, POOL_FILE, STEPS_FILE
from editthinker_data.io.tables import read_parquet
from editthinker_data.stages.base import (
    Stage,
    backend_context,
    check_output,
    clear_output,
    output_storage,
    read_marker,
    run_unit,
    write_failures,
)
from editthinker_data.stages.finalize import FinalizeStage, finalize
from editthinker_data.stages.generate import GenerateStage
from editthinker_data.stages.pool import PoolStage, pool_records
from editthinker_data.stages.select import SelectStage
from editthinker_data.stages.write_steps import WriteStepsStage, build_step_sample

__all__ = [
    "DECISIONS_FILE",
    "POOL_FILE",
    "STEPS_FILE",
    "FinalizeStage",
    "GenerateStage",
    "PoolStage",
    "SelectStage",
    "Stage",
    "WriteStepsStage",
    "backend_context",
    "build_step_sample",
    "check_output",
    "clear_output",
    "finalize",
    "output_storage",
    "pool_records",
    "read_marker",
    "read_parquet",
    "run_unit",
    "write_failures",
]
