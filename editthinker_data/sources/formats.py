"""Every source format, one `FormatSpec` each: a new format is its reader file plus one
entry here. Everything else (the reader lookup, option checks, path kinds, encodings,
default licences and label tables) is read from this registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module

from editthinker_data.sources.base import Reader
from editthinker_data.sources.defaults import (
    GEDIT,
    IMGEDIT,
    PICO_BANANA,
    PICO_BANANA_PAPER,
    PICO_BANANA_RULES,
    REASONING_ONLY,
)


@dataclass(frozen=True)
class FormatSpec:
    reader: str  # "module:function", imported only when a config names the format
    path_is_dir: bool | None  # `path` names a folder (True), a file (False), or either (None)
    options: tuple[str, ...] = ()  # reader options it takes (a misspelt one fails preflight)
    image_roots: tuple[str, ...] = ()  # options naming folders its image paths may reach
    text: bool = False  # records are JSON text: strict UTF-8 unless the input sets `encoding`
    licence: str = ""  # only licences confirmed from the dataset's own page
    labels: Mapping[str, str] = field(default_factory=dict)  # dataset label -> task type
    label_rules: tuple[tuple[str, str], ...] = ()  # keyword fallbacks for spellings not in `labels`

    def load_reader(self) -> Reader:
        module, _, name = self.reader.partition(":")
        reader: Reader = getattr(import_module(module), name)
        return reader


_R = "editthinker_data.sources."
FORMATS: dict[str, FormatSpec] = {
    "jsonl": FormatSpec(_R + "jsonl:read_jsonl", False, text=True),
    "pico_banana": FormatSpec(
        _R + "pico_banana:read_pico_banana", False,
        options=("instruction", "openimages_mapping", "openimages_dir", "image_root"),
        image_roots=("image_root", "openimages_dir"), text=True, licence="cc-by-nc-nd-4.0",
        labels={**PICO_BANANA, **PICO_BANANA_PAPER}, label_rules=tuple(PICO_BANANA_RULES),
    ),
    "opengpt4o": FormatSpec(
        _R + "opengpt4o:read_opengpt4o", False, ("image_root",), ("image_root",), text=True
    ),
    "sharegpt4o": FormatSpec(
        _R + "opengpt4o:read_opengpt4o", False, ("image_root",), ("image_root",), text=True
    ),
    "gedit": FormatSpec(_R + "gedit:read_gedit", None, ("language",), labels=GEDIT),
    "imgedit": FormatSpec(
        _R + "imgedit:read_imgedit", False, ("image_root",), ("image_root",), text=True, labels=IMGEDIT
    ),
    "kris": FormatSpec(_R + "kris:read_kris", True, text=True, labels=REASONING_ONLY),
    "rise": FormatSpec(
        _R + "rise:read_rise", False, ("image_root",), ("image_root",), text=True, labels=REASONING_ONLY
    ),
    "parquet": FormatSpec(_R + "parquet:read_parquet", None, ("columns",)),
    "webdataset": FormatSpec(_R + "webdataset:read_webdataset", None),
    "hf_disk": FormatSpec(_R + "hf_disk:read_hf_disk", True, ("split", "columns")),
}  # fmt: skip

# Views for code that asks one question of every format.
LABEL_TABLES = {name: dict(spec.labels) for name, spec in FORMATS.items() if spec.labels}
TEXT_FORMATS = tuple(name for name, spec in FORMATS.items() if spec.text)
