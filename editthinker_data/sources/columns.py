"""Rows of a table (parquet, arrow, Hugging Face datasets) to records. The column names
are options, so one reader serves any table with an image, an instruction and an id."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from editthinker_data.io.storage import join_url
from editthinker_data.sources.base import RecordError, SourceRecord, image_cell

DEFAULT_COLUMNS = {
    "id": "id",
    "image": "image",
    "instruction": "instruction",
    "task_type": "task_type",
    "label": "label",
}
BATCH_ROWS = 256  # rows decoded at a time: tables stream, images are never all in memory


def row_record(
    row: dict[str, Any], origin: str, columns: Mapping[str, str | None], root: str
) -> SourceRecord | RecordError:
    def col(name: str) -> Any:
        key = columns.get(name)
        return row.get(key) if key else None

    rid = col("id")
    if isinstance(rid, int) and not isinstance(rid, bool):
        rid = str(rid)
    if not isinstance(rid, str) or not rid:
        return RecordError(origin, origin, "missing_field", f"missing id (column {columns.get('id')!r})")
    text = col("instruction")
    if not isinstance(text, str):
        return RecordError(
            origin, rid, "missing_field", f"missing instruction (column {columns.get('instruction')!r})"
        )
    data, path = image_cell(col("image"))
    if data is None and path is None:
        return RecordError(
            origin, rid, "missing_field", f"no image bytes or path (column {columns.get('image')!r})"
        )
    task_type, label = col("task_type"), col("label")
    for name, value in (("task_type", task_type), ("label", label)):
        if value is not None and not isinstance(value, str):
            return RecordError(
                origin, rid, "bad_field", f"{name} must be a string, got {type(value).__name__}"
            )
    return SourceRecord(
        rid,
        join_url(root, path) if path else "",
        text,
        task_type,
        origin,
        original_id=rid,
        label=label,
        image_bytes=data,
    )


def table_files(path: str) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    return sorted(f for f in p.rglob("*") if f.suffix in (".parquet", ".arrow") and f.is_file())


def iter_rows(file: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(origin, row) of a parquet or Arrow IPC (file or stream) table, a batch at a time."""
    if file.suffix == ".parquet":
        batches = pq.ParquetFile(file).iter_batches(batch_size=BATCH_ROWS)
    else:
        source = pa.memory_map(str(file))
        try:
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            source.seek(0)
            batches = iter(pa.ipc.open_stream(source))
    n = 0
    for batch in batches:
        for row in batch.to_pylist():
            yield f"{file.name}#{n}", row
            n += 1
