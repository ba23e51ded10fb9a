"""The records every stage passes along, and their WebDataset / JSON encodings.

Pure: no Prefect, no Ray, no model libraries. Images travel in memory as PIL images and
are encoded to PNG only at the shard boundary (`encode_png` is deterministic, so the same
pixels always give the same bytes).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal

from PIL import Image

TASK_TYPES: tuple[str, ...] = ("subject-driven", "style", "background", "reasoning", "other")
TaskType = Literal["subject-driven", "style", "background", "reasoning", "other"]

StopReason = Literal["expert_satisfied", "unchanged_instruction", "max_turns", "failed"]

_KEY_OK = re.compile(r"[^A-Za-z0-9_-]+")


def safe_key(raw: str) -> str:
    """A WebDataset key: no dots (webdataset splits member names on the first dot)."""
    key = _KEY_OK.sub("-", raw).strip("-")
    if not key:
        raise ValueError(f"cannot make a sample key from {raw!r}")
    return key


def encode_png(image: Image.Image) -> bytes:
    """Deterministic PNG bytes: RGB, fixed compression, no metadata chunks."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def decode_image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.convert("RGB")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Role(StrEnum):
    """What a backend does in the loop; a thinker scores and refines in one call."""

    EDITOR = "editor"
    EXPERT = "expert"
    SCORER = "scorer"
    THINKER = "thinker"


@dataclass(frozen=True)
class Scores:
    """VIEScore-style scores on 0-10. `overall` = sqrt(semantic * quality)."""

    semantic: float
    quality: float
    details: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("semantic", "quality"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 10.0) or math.isnan(value):
                raise ValueError(f"score {name}={value!r} is outside 0-10")

    @property
    def overall(self) -> float:
        return math.sqrt(self.semantic * self.quality)

    def to_dict(self) -> dict[str, Any]:
        """`details` only when there are sub-scores: an empty dict is a struct with no fields,
        which Arrow cannot write to Parquet (so `datasets` and the Hub's viewer could not)."""
        d: dict[str, Any] = {
            "semantic": round(self.semantic, 4),
            "quality": round(self.quality, 4),
            "overall": round(self.overall, 4),
        }
        if self.details:
            d["details"] = {k: round(v, 4) for k, v in sorted(self.details.items())}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scores:
        return cls(float(d["semantic"]), float(d["quality"]), dict(d.get("details") or {}))


@dataclass
class SourcePair:
    """One (I_src, T_s) pair after pooling. `image` is None until the pair's rollout starts
    (a generate unit reads source images in a bounded window), and an object reference where
    images travel between cluster workers."""

    id: str
    instruction: str
    image: Image.Image | None
    task_type: str
    image_sha256: str
    origin: str = ""  # where it came from (manifest path + line), for error messages
    editor: str = ""  # assigned by pooling
    partition: int = -1  # assigned by pooling

    @property
    def key(self) -> str:
        return safe_key(self.id)


@dataclass(frozen=True)
class Refinement:
    """The expert's answer for one turn (the released code's JSON, typed)."""

    reasoning: str
    instruction: str
    stop: bool


@dataclass
class Turn:
    """Turn t: the instruction T_t given to the editor, the reasoning R_t that produced it
    (None at turn 1, where T_1 = T_s), the edited image I_t and its scores S_t."""

    index: int
    instruction: str
    image: Image.Image
    scores: Scores
    seed: int
    reasoning: str | None = None
    editor: str = ""
    expert: str = ""
    scorer: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "instruction": self.instruction,
            "reasoning": self.reasoning,
            "scores": self.scores.to_dict(),
            "seed": self.seed,
            "editor": self.editor,
            "expert": self.expert,
            "scorer": self.scorer,
        }  # timings live in the trajectory index, not in shards: shard bytes stay reproducible


@dataclass(frozen=True)
class TurnFailure:
    """Why a rollout ended early, classified where the error arose. A `transient` failure
    (backend unreachable, timing out, failing after its retries) leaves the trajectory
    unfinished: it is not journaled, and a rerun retries it. Any other failure is final and
    counted as `reason` (e.g. `expert_unparseable`) against the backend that caused it."""

    turn: int
    stage: str  # edit | score | refine | think
    role: str  # editor | scorer | expert | thinker
    backend: str
    transient: bool
    reason: str

    @property
    def who(self) -> str:
        return f"{self.role} {self.backend!r}"


