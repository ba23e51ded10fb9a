"""A Hugging Face `datasets` folder written by `save_to_disk` (a Dataset, or a DatasetDict
and its `split`). Read through `datasets` itself, memory-mapped; image columns are read
undecoded ({bytes, path}) so nothing is decoded twice."""

from __future__ import annotations

from collections.abc import Iterator

from editthinker_data.sources.base import RecordError, SourceRecord
from editthinker_data.sources.columns import BATCH_ROWS, DEFAULT_COLUMNS, row_record


def read_hf_disk(
    path: str, split: str = "train", columns: dict[str, str] | None = None, **_: object
) -> Iterator[SourceRecord | RecordError]:
    import datasets  # optional: only this reader needs it

    names = {**DEFAULT_COLUMNS, **(columns or {})}
    ds = datasets.load_from_disk(path)
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"{path} has splits {sorted(ds)}, not {split!r}; set options.split")
        ds = ds[split]
    image_col = names["image"]
    if image_col in ds.features and isinstance(ds.features[image_col], datasets.Image):
        ds = ds.cast_column(image_col, datasets.Image(decode=False))
    n = 0
    for batch in ds.iter(batch_size=BATCH_ROWS):
        keys = list(batch)
        for values in zip(*(batch[k] for k in keys), strict=True):
            yield row_record(dict(zip(keys, values, strict=True)), f"{split}#{n}", names, path)
            n += 1
