"""Dataset versions and incremental builds.

With `output.versions` the output is a dataset root: each build writes a complete new
version `<root>/vNNNN/` and, when it finishes, `<root>/latest` names it. The versions of a
root share a content-addressed trajectory store (`<root>/_store`), the model answer cache
(`<root>/cache/llm`) and the run state, so a new version reruns only the pairs whose
content or rollout settings changed, and pays no model call twice. A version's shards are
byte for byte those of a fresh build of the same content: reused trajectories are the
stored results of the same rollout.

Here: the rollout key, the generate stage's store hooks (`Reuse`), picking the version a
build writes (`plan_version`), moving `latest`, and the `changes` block of stats.json.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from editthinker_data.backends import prompt_templates
from editthinker_data.config import SCALING_FIELDS, BuildConfig, ConfigError
from editthinker_data.core.layout import (
    LATEST,
    MANIFEST_FILE,
    POOL_FILE,
    POOL_UNIT,
    ROOT_ANSWER_CACHE,
    SOURCE_CONTENT_CACHE,
    STORE,
    VERSION_FILE,
    marker_name,
    version_name,
    version_number,
)
from editthinker_data.core.reports import GenerateReport
from editthinker_data.core.runenv import state_dir_for
from editthinker_data.core.schema import SourcePair, Trajectory
from editthinker_data.io import trajectory_store
from editthinker_data.io.storage import Storage, is_remote, join_url, local_path, split_url
from editthinker_data.io.tables import read_parquet
from editthinker_data.io.trajectory_store import TrajectoryStore
from editthinker_data.sources.content import describe_changes, with_source_content
from editthinker_data.stages.base import clear_output, output_storage

log = logging.getLogger(__name__)
EXAMPLES = 5  # pair ids shown per kind of change


def rollout_settings(cfg: BuildConfig) -> dict[str, Any]:
    """Every config part that changes a rollout, per editor: the editor's and the judges'
    specs (not their scaling), the loop, the seed and the prompt templates."""
    judges = {
        role: spec.model_dump(exclude=set(SCALING_FIELDS))
        for role, spec in cfg.backend_specs()[len(cfg.editors) :]
    }
    common = {
        "format": trajectory_store.FORMAT,
        "judges": judges,
        "loop": cfg.loop.model_dump(),
        "seed": cfg.seed,
        "templates": prompt_templates(cfg.backend_specs()),
    }
    return {
        e.name: {**common, "editor": e.model_dump(exclude={*SCALING_FIELDS, "ratio"})} for e in cfg.editors
    }


def rollout_key(settings: dict[str, Any], pair: Any) -> str:
    """The store key of a pair (SourcePair or PoolEntry): its content plus its editor's settings."""
    parts = {
        "instruction": pair.instruction,
        "image_sha256": pair.image_sha256,
        "task_type": pair.task_type,
        "editor": pair.editor,
        "settings": settings[pair.editor],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class Reuse:
    """The generate stage's two hooks: `fill` takes every pair the store holds before the
    unit runs, `put` stores each finished trajectory. Without a store both do nothing."""

    def __init__(self, cfg: BuildConfig, store: TrajectoryStore | None):
        self.store = store
        self.settings = rollout_settings(cfg) if store else {}
        self.lock = threading.Lock()
        self.broken: str | None = None  # the first failed put: the rest are skipped, the build goes on
        self.thinker = cfg.thinker is not None

    @classmethod
    def open(cls, cfg: BuildConfig) -> Reuse:
        url = cfg.output.trajectory_store
        return cls(cfg, TrajectoryStore(output_storage(cfg, url)) if url else None)

    def fill(self, pairs: list[SourcePair], finished: dict[int, Trajectory]) -> list[str]:
        """Add the stored trajectory of every pair not finished yet; returns their pair ids."""
        if self.store is None:
            return []
        reused = []
        for i, pair in enumerate(pairs):
            if i not in finished:
                traj = self.store.get(rollout_key(self.settings, pair), pair)
                if traj is not None:
                    finished[i] = self._stop_recorded(traj)
                    reused.append(pair.id)
        return reused

    def _stop_recorded(self, traj: Trajectory) -> Trajectory:
        """Thinker trajectories stored before the loop recorded a repeated instruction as the
        stop say `stop: false`; reused as they are, a version's shards would differ from a
        fresh build's. The stored rollout is right, only its flag is stale: set it."""
        final = traj.final
        if self.thinker and traj.stop_reason == "expert_satisfied" and final and not final.stop:
            traj.final = replace(final, stop=True)
        return traj

    def put(self, traj: Trajectory) -> None:
        if self.store is None or traj.transient or self.broken:
            return
        try:
            self.store.put(rollout_key(self.settings, traj.pair), traj)
        except Exception as err:  # the trajectory is journaled and written; only its reuse is lost
            with self.lock:
                self.broken = f"{type(err).__name__}: {err}"
            log.warning("trajectory store %s: cannot store (%s); later versions rerun these pairs",
                        self.store.storage.url, self.broken)  # fmt: skip


@dataclass
class VersionPlan:
    """Where a versioned build goes: `output` is `<root>/<name>`; `cfg` shares the root's
    store and answer cache; `up_to_date` when the latest version has this config and content."""

    root: str
    name: str
    previous: str | None
    cfg: BuildConfig
    state_dir: str
    notes: list[str] = field(default_factory=list)
    up_to_date: bool = False

    @property
    def output(self) -> str:
        return join_url(self.root, self.name)


def resolve_root(target: str) -> str:
    return target if is_remote(target) else str(local_path(target).expanduser().resolve())


def measure_sources(cfg: BuildConfig, output: str, state_dir: str | None = None) -> BuildConfig:
    """The config with its inputs' content measured; hashes are cached in the run state of
    `output` (a cache that cannot be written only costs a rehash)."""
    state = state_dir_for(resolve_root(output), state_dir or cfg.run.state_dir)
    return with_source_content(cfg, Path(state) / SOURCE_CONTENT_CACHE)


def read_latest(root: Storage) -> str | None:
    if not root.exists(LATEST):
        return None
    name = root.read_bytes(LATEST).decode().strip()
    if version_number(name) is None:
        raise ConfigError(
            f"{root.url}/{LATEST} holds {name!r}, not a version name like v0003; fix or delete it"
        )
    return name


def plan_version(cfg: BuildConfig, target: str, state_dir: str | None = None) -> VersionPlan:
    """Pick the version a build into the root `target` writes: the newest one if it never
    finished (continued when it is of this config and content, replaced otherwise), else
    the next number; none when the latest version already holds this config and content."""
    root_url = resolve_root(target)
    state = str(state_dir_for(root_url, state_dir or cfg.run.state_dir))
    cfg = with_source_content(cfg, Path(state) / SOURCE_CONTENT_CACHE)
    root = output_storage(cfg, root_url)
    latest = read_latest(root)
    newest = version_number(latest) if latest else 0
    assert newest is not None  # read_latest accepts only version names
    while root.exists(f"{version_name(newest + 1)}/{VERSION_FILE}"):  # started after latest
        newest += 1
    update: dict[str, Any] = {"trajectory_store": cfg.output.trajectory_store or join_url(root_url, STORE)}
    run = {"llm_cache": join_url(root_url, ROOT_ANSWER_CACHE)} if cfg.run.llm_cache == "output" else {}
    shared = cfg.model_copy(
        update={"output": cfg.output.model_copy(update=update), "run": cfg.run.model_copy(update=run)}
    )
    plan = VersionPlan(root_url, version_name(newest + 1), latest, shared, state)
    if latest:
        plan.notes.extend(_since(cfg, root, latest))
    if newest and version_name(newest) != latest:
        unfinished = version_name(newest)
        plan.name = unfinished
        here = output_storage(cfg, plan.output)
        marker = marker_name("pool", POOL_UNIT)
        theirs = here.read_json(marker).get("fingerprint") if here.exists(marker) else None
        if theirs in (None, cfg.fingerprint()):
            plan.notes.append(f"{unfinished} did not finish: continuing it")
        else:
            cleared = clear_output(here)
            plan.notes.append(
                f"{unfinished} did not finish and was of another config or other sources: replacing it "
                f"({cleared} objects deleted)"
            )
    elif latest and _fingerprint_of(root, latest) == cfg.fingerprint():
        plan.up_to_date = True
        plan.name = latest
        return plan
    here = output_storage(cfg, plan.output)
    here.write_json(VERSION_FILE, {"version": plan.name, "previous": latest})
    return plan


def _fingerprint_of(root: Storage, version: str) -> str | None:
    name = f"{version}/{MANIFEST_FILE}"
    return root.read_json(name).get("config_fingerprint") if root.exists(name) else None


def _since(cfg: BuildConfig, root: Storage, latest: str) -> list[str]:
    """What differs from the latest version: its sources' content, its config."""
    name = f"{latest}/{marker_name('pool', POOL_UNIT)}"
    if not root.exists(name):
        return []
    marker = root.read_json(name)
    notes = [
        f"since {latest}: {line}"
        for line in describe_changes(marker.get("sources"), cfg.source_content or {})
    ]
    theirs = marker.get("config_fingerprint", marker.get("fingerprint"))
    if theirs != cfg.fingerprint(content=False):
        notes.append(
            f"since {latest}: the config changed (fingerprint {theirs} -> {cfg.fingerprint(content=False)})"
        )
    return notes


def finish_version(plan: VersionPlan) -> None:
    """Point `<root>/latest` at the version just finished (one small object, written whole)."""
    output_storage(plan.cfg, plan.root).write_bytes(LATEST, f"{plan.name}\n".encode())


def _pair_ids(storage: Storage) -> set[str]:
    return {r["id"] for r in read_parquet(storage, POOL_FILE)} if storage.exists(POOL_FILE) else set()


def version_changes(
    cfg: BuildConfig, storage: Storage, generate_reports: list[GenerateReport]
) -> dict[str, Any]:
    """stats.json's `changes` block for a version: pairs added, removed, rebuilt (in both
    versions, run again) and unchanged (in both, reused from the store), with examples.
    Empty for a build that is not a version."""
    if not storage.exists(VERSION_FILE):
        return {}
    info = storage.read_json(VERSION_FILE)
    previous = info.get("previous")
    now = _pair_ids(storage)
    before = (
        _pair_ids(output_storage(cfg, join_url(split_url(storage.url)[0], previous))) if previous else set()
    )
    reused = {pid for r in generate_reports for pid in r.reused}
    kinds = {
        "added": sorted(now - before),
        "removed": sorted(before - now),
        "rebuilt": sorted(p for p in now & before if p not in reused),
        "unchanged": sorted(p for p in now & before if p in reused),
    }
    return {
        "changes": {
            "version": info["version"],
            "previous": previous,
            "pairs": len(now),
            **{k: len(v) for k, v in kinds.items()},
            "reused": len(reused),
            "examples": {k: v[:EXAMPLES] for k, v in kinds.items() if k != "unchanged"},
        }
    }
