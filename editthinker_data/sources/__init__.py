"""Source readers, one file per format, behind one entry point: `read_input(spec)` streams
a configured input's records (or `RecordError` values for what it cannot use), stamped
with the input's name, licence and, when several inputs are mixed, `<name>:<id>` ids."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from editthinker_data.sources.base import RecordError, SourceRecord
from editthinker_data.sources.defaults import LICENCES

Reader = Callable[..., Iterator[SourceRecord | RecordError]]


def _reader(fmt: str) -> Reader:
    # Imported on demand: a build reads only the formats its config names.
    if fmt == "jsonl":
        from editthinker_data.sources.jsonl import read_jsonl as r
    elif fmt == "pico_banana":
        from editthinker_data.sources.pico_banana import read_pico_banana as r
    elif fmt in ("opengpt4o", "sharegpt4o"):
        from editthinker_data.sources.opengpt4o import read_opengpt4o as r
    elif fmt == "gedit":
        from editthinker_data.sources.gedit import read_gedit as r
    elif fmt == "imgedit":
        from editthinker_data.sources.imgedit import read_imgedit as r
    elif fmt == "kris":
        from editthinker_data.sources.kris import read_kris as r
    elif fmt == "rise":
        from editthinker_data.sources.rise import read_rise as r
    elif fmt == "parquet":
        from editthinker_data.sources.parquet import read_parquet as r
    elif fmt == "webdataset":
        from editthinker_data.sources.webdataset import read_webdataset as r
    elif fmt == "hf_disk":
        from editthinker_data.sources.hf_disk import read_hf_disk as r
    else:
        raise ValueError(f"unknown source format {fmt!r}; use one of {', '.join(FORMATS)}")
    return r


# format -> does `path` name a folder (True) or a file (False); None: either.
FORMATS: dict[str, bool | None] = {
    "jsonl": False,
    "pico_banana": False,
    "opengpt4o": False,
    "sharegpt4o": False,
    "gedit": None,
    "imgedit": False,
    "kris": True,
    "rise": False,
    "parquet": None,
    "webdataset": None,
    "hf_disk": True,
}


# format -> the reader options it takes (checked in preflight: a misspelt option fails early)
OPTIONS: dict[str, tuple[str, ...]] = {
    "jsonl": (),
    "pico_banana": ("instruction", "openimages_mapping", "openimages_dir", "image_root"),
    "opengpt4o": ("image_root",),
    "sharegpt4o": ("image_root",),
    "gedit": ("language",),
    "imgedit": ("image_root",),
    "kris": (),
    "rise": ("image_root",),
    "parquet": ("columns",),
    "webdataset": (),
    "hf_disk": ("split", "columns"),
}


def check_options(fmt: str, options: dict[str, Any]) -> str | None:
    """What is wrong with a format's options, or None."""
    unknown = sorted(set(options) - set(OPTIONS[fmt]))
    if unknown:
        takes = ", ".join(OPTIONS[fmt]) or "none"
        return f"unknown options {unknown} for format {fmt} (it takes: {takes})"
    if fmt == "pico_banana" and options.get("instruction", "short") not in ("short", "long"):
        return (
            f"options.instruction is {options['instruction']!r}; use short (summarized_text) or long (text)"
        )
    if "columns" in options and not (
        isinstance(options["columns"], dict)
        and all(isinstance(v, str | None) for v in options["columns"].values())
    ):
        return "options.columns maps id/image/instruction/task_type/label to column names"
    return None


def default_licence(fmt: str) -> str:
    return LICENCES.get(fmt, "")


def read_input(spec: Any, prefix_ids: bool) -> Iterator[SourceRecord | RecordError]:
    """Records of one `source.inputs` entry. A reader that fails outright (an unreadable
    file) yields one error naming the input; the other inputs are still read."""
    licence = spec.licence if spec.licence is not None else default_licence(spec.format)
    try:
        for rec in _reader(spec.format)(spec.path, **spec.options):
            if isinstance(rec, RecordError):  # named like the pair it would have been
                named = prefix_ids and rec.record != rec.origin
                yield dataclasses.replace(
                    rec, source=spec.name, record=f"{spec.name}:{rec.record}" if named else rec.record
                )
                continue
            yield dataclasses.replace(
                rec,
                id=f"{spec.name}:{rec.id}" if prefix_ids else rec.id,
                original_id=rec.original_id or rec.id,
                source=spec.name,
                licence=licence,
            )
    except (OSError, ValueError, UnicodeDecodeError) as err:
        yield RecordError(
            spec.path, spec.name, "unreadable_input", f"input {spec.name!r}: {err}", source=spec.name
        )
