"""The card's `dataset_info` features: each config's column types, inferred from every sample.

`datasets` (and the Hub's viewer) infer a WebDataset config's types from its first five
samples when the card declares none; a field that is null there and set later (a turn's
`error`, turn 1's `reasoning`, a stop sample's `result_scores`) then fails the whole load.
Declaring the types, inferred by pyarrow over all samples, makes every later value fit.
"""

from __future__ import annotations

import json
import tarfile
from typing import Any

import pyarrow as pa

from editthinker_data.io.shards import member_bytes
from editthinker_data.io.storage import Storage

_DTYPES = {"double": "float64", "float": "float32", "halffloat": "float16"}
_IMAGES = ("png", "jpg", "jpeg", "webp")  # the extensions the WebDataset loader decodes as images


def yaml_feature(name: str | None, typ: pa.DataType) -> dict[str, Any]:
    """One feature in the card's YAML form (as `datasets.Features._to_yaml_list` writes it)."""
    head = {} if name is None else {"name": name}
    if pa.types.is_struct(typ):
        return {
            **head,
            "struct": [yaml_feature(typ.field(i).name, typ.field(i).type) for i in range(typ.num_fields)],
        }
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        inner = yaml_feature(None, typ.value_type)
        return {**head, "list": inner.get("dtype", inner.get("struct", inner))}
    return {**head, "dtype": _DTYPES.get(str(typ), str(typ))}


def shard_features(storage: Storage, urls: list[str]) -> list[dict[str, Any]]:
    """The features of one config's shards: `json` typed over all samples, image members as
    images, and the `__key__` / `__url__` columns the WebDataset loader adds."""
    rows, members = [], set()
    for url in urls:
        with tarfile.open(storage.local_copy(url)) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                suffix = member.name.split(".", 1)[1]
                members.add(suffix)
                if suffix == "json":
                    rows.append(json.loads(member_bytes(tar, member)))
    features = []
    for suffix in sorted(members):
        if suffix == "json":
            features.append(
                yaml_feature("json", pa.Table.from_pylist([{"json": r} for r in rows]).schema[0].type)
            )
        elif suffix.rsplit(".", 1)[-1].lower() in _IMAGES:
            features.append({"name": suffix, "dtype": "image"})
        else:
            features.append({"name": suffix, "dtype": "binary"})
    return [*features, {"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"}]
