"""GEdit-Bench (stepfun-ai/GEdit-Bench) as parquet or Arrow files: `key`, `task_type`
(its 11 task types, kept as the label), `instruction`, `instruction_language` (en/cn) and
the embedded `input_image`. Only English by default: other languages are filtered, not
failed."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from editthinker_data.sources.base import RecordError, SourceRecord
from editthinker_data.sources.columns import iter_rows, row_record, table_files

COLUMNS = {
    "id": "key",
    "image": "input_image",
    "instruction": "instruction",
    "task_type": None,
    "label": "task_type",
}


def read_gedit(path: str, language: str | None = "en", **_: object) -> Iterator[SourceRecord | RecordError]:
    for file in table_files(path):
        try:
            for origin, row in iter_rows(file):
                lang = row.get("instruction_language")
                if language and lang != language:
                    yield RecordError(
                        origin,
                        str(row.get("key", origin)),
                        "other_language",
                        f"language {lang!r}",
                        filtered=True,
                    )
                    continue
                rec = row_record(row, origin, COLUMNS, str(file.parent))
                if isinstance(rec, SourceRecord) and not language:  # both languages share a key
                    rec = SourceRecord(**{**rec.__dict__, "id": f"{rec.id}-{lang}"})
                yield rec
        except (pa.ArrowException, OSError) as err:
            yield RecordError(file.name, file.name, "unreadable_file", f"cannot read {file}: {err}")