@dataclass
class Trajectory:
    """One think-while-edit rollout. `final` is the expert's last answer when it ended the
    trajectory (stop flag or unchanged instruction); `error` says why a turn failed, and
    `failure` classifies it."""

    pair: SourcePair
    turns: list[Turn]
    stop_reason: StopReason
    final: Refinement | None = None
    error: str | None = None
    failure: TurnFailure | None = None

    @property
    def transient(self) -> bool:
        """Unfinished: a backend could not answer; not a result to keep."""
        return self.failure is not None and self.failure.transient

    @property
    def key(self) -> str:
        return self.pair.key

    def overall_scores(self) -> list[float]:
        return [t.scores.overall for t in self.turns]


def thinker_output(reasoning: str, semantic: float, quality: float, instruction: str) -> str:
    """The answer the thinker is trained to give, in the paper's tag format."""
    score = json.dumps({"semantic": round(semantic, 2), "quality": round(quality, 2)})
    return f"<think>{reasoning}</think><score>{score}</score><answer>{instruction}</answer>"


@dataclass
class StepSample:
    """One training sample: the thinker sees (I_src, I_{t-1}, T_s, T_{t-1}) and answers
    (R_t, S_{t-1}, T_t). The score in the target is the score of the image the thinker
    sees, so the thinker can be trained to judge what is in front of it; `result_scores`
    is S_t, the score the refinement earned (what RL rewards)."""

    key: str
    trajectory: str
    turn: int  # t, the refinement's turn index (2..k), or k+1 for a stop sample
    task_type: str
    editor: str
    source_instruction: str
    previous_instruction: str
    reasoning: str
    scores: Scores
    instruction: str
    stop: bool
    result_scores: Scores | None
    split: str = ""
    prompt_templates: dict[str, str] = field(default_factory=dict)
    # where the source pair came from: source input, original id and label, licence
    provenance: dict[str, str] = field(default_factory=dict)
    source_image: Image.Image | None = None
    previous_image: Image.Image | None = None

    def thinker_output(self) -> str:
        """The answer the thinker is trained to give, in the paper's tag format."""
        score = json.dumps(
            {"semantic": round(self.scores.semantic, 2), "quality": round(self.scores.quality, 2)}
        )
        return f"<think>{self.reasoning}</think><score>{score}</score><answer>{self.instruction}</answer>"

    def meta(self) -> dict[str, Any]:
        d = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("source_image", "previous_image", "scores", "result_scores")
        }
        d["target"] = self.thinker_output()
        d["scores"] = self.scores.to_dict()
        d["result_scores"] = self.result_scores.to_dict() if self.result_scores else None
        return d

    def to_wds(self) -> dict[str, Any]:
        """Every step sample has the same members: json, src.png, prev.png."""
        if self.source_image is None or self.previous_image is None:
            raise ValueError(f"step {self.key}: images are missing")
        return {
            "__key__": self.key,
            "json": self.meta(),
            "src.png": encode_png(self.source_image),
            "prev.png": encode_png(self.previous_image),
        }


def trajectory_turn_records(traj: Trajectory, extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Trajectory shards hold one sample per turn (members json + png) so that every
    sample has the same member set however many turns a trajectory ran; source images
    live once in the pool, referenced by sha256."""
    out = []
    n = len(traj.turns)
    for turn in traj.turns:
        meta = {
            "trajectory": traj.key,
            "pair_id": traj.pair.id,
            "task_type": traj.pair.task_type,
            "editor": traj.pair.editor,
            "source_instruction": traj.pair.instruction,
            "source_sha256": traj.pair.image_sha256,
            "num_turns": n,
            "stop_reason": traj.stop_reason,
            "final": asdict(traj.final) if traj.final and turn.index == n else None,
            "error": traj.error if turn.index == n else None,
            **turn.meta(),
            **(extra or {}),
        }
        out.append({"__key__": f"{traj.key}_t{turn.index}", "json": meta, "png": encode_png(turn.image)})
    return out
