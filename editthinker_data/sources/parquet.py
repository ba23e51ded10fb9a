"""Parquet (or Arrow) tables with an image column (bytes, the Hugging Face {bytes, path}
struct, or a path relative to the table) and id/instruction/task_type columns, named by
`columns`. A file that cannot be opened is one counted error; the other files are read."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from editthinker_data.sources.base import RecordError, SourceRecord
from editthinker_data.sources.columns import DEFAULT_COLUMNS, iter_rows, row_record, table_files


def read_parquet(
    path: str, columns: dict[str, str] | None = None, **_: object
) -> Iterator[SourceRecord | RecordError]:
    names = {**DEFAULT_COLUMNS, **(columns or {})}
    for file in table_files(path):
        try:
            for origin, row in iter_rows(file):
                yield row_record(row, origin, names, str(file.parent))
        except (pa.ArrowException, OSError) as err:
            yield RecordError(file.name, file.name, "unreadable_file", f"cannot read {file}: {err}")
