"""One YAML file describes a build: its sections, validated on load, before any work starts.
Secrets never appear in the file: a backend names the environment variable that holds its
key (`api_key_env`)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from editthinker_data.config.base import _SECRET_NAME, Strict
from editthinker_data.config.plan import PlanConfig
from editthinker_data.config.sources import SourceConfig
from editthinker_data.core.schema import Role


class Resources(Strict):
    """What one actor asks Ray for."""

    num_cpus: float = Field(0.25, ge=0)
    num_gpus: float = Field(0, ge=0)


class Price(Strict):
    """USD per million tokens, for the cost estimate in stats.json."""

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)


class BackendSpec(Strict):
    """An editor, expert or scorer backend. `kind` picks the family (one file each);
    `params` go to that family's constructor, and so do the remote-model fields below when
    set (`kind: openai`)."""

    kind: str = "procedural"
    name: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    base_url: str | list[str] | None = Field(
        None,
        description="OpenAI-compatible endpoint, e.g. http://vllm:8000/v1; for kind http a list of editor "
        "servers, used round-robin",
    )
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
    min_replicas: int | None = Field(
        None,
        ge=0,
        description="`serve` only: autoscale between this many replicas and num_actors (a build always "
        "starts num_actors)",
    )

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
    def _base_url_list(self) -> BackendSpec:
        if isinstance(self.base_url, list):
            if self.kind != "http":
                raise ValueError(
                    f"base_url: a list of addresses is for kind http (editor servers used round-robin); "
                    f"kind {self.kind} takes one address"
                )
            if not self.base_url:
                raise ValueError("base_url: the list is empty; give at least one editor server's address")
        return self

    @model_validator(mode="after")
    def _default_name(self) -> BackendSpec:
        if self.min_replicas is not None and self.min_replicas > self.num_actors:
            raise ValueError(
                f"min_replicas={self.min_replicas} is above num_actors={self.num_actors}; num_actors is the "
                "most replicas `serve` scales to"
            )
        if not self.name:
            object.__setattr__(self, "name", self.kind)
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.name):
            raise ValueError(f"name {self.name!r} may only hold letters, digits, '-' and '_'")
        return self


class EditorSpec(BackendSpec):
    ratio: float = Field(1.0, gt=0, description="share of the pooled pairs this editor gets")


# Options of source readers that name files or folders: resolved against the config file.
class LoopConfig(Strict):
    max_turns: int = Field(5, ge=1, le=32, description="the paper uses 5; its ablations go to 8")
    seed_policy: Literal["fixed", "per_turn"] = Field(
        "fixed", description="fixed: every turn uses the build seed (the released code's seed 0)"
    )


class BalanceConfig(Strict):
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


class SelectionConfig(Strict):
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


Export = Literal["llamafactory", "easyr1"]
EXPORTS: tuple[Export, ...] = ("llamafactory", "easyr1")


class OutputConfig(Strict):
    dir: str = "runs/demo"
    license: str = Field("other", description="licence id for the dataset card, e.g. cc-by-4.0")
    exports: list[Export] = Field(
        default_factory=lambda: list(EXPORTS),
        description="trainer exports written after the build",
    )
    report: bool = Field(True, description="write the dataset card, figures and gallery after the build")
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, R2, ...); default AWS"
    )
    s3_region: str | None = None
    shard_max_samples: int = Field(1000, ge=1)
    shard_max_bytes: int = Field(1_000_000_000, ge=1024)
    versions: bool = Field(
        False,
        description="the output is a dataset root: each build writes a new version <root>/vNNNN/, reusing "
        "unchanged pairs' trajectories, and moves <root>/latest to it (docs/versions-and-publishing.md)",
    )
    trajectory_store: str | None = Field(
        None,
        description="content-addressed store of finished trajectories (a path or s3:// URL): a build reuses "
        "every pair found there and adds what it runs; versioned builds use <root>/_store",
    )


class RunConfig(Strict):
    partition_size: int | Literal["auto"] = Field(
        "auto",
        description="source pairs per generate unit; auto sizes units from the pool and the editors "
        "(hundreds of units for a paper-size pool, never fewer pairs than a unit's fixed cost repays)",
    )
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

    @field_validator("partition_size", "max_in_flight", "concurrent_partitions")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:  # else "auto": the field admits no other string
            raise ValueError(f"{value} must be auto or 1 or more")
        return value

    executor: Literal["ray", "local"] = Field(
        "ray",
        description="where units run: ray (a local cluster, or run.ray_address), or local (this process, "
        "one rollout at a time, no Ray: for debugging a backend or a laptop without Ray)",
    )
    ray_address: str | None = Field(None, description="join this Ray cluster; default starts a local one")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray cluster")
    state_dir: str | None = Field(None, description="Prefect/Ray state; default <output>/_state")
    backend_retries: int = Field(2, ge=0, le=10, description="retries of a failed backend call")
    outage_wait_s: float = Field(
        1800.0,
        ge=0,
        description="how long a build waits, paused, for a backend that stopped answering (its circuit "
        "breaker open) before it ends unfinished (exit 75; the same command finishes it)",
    )
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
    "min_replicas",
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "timeout_s",
    "price",
)


class BuildConfig(Strict):
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
    plan: PlanConfig = Field(PlanConfig(), description="priors for `editthinker-data plan`")
    source_content: dict[str, dict[str, Any]] | None = Field(
        None,
        description="set by the build (sources/content.py): each input's files, bytes and content hash; part "
        "of the fingerprint, so a changed input is never reused",
    )

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
        editors: list[tuple[str, BackendSpec]] = [(Role.EDITOR, e) for e in self.editors]
        judges: list[tuple[str, BackendSpec]] = (
            [(Role.THINKER, self.thinker)]
            if self.thinker
            else [(Role.EXPERT, self.expert), (Role.SCORER, self.scorer)]
        )
        return editors + judges

    def fingerprint(self, content: bool = True) -> str:
        """Hash of everything that changes the data: not output location, run tuning, plan priors, or how
        many actors, CPUs/GPUs and requests per minute a backend gets (a resumed build may
        scale its cluster). `content=False`: the config alone, without the sources' content."""
        output_only = {"dir", "license", "exports", "report", "s3_endpoint_url", "s3_region"}
        data = self.model_dump(
            exclude={
                "output": output_only | {"versions", "trajectory_store"},
                # without content (or before the build measured it) the fingerprint is the config's alone
                **({} if content and self.source_content is not None else {"source_content": True}),
                "run": True,
                "plan": True,
                "editors": {"__all__": set(SCALING_FIELDS)},
                **{str(role): set(SCALING_FIELDS) for role in (Role.EXPERT, Role.SCORER, Role.THINKER)},
            }
        )
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
