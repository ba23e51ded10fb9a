"""The pool snapshot (pool/pairs.parquet) as later stages read it: one `PoolEntry` per
pooled pair, a partition's entries, a pair's source image checked against the hash taken
at pooling, and the provenance a released sample carries. Here, beside its format rather
than in the pool stage, so the stages that read the snapshot depend on the data, not on
the stage that wrote it."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from editthinker_data.core.layout import POOL_FILE
from editthinker_data.core.schema import decode_image, sha256_hex
from editthinker_data.io.storage import Storage, read_url
from editthinker_data.io.tables import read_parquet


@dataclass(frozen=True, slots=True)
class PoolEntry:
    """One pooled pair as stored in pool/pairs.parquet (image by reference), with its
    provenance: source input, the dataset's own id and label, and licence."""

    id: str
    key: str
    instruction: str
    task_type: str
    image_path: str
    image_sha256: str
    origin: str
    editor: str = ""
    partition: int = -1
    source: str = ""
    original_id: str = ""
    label: str = ""
    licence: str = ""


def load_partition(storage: Storage, partition: int) -> list[PoolEntry]:
    rows = read_parquet(storage, POOL_FILE, filters=[("partition", "=", partition)])
    return sorted((PoolEntry(**r) for r in rows), key=lambda e: e.key)


def provenance(entry: PoolEntry) -> dict[str, str]:
    """What a released sample says about its source pair (licences travel with the data)."""
    return {
        "source": entry.source,
        "original_id": entry.original_id,
        "label": entry.label,
        "licence": entry.licence,
    }


def load_source_image(entry: PoolEntry) -> Image.Image:
    """The pooled image, checked against the hash taken at pooling time."""
    data = read_url(entry.image_path)
    if sha256_hex(data) != entry.image_sha256:
        raise ValueError(f"image {entry.image_path} changed since pooling (sha256 differs)")
    return decode_image(data)
