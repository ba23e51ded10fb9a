"""Finished trajectories stored by content, so a build of a new dataset version reruns only
the pairs whose content or rollout settings changed (the key is made by
stages/versions.py: pair content plus the config parts that change a rollout).

One object per trajectory: a small tar with `trajectory.json` (every turn's instruction,
reasoning, exact scores, seed, backends and timings; the stop reason, final answer and
failure) and one PNG per turn. The pair itself is not stored: a hit is reattached to the
pair that asked for it, as the journal does, so a reused trajectory writes the same shard
bytes as a fresh rollout. Scores keep full precision (selection compares them); PNGs are
`encode_png`'s deterministic bytes, which decode to the pixels the shards hold.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import asdict
from typing import Any

from editthinker_data.core.layout import stored_trajectory
from editthinker_data.core.schema import (
    Refinement,
    Scores,
    SourcePair,
    Trajectory,
    Turn,
    TurnFailure,
    decode_image,
    encode_png,
)
from editthinker_data.io.shards import member_bytes
from editthinker_data.io.storage import Storage

FORMAT = 1  # bump when the encoding changes; part of every key (stages/versions.py)


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def encode(traj: Trajectory) -> bytes:
    meta = {
        "format": FORMAT,
        "stop_reason": traj.stop_reason,
        "final": asdict(traj.final) if traj.final else None,
        "error": traj.error,
        "failure": asdict(traj.failure) if traj.failure else None,
        "turns": [
            {
                "index": t.index,
                "instruction": t.instruction,
                "reasoning": t.reasoning,
                "semantic": t.scores.semantic,
                "quality": t.scores.quality,
                "details": t.scores.details,
                "seed": t.seed,
                "editor": t.editor,
                "expert": t.expert,
                "scorer": t.scorer,
                "timings": t.timings,
            }
            for t in traj.turns
        ],
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _member(tar, "trajectory.json", json.dumps(meta, sort_keys=True).encode())
        for t in traj.turns:
            _member(tar, f"t{t.index}.png", encode_png(t.image))
    return buf.getvalue()


def decode(data: bytes, pair: SourcePair) -> Trajectory:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {m.name: member_bytes(tar, m) for m in tar.getmembers() if m.isfile()}
    meta: dict[str, Any] = json.loads(files["trajectory.json"])
    if meta.get("format") != FORMAT:
        raise ValueError(f"stored trajectory format {meta.get('format')!r}, expected {FORMAT}")
    turns = [
        Turn(
            t["index"],
            t["instruction"],
            decode_image(files[f"t{t['index']}.png"]),
            Scores(t["semantic"], t["quality"], dict(t["details"])),
            t["seed"],
            t["reasoning"],
            t["editor"],
            t["expert"],
            t["scorer"],
            dict(t["timings"]),
        )
        for t in meta["turns"]
    ]
    return Trajectory(
        pair,
        turns,
        meta["stop_reason"],
        Refinement(**meta["final"]) if meta["final"] else None,
        meta["error"],
        TurnFailure(**meta["failure"]) if meta["failure"] else None,
    )


class TrajectoryStore:
    """get/put by key over any Storage (local folder or s3:// prefix). A damaged or
    unreadable entry is a miss: the pair runs again and its put replaces the entry."""

    def __init__(self, storage: Storage):
        self.storage = storage

    def get(self, key: str, pair: SourcePair) -> Trajectory | None:
        try:
            return decode(self.storage.read_bytes(stored_trajectory(key)), pair)
        except FileNotFoundError:
            return None
        except (tarfile.TarError, KeyError, ValueError, TypeError, OSError):
            return None

    def put(self, key: str, traj: Trajectory) -> None:
        self.storage.write_bytes(stored_trajectory(key), encode(traj))
