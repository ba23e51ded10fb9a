"""The build's Parquet tables: their schemas and one way to read and write them through
`Storage` (zstd, written whole, so a reader never sees half a table)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from editthinker_data.io.storage import Storage


def read_parquet(storage: Storage, name: str, filters=None) -> list[dict[str, Any]]:
    return pq.read_table(storage.local_copy(name), filters=filters).to_pylist()


def write_parquet(storage: Storage, name: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    storage.write_bytes(name, sink.getvalue().to_pybytes())


# pool/pairs.parquet: one row per pooled pair (PoolEntry)
POOL_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("key", pa.string()),
        ("instruction", pa.string()),
        ("task_type", pa.string()),
        ("image_path", pa.string()),
        ("image_sha256", pa.string()),
        ("origin", pa.string()),
        ("editor", pa.string()),
        ("partition", pa.int32()),
        ("source", pa.string()),
        ("original_id", pa.string()),
        ("label", pa.string()),
        ("licence", pa.string()),
    ]
)

# trajectories/part-NNNNN.parquet: one row per turn, with its trajectory's fields
TURN_SCHEMA = pa.schema(
    [
        ("trajectory", pa.string()),
        ("pair_id", pa.string()),
        ("partition", pa.int32()),
        ("task_type", pa.string()),
        ("editor", pa.string()),
        ("source_instruction", pa.string()),
        ("stop_reason", pa.string()),
        ("num_turns", pa.int32()),
        ("error", pa.string()),
        ("final_reasoning", pa.string()),
        ("final_instruction", pa.string()),
        ("turn", pa.int32()),
        ("instruction", pa.string()),
        ("reasoning", pa.string()),
        ("semantic", pa.float64()),
        ("quality", pa.float64()),
        ("overall", pa.float64()),
        ("seed", pa.int64()),
        ("edit_s", pa.float64()),
        ("score_s", pa.float64()),
        ("refine_s", pa.float64()),
        ("shard", pa.string()),
        ("sample_key", pa.string()),
    ]
)

# selection/steps.parquet: the released steps (StepPlan)
STEP_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("trajectory", pa.string()),
        ("partition", pa.int32()),
        ("turn", pa.int32()),
        ("task_type", pa.string()),
        ("editor", pa.string()),
        ("split", pa.string()),
        ("stop", pa.bool_()),
        ("target_score", pa.float64()),
    ]
)

# selection/decisions.parquet: keep / reason / best turn / split per trajectory
DECISION_SCHEMA = pa.schema(
    [
        ("trajectory", pa.string()),
        ("keep", pa.bool_()),
        ("reason", pa.string()),
        ("best_turn", pa.int32()),
        ("split", pa.string()),
    ]
)
