"""`source:`: the datasets to pool from, how many pairs of each, the image limits."""

from __future__ import annotations

import codecs
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from editthinker_data.config.base import Strict
from editthinker_data.core.schema import TASK_TYPES

PATH_OPTIONS = ("image_root", "openimages_mapping", "openimages_dir")


class SourceInput(Strict):
    """One dataset to pool from. `format` picks the reader (editthinker_data/sources/);
    `options` go to it (e.g. instruction: long, openimages_dir: ..., columns: {...})."""

    format: str
    path: str = Field(..., description="file or folder; relative paths resolve against the config file")
    name: str = Field("", description="short name: record ids become <name>:<id> when inputs are mixed")
    quota: int | None = Field(None, ge=0, description="at most this many pairs from this input")
    ratio: float | None = Field(None, gt=0, description="share of source.max_pairs")
    licence: str | None = Field(None, description="licence id; default: the format's known licence")
    label_map: dict[str, str] = Field(default_factory=dict, description="dataset label -> task type")
    default_labels: bool = Field(True, description="use the built-in label table of the format")
    strict_labels: bool = Field(
        False, description="a label no table maps is counted unknown_label, not classified"
    )
    options: dict[str, Any] = Field(default_factory=dict)
    encoding: str | None = Field(
        None, description="text encoding of the input's manifest/JSON files; default: UTF-8, strictly"
    )
    allowed_roots: list[str] = Field(
        default_factory=list,
        description="folders (or s3:// prefixes) outside the input's own folder that its image paths may reach",
    )
    allow_urls: bool = Field(False, description="accept http(s):// and file:// image references")
    allow_loopback: bool = Field(
        False, description="with allow_urls: fetch from loopback addresses too (a local image server)"
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str | None) -> str | None:
        if encoding is not None:
            try:
                codecs.lookup(encoding)
            except LookupError:
                raise ValueError(
                    f"unknown encoding {encoding!r}; use a Python codec name such as utf-8, latin-1, utf-16"
                ) from None
        return encoding

    @field_validator("label_map")
    @classmethod
    def _mapped_types(cls, label_map: dict[str, str]) -> dict[str, str]:
        for label, task_type in label_map.items():
            if task_type not in TASK_TYPES:
                raise ValueError(
                    f"label {label!r} maps to {task_type!r}; map it to one of {', '.join(TASK_TYPES)}"
                )
        return label_map

    @model_validator(mode="after")
    def _checks(self) -> SourceInput:
        if not self.name:
            object.__setattr__(self, "name", self.format)
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.name):
            raise ValueError(f"name {self.name!r} may only hold letters, digits, '-' and '_'")
        if self.quota is not None and self.ratio is not None:
            raise ValueError(f"input {self.name!r} has both quota and ratio; keep one")
        if self.strict_labels and not self.default_labels and not self.label_map:
            raise ValueError(
                f"input {self.name!r} has strict_labels but no label table (default_labels is false "
                "and label_map is empty), so every labelled record would be dropped; add a label_map"
            )
        return self


class SourceConfig(Strict):
    manifest: str | None = Field(
        None, description="JSONL manifest (one jsonl input); relative paths resolve against the config file"
    )
    manifest_licence: str | None = Field(None, description="licence id of the manifest's pairs")
    inputs: list[SourceInput] = Field(default_factory=list, description="datasets to pool from")
    task_type: Literal["given", "classify", "given_or_classify"] = "given_or_classify"
    quotas: dict[str, int] = Field(
        default_factory=dict, description="max pairs per task type; missing types use per_type_quota"
    )
    per_type_quota: int | None = Field(None, ge=1)
    max_pairs: int | None = Field(None, ge=1)
    max_instruction_chars: int = Field(1000, ge=8)
    max_image_pixels: int = Field(
        64_000_000,
        ge=1,
        # PIL refuses to open anything above twice its own limit (2 * 89,478,485 pixels)
        le=178_956_970,
        description="images with more pixels are rejected from the header, before decoding (bombs)",
    )
    min_image_side: int = Field(16, ge=1, description="images with a narrower side are rejected (degenerate)")
    max_image_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="image files (or downloads) larger than this are rejected"
    )
    near_duplicate_distance: int | None = Field(
        4,
        ge=0,
        le=64,
        description="perceptual-hash bits within which two images with one instruction are duplicates",
    )

    @field_validator("quotas")
    @classmethod
    def _known_types(cls, quotas: dict[str, int]) -> dict[str, int]:
        for name, value in quotas.items():
            if name not in TASK_TYPES:
                raise ValueError(f"unknown task type {name!r}; use one of {', '.join(TASK_TYPES)}")
            if value < 0:
                raise ValueError(f"quota for {name!r} is {value}; use 0 or more")
        return quotas

    @model_validator(mode="after")
    def _inputs(self) -> SourceConfig:
        if self.manifest is None and not self.inputs:
            raise ValueError(
                "no source: set source.manifest or list source.inputs (see configs/sources-example.yaml)"
            )
        names = [i.name for i in self.all_inputs()]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source input names {dupes} repeat; give each input a distinct name")
        if any(i.ratio is not None for i in self.inputs) and self.max_pairs is None:
            raise ValueError("inputs with a ratio share source.max_pairs; set source.max_pairs")
        return self

    def all_inputs(self) -> list[SourceInput]:
        """The inputs to read, in order; a `manifest` is one jsonl input named 'manifest'."""
        manifest = (
            [SourceInput(format="jsonl", path=self.manifest, name="manifest", licence=self.manifest_licence)]
            if self.manifest
            else []
        )
        return manifest + list(self.inputs)
