"""One YAML file describes a build. Validated on load, before any work starts.

Errors name the key, the bad value and the fix. Secrets never appear in the file: a backend
names the environment variable that holds its key (`api_key_env`).
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from editthinker_data.schema import TASK_TYPES

ENV_PREFIX = "EDITTHINKER__"
_SECRET_NAME = re.compile(r"(api[_-]?key|secret|password|token)$", re.IGNORECASE)


class ConfigError(ValueError):
    """A configuration problem, reported before any work starts."""


class _Strict(BaseModel):
    # validate_default: defaults are coerced like given values (0 -> 0.0 for floats), so a
    # config and its dump-and-reload give the same fingerprint.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Resources(_Strict):
    """What one actor asks Ray for."""

    num_cpus: float = Field(0.25, ge=0)
    num_gpus: float = Field(0, ge=0)


class Price(_Strict):
    """USD per million tokens, for the cost estimate in stats.json."""

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)


class BackendSpec(_Strict):
    """An editor, expert or scorer backend. `kind` picks the family (one file each);
    `params` go to that family's constructor, and so do the remote-model fields below when
    set (`kind: openai`)."""

    kind: str = "procedural"
    name: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://vllm:8000/v1")
    model: str | None = None
    max_concurrency: int | None = Field(
        None, ge=1, description="requests in flight to the endpoint, shared by the actors"
    )
    requests_per_minute: float | None = Field(
        None, gt=0, description="for all actors of this backend together"
    )
    tokens_per_minute: float | None = Field(
        None, gt=0, description="prompt + completion tokens, for all actors of this backend together"
    )
    timeout_s: float | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    price: Price = Price()
    resources: Resources = Resources()
    num_actors: int = Field(1, ge=1, le=1024)
    batch_size: int = Field(1, ge=1, le=1024)

    @field_validator("params")
    @classmethod
    def _no_literal_secrets(cls, params: dict[str, Any]) -> dict[str, Any]:
        for key, value in params.items():
            if _SECRET_NAME.search(key) and value:
                raise ValueError(
                    f"params.{key} holds a secret in the config file; remove it, export it as an "
                    f"environment variable and name that variable with api_key_env"
                )
        return params

    @model_validator(mode="after")
    def _default_name(self) -> BackendSpec:
        if not self.name:
            object.__setattr__(self, "name", self.kind)
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.name):
            raise ValueError(f"name {self.name!r} may only hold letters, digits, '-' and '_'")
        return self


class EditorSpec(BackendSpec):
    ratio: float = Field(1.0, gt=0, description="share of the pooled pairs this editor gets")


# Options of source readers that name files or folders: resolved against the config file.
PATH_OPTIONS = ("image_root", "openimages_mapping", "openimages_dir")


class SourceInput(_Strict):
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


class SourceConfig(_Strict):
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


class LoopConfig(_Strict):
    max_turns: int = Field(5, ge=1, le=32, description="the paper uses 5; its ablations go to 8")
    seed_policy: Literal["fixed", "per_turn"] = Field(
        "fixed", description="fixed: every turn uses the build seed (the released code's seed 0)"
    )


class BalanceConfig(_Strict):
    enabled: bool = True
    score_bins: list[float] = Field(default_factory=lambda: [0.0, 4.0, 6.0, 8.0, 10.0])
    max_cell_ratio: float = Field(
        3.0,
        ge=1.0,
        description="whole trajectories are kept or dropped: a (task type, bin of S_1) cell of a split keeps "
        "at most this many times the median cell's step samples",
    )

    @field_validator("score_bins")
    @classmethod
    def _bins(cls, bins: list[float]) -> list[float]:
        if len(bins) < 2 or any(b >= a for a, b in zip(bins[1:], bins, strict=False)):
            raise ValueError(
                f"score_bins {bins} must be at least two strictly increasing edges, e.g. [0, 5, 10]"
            )
        if bins[0] > 0 or bins[-1] < 10:
            raise ValueError(f"score_bins {bins} must cover 0-10, e.g. [0, 4, 6, 8, 10]")
        return bins


class SelectionConfig(_Strict):
    score: Literal["overall", "semantic", "quality"] = "overall"
    keep_single_turn: bool = Field(
        False, description="keep trajectories the expert accepted after turn 1 (no refinement to judge)"
    )
    rl_variance_threshold: float = Field(
        16.0, ge=0, description="theta: trajectories with Var(S_t) above it go to RL, the rest to SFT"
    )
    include_stop_steps: bool = Field(
        True, description="a stop after the best turn becomes a sample that teaches when to stop"
    )
    min_gain: float = Field(
        0.0,
        ge=0,
        le=10,
        description="drop a refined trajectory whose best later score max_{t>1} S_t exceeds S_1 by less "
        "than this (reason below_min_gain); 0 is the paper's rule, which keeps trajectories that never "
        "improved (counted as zero_gain). Single-turn trajectories follow keep_single_turn",
    )
    failed_turns: Literal["drop", "judge_stored"] = Field(
        "drop",
        description="a trajectory with a turn that failed for good (an unparseable answer, say): drop "
        "(reason turn_failed), or judge_stored: apply the filter to the turns stored before the failure "
        "(genuine, but cut short: its best step and RL/SFT variance are those of a prefix)",
    )
    balance: BalanceConfig = BalanceConfig()

    @model_validator(mode="after")
    def _single_turn_needs_stop_steps(self) -> SelectionConfig:
        if self.keep_single_turn and not self.include_stop_steps:
            raise ValueError(
                "keep_single_turn keeps trajectories whose only sample is the stop sample; set "
                "include_stop_steps: true, or keep_single_turn: false"
            )
        return self


class OutputConfig(_Strict):
    dir: str = "runs/demo"
    license: str = Field("other", description="licence id for the dataset card, e.g. cc-by-4.0")
    exports: list[Literal["llamafactory", "easyr1"]] = Field(
        default_factory=lambda: ["llamafactory", "easyr1"],
        description="trainer exports written after the build",
    )
    report: bool = Field(True, description="write the dataset card, figures and gallery after the build")
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, R2, ...); default AWS"
    )
    s3_region: str | None = None
    shard_max_samples: int = Field(1000, ge=1)
    shard_max_bytes: int = Field(1_000_000_000, ge=1024)


class RunConfig(_Strict):
    partition_size: int = Field(64, ge=1, description="source pairs per unit of work")
    max_in_flight: int | Literal["auto"] = Field(
        "auto",
        description="trajectories in flight for the whole build, over all running units; auto sizes it "
        "from the actor counts, batch sizes and measured service times so every editor stays busy",
    )
    concurrent_partitions: int | Literal["auto"] = Field(
        "auto",
        description="generate units running at once; auto runs enough to fill max_in_flight, plus one "
        "so a unit's tail never idles the editors",
    )

    @field_validator("max_in_flight", "concurrent_partitions")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if value != "auto" and value < 1:
            raise ValueError(f"{value} must be auto or 1 or more")
        return value

    ray_address: str | None = Field(None, description="join this Ray cluster; default starts a local one")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray cluster")
    state_dir: str | None = Field(None, description="Prefect/Ray state; default <output>/_state")
    backend_retries: int = Field(2, ge=0, le=10, description="retries of a failed backend call")
    unit_retries: int = Field(1, ge=0, le=10, description="retries of a failed unit before the build stops")
    journal_every: int = Field(
        16, ge=1, description="save finished trajectories every N, so a crash mid-unit loses at most N"
    )
    max_failed_fraction: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="share of pairs whose rollout failed for good (e.g. unparseable answers) above which "
        "the build exits non-zero; pairs a backend could not answer always leave the build unfinished",
    )
    llm_cache: str = Field(
        "output",
        description="model answer cache: output (<output>/cache/llm, shared by all nodes), local (the run "
        "state on this machine), off, or a path / s3:// URL",
    )

    @field_validator("llm_cache")
    @classmethod
    def _llm_cache(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("llm_cache is empty; use output, local, off, or a path / s3:// URL")
        return value


# Backend fields that change throughput or cost, never the data.
SCALING_FIELDS = (
    "resources",
    "num_actors",
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "timeout_s",
    "price",
)


class BuildConfig(_Strict):
    name: str = "editthinker-data"
    seed: int = 0
    source: SourceConfig
    editors: list[EditorSpec] = Field(default_factory=lambda: [EditorSpec()])
    expert: BackendSpec = BackendSpec()
    scorer: BackendSpec = BackendSpec()
    thinker: BackendSpec | None = Field(
        None,
        description="one model that scores and refines (EditThinker's own format); replaces expert and scorer",
    )
    loop: LoopConfig = LoopConfig()
    selection: SelectionConfig = SelectionConfig()
    output: OutputConfig = OutputConfig()
    run: RunConfig = RunConfig()

    @field_validator("editors")
    @classmethod
    def _editors(cls, editors: list[EditorSpec]) -> list[EditorSpec]:
        if not editors:
            raise ValueError("no editors; list at least one, e.g. [{kind: procedural}]")
        names = [e.name for e in editors]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"editor names {dupes} repeat; give each editor a distinct name")
        return editors

    def backend_specs(self) -> list[tuple[str, BackendSpec]]:
        """(role, spec) of every backend this build runs."""
        judges = (
            [("thinker", self.thinker)]
            if self.thinker
            else [("expert", self.expert), ("scorer", self.scorer)]
        )
        return [("editor", e) for e in self.editors] + judges

    def fingerprint(self) -> str:
        """Hash of everything that changes the data: not output location, run tuning, or how
        many actors, CPUs/GPUs and requests per minute a backend gets (a resumed build may
        scale its cluster)."""
        data = self.model_dump(
            exclude={
                "output": {"dir", "license", "exports", "report", "s3_endpoint_url", "s3_region"},
                "run": True,
                "editors": {"__all__": set(SCALING_FIELDS)},
                **{role: set(SCALING_FIELDS) for role in ("expert", "scorer", "thinker")},
            }
        )
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config model that holds the key at `loc` (list indexes skipped), for "did you mean"."""
    model: type[BaseModel] = BuildConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        inner = _inner_model(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    model = _model_at(loc)
    if model is None or not loc:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _format_errors(
    err: ValidationError, origin: str, overrides: dict[tuple[str, ...], str] | None = None
) -> str:
    overrides = overrides or {}
    lines = [f"invalid config {origin}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key" + (
                _did_you_mean(e["loc"]) or "; check the spelling against configs/demo.yaml"
            )
        elif e["type"] == "missing":
            msg = "required key is missing; add it (see configs/demo.yaml)"
        got = e.get("input")
        shown = "" if e["type"] == "missing" or isinstance(got, dict) else f" (got {got!r})"
        path = tuple(str(p) for p in e["loc"] if not isinstance(p, int))
        var = next((v for p, v in overrides.items() if path[: len(p)] == p), None)
        where = f" (set by the environment variable {var})" if var else ""
        lines.append(f"  {loc}{where}: {msg}{shown}")
    return "\n".join(lines)


def _apply_env_overrides(
    data: dict[str, Any], environ: dict[str, str], overrides: dict[tuple[str, ...], str] | None = None
) -> dict[str, Any]:
    """EDITTHINKER__RUN__MAX_IN_FLIGHT=64 sets run.max_in_flight (value parsed as YAML);
    `overrides` collects which key each variable set, so an error names the variable."""
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            raise ConfigError(f"{name}: names no config key; use e.g. EDITTHINKER__LOOP__MAX_TURNS=8")
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {'.'.join(path)} does not name a config key")
        try:
            node[path[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"{name}: its value {raw!r} is not valid YAML ({err.problem})") from None
        if overrides is not None:
            overrides[tuple(path)] = name
    return data


def _resolve_model_path(backend: Any, base_dir: Path) -> None:
    """`model: ./models/x` (or `params.model_path`, a scorer's `params.prompt_dir`) is a folder
    next to the config file; a Hub id (`org/name`) or a served model name never starts with a
    dot, so it is left alone."""
    if not isinstance(backend, dict):
        return
    for holder in (backend, backend.get("params")):
        for key in ("model", "model_path", "prompt_dir"):
            model = holder.get(key) if isinstance(holder, dict) else None
            if isinstance(model, str) and model.startswith(("./", "../")):
                holder[key] = str((base_dir / model).resolve())


def _resolve(value: Any, base_dir: Path) -> Any:
    if isinstance(value, str) and "://" not in value and not Path(value).is_absolute():
        return str((base_dir / value).resolve())
    return value


def _resolve_source_paths(src: dict[str, Any], base_dir: Path) -> None:
    src["manifest"] = _resolve(src.get("manifest"), base_dir) if src.get("manifest") is not None else None
    if src["manifest"] is None:
        del src["manifest"]
    for spec in src.get("inputs") or []:
        if not isinstance(spec, dict):
            continue
        if "path" in spec:
            spec["path"] = _resolve(spec["path"], base_dir)
        roots = spec.get("allowed_roots")
        if isinstance(roots, list):
            spec["allowed_roots"] = [_resolve(r, base_dir) for r in roots]
        options = spec.get("options")
        if isinstance(options, dict):
            for key in PATH_OPTIONS:
                if key in options:
                    options[key] = _resolve(options[key], base_dir)


def parse_config(
    data: dict[str, Any], *, base_dir: Path | None = None, origin: str = "<dict>", environ=None
) -> BuildConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {origin}: the top level must be a mapping of sections")
    overrides: dict[tuple[str, ...], str] = {}
    data = _apply_env_overrides(
        json.loads(json.dumps(data)), dict(os.environ if environ is None else environ), overrides
    )
    src = data.get("source")
    if base_dir is not None and isinstance(src, dict):
        _resolve_source_paths(src, base_dir)
    if base_dir is not None:
        editors = data.get("editors") if isinstance(data.get("editors"), list) else []
        for backend in [*editors, data.get("expert"), data.get("scorer"), data.get("thinker")]:
            _resolve_model_path(backend, base_dir)
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, origin, overrides)) from None


def load_config(path: str | Path, *, environ=None) -> BuildConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; start from configs/demo.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    return parse_config(data, base_dir=path.parent.resolve(), origin=str(path), environ=environ)
