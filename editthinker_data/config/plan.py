"""`plan:`: the priors `editthinker-data plan` uses where no calibration run measured them.

Nothing here changes the data (the fingerprint leaves the section out); it only says what a
build is expected to cost before it starts. Every value is an assumption until a
`plan --calibrate N` run replaces it with a measurement.
"""

from __future__ import annotations

from pydantic import Field

from editthinker_data.config.base import Strict


class EditorPrior(Strict):
    """One editor pool's cost per edit."""

    edit_seconds: float = Field(
        ..., gt=0, description="seconds one edit holds one actor (a batch's time / its size)"
    )
    gpus: float | None = Field(
        None,
        ge=0,
        description="GPUs held per actor; default the editor's resources.num_gpus (set it for an http "
        "editor, whose GPUs sit behind its service: GPUs per concurrent request)",
    )


class RolePrior(Strict):
    """One expert, scorer or thinker role's cost per model request."""

    input_tokens: float = Field(0.0, ge=0, description="prompt tokens per request (images included)")
    output_tokens: float = Field(0.0, ge=0, description="completion tokens per request")
    request_seconds: float = Field(5.0, gt=0, description="seconds one request takes to answer")


class PlanConfig(Strict):
    turns_per_pair: float | None = Field(
        None,
        ge=1,
        description="mean turns (edits) a trajectory takes; at most loop.max_turns. Unset: run "
        "`plan --calibrate N` to measure it",
    )
    max_turns_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of trajectories that run to loop.max_turns (they end without a final "
        "critique, so one expert call fewer)",
    )
    editors: dict[str, EditorPrior] = Field(
        default_factory=dict, description="editor name -> its cost per edit"
    )
    roles: dict[str, RolePrior] = Field(
        default_factory=dict, description="expert, scorer or thinker -> its cost per request"
    )
