"""Reading a finished build back: stage counts, breakdowns, score histograms, one
trajectory turn by turn, and a re-derivation of every filter decision from the stored
scores (the check that what was kept follows the rules)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal, TypedDict

from editthinker_data.config import BuildConfig
from editthinker_data.core.layout import (
    CONFIG_FILE,
    DECISIONS_FILE,
    MANIFEST_FILE,
    STATS_FILE,
    STEPS_FILE,
    partition_of,
    trajectory_index,
)
from editthinker_data.io.shards import member_bytes
from editthinker_data.io.storage import Storage, open_storage
from editthinker_data.io.tables import read_parquet
from editthinker_data.io.trajectory_index import load_trajectory_summaries
from editthinker_data.pipeline.selection import select


class Build:
    def __init__(self, output: str | Storage, endpoint_url: str | None = None):
        self.storage = (
            output if isinstance(output, Storage) else open_storage(output, endpoint_url=endpoint_url)
        )
        if not self.storage.exists(STATS_FILE):
            raise FileNotFoundError(f"{self.storage.url} holds no finished build ({STATS_FILE} is missing)")
        self.stats: dict[str, Any] = self.storage.read_json(STATS_FILE)
        self.manifest: dict[str, Any] = self.storage.read_json(MANIFEST_FILE)
        self.config = BuildConfig.model_validate_json(self.storage.read_bytes(CONFIG_FILE))
        self.partitions = sorted(
            {partition_of(p) for p in self.storage.list("trajectories") if p.endswith(".parquet")}
        )
        self.trajectories = load_trajectory_summaries(self.storage, self.partitions)
        self._decisions: dict[str, dict[str, Any]] | None = None
        self._steps: list[dict[str, Any]] | None = None

    def decisions(self) -> dict[str, dict[str, Any]]:
        if self._decisions is None:
            rows = read_parquet(self.storage, DECISIONS_FILE)
            self._decisions = {r["trajectory"]: r for r in rows}
        return self._decisions

    def steps(self) -> list[dict[str, Any]]:
        if self._steps is None:
            self._steps = read_parquet(self.storage, STEPS_FILE)
        return self._steps

    def recheck_selection(self) -> tuple[int, list[str]]:
        """(decisions checked, mismatches) between the stored decisions and steps and the
        rules (filter, split and balancing) applied afresh to the stored scores."""
        stored = self.decisions()
        fresh = select(self.trajectories, self.config.selection, self.config.seed)
        mismatches = []
        for traj in self.trajectories:
            d = fresh.decisions[traj.key]
            s = stored.get(traj.key)
            got = None if s is None else (s["keep"], s["reason"], s["best_turn"], s.get("split"))
            if got != (d.keep, d.reason, d.best_turn, d.split):
                mismatches.append(f"{traj.key}: stored {s} but the rules give {d}")
        stored_steps = {(r["key"], r["split"]) for r in self.steps()}
        fresh_steps = {(p.key, p.split) for p in fresh.steps}
        for key, split in sorted(stored_steps - fresh_steps):
            mismatches.append(f"step {key} ({split}) is stored but the rules do not select it")
        for key, split in sorted(fresh_steps - stored_steps):
            mismatches.append(f"step {key} ({split}) is selected by the rules but not stored")
        return len(self.trajectories), mismatches

    def breakdown(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per task type and per editor: trajectories, kept, mean first and best score."""
        stored = self.decisions()
        steps = self.steps()
        out: dict[str, dict[str, dict[str, float]]] = {"task_type": {}, "editor": {}}
        for dim in ("task_type", "editor"):
            groups: dict[str, list] = defaultdict(list)
            for t in self.trajectories:
                groups[getattr(t, dim)].append(t)
            for name, trajs in sorted(groups.items()):
                first = [t.turns[0].overall for t in trajs]
                best = [max(x.overall for x in t.turns) for t in trajs]
                out[dim][name] = {
                    "trajectories": len(trajs),
                    "kept": sum(1 for t in trajs if stored.get(t.key, {}).get("keep")),
                    "turns": sum(len(t.turns) for t in trajs),
                    "mean_first": sum(first) / len(first),
                    "mean_best": sum(best) / len(best),
                    "sft_steps": sum(1 for s in steps if s[dim] == name and s["split"] == "sft"),
                    "rl_steps": sum(1 for s in steps if s[dim] == name and s["split"] == "rl"),
                }
        return out

    def histograms(self, bins: int = 10) -> dict[str, list[int]]:
        def hist(values: list[float]) -> list[int]:
            counts = [0] * bins
            for v in values:
                counts[min(int(v / (10 / bins)), bins - 1)] += 1
            return counts

        return {
            "first turn": hist([t.turns[0].overall for t in self.trajectories]),
            "best turn": hist([max(x.overall for x in t.turns) for t in self.trajectories]),
            "all turns": hist([x.overall for t in self.trajectories for x in t.turns]),
        }

    def trajectory(self, key: str) -> dict[str, Any]:
        rows = []
        for p in self.partitions:
            name = trajectory_index(p)
            either = [[("pair_id", "=", key)], [("trajectory", "=", key)]]
            rows.extend(read_parquet(self.storage, name, filters=either))
        if not rows:
            known = ", ".join(sorted(t.key for t in self.trajectories)[:8])
            raise KeyError(f"no trajectory {key!r} in this build (some ids: {known}, ...)")
        rows.sort(key=lambda r: r["turn"])
        return {"rows": rows, "decision": self.decisions().get(rows[0]["trajectory"])}

    def extract_images(self, rows: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        wanted = {f"{r['sample_key']}.png": r for r in rows}
        for shard in sorted({r["shard"] for r in rows}):
            with tarfile.open(self.storage.local_copy(shard)) as tar:
                for member in tar.getmembers():
                    if member.name in wanted:
                        target = out / member.name
                        target.write_bytes(member_bytes(tar, member))
                        written.append(target)
        return sorted(written)


Problem = Literal["mismatched", "missing", "extra"]
PROBLEMS: tuple[Problem, ...] = ("mismatched", "missing", "extra")


class Verification(TypedDict):
    """`verify`'s answer: what it checked, and each kind of problem it found."""

    checked: int  # shards
    files: int  # other files the manifest lists
    mismatched: list[str]
    missing: list[str]
    extra: list[str]


def verify(storage: Storage) -> Verification:
    """Re-read every shard the manifest lists (sha256, size, sample count) and every other
    file it lists (tables, card, figures, gallery, exports: sha256 and size), then each
    export against its `export_info.json` (row counts, every image a row names). Files under
    the listed folders that nothing lists are extra."""
    manifest = storage.read_json("manifest.json")
    listed: dict[str, dict[str, Any]] = {s["url"]: s for items in manifest["shards"].values() for s in items}
    mismatched, missing = [], []
    for url, info in sorted(listed.items()):
        try:
            data = storage.read_bytes(url)
        except FileNotFoundError:
            missing.append(url)
            continue
        problems = []
        if len(data) != info["bytes"]:
            problems.append(f"{len(data)} bytes, manifest says {info['bytes']}")
        if hashlib.sha256(data).hexdigest() != info["sha256"]:
            problems.append("sha256 differs")
        else:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                keys = {m.name.split(".", 1)[0] for m in tar.getmembers() if m.isfile()}
            if len(keys) != info["samples"]:
                problems.append(f"{len(keys)} samples, manifest says {info['samples']}")
        if problems:
            mismatched.append(f"{url}: {'; '.join(problems)}")
    on_storage = {
        n for prefix in ("trajectories", "steps") for n in storage.list(prefix) if n.endswith(".tar")
    }
    extra = sorted(on_storage - set(listed))
    files = manifest.get("files")
    if files is None:
        mismatched.append(
            "manifest.json: lists no files beside the shards (built by an older version); "
            "run `editthinker-data report` and `export` to record them"
        )
        files = {}
    contents: dict[str, bytes] = {}
    for name, info in files.items():
        try:
            data = storage.read_bytes(name)
        except FileNotFoundError:
            missing.append(name)
            continue
        problems = _size_and_hash(data, info, "manifest")
        if problems:
            mismatched.append(f"{name}: {'; '.join(problems)}")
        else:
            contents[name] = data
    covered = set(files)
    for name in sorted(n for n in files if _is_export_info(n)):
        folder = name.rsplit("/", 1)[0]
        if name in contents:
            problems, images = verify_export(storage, folder, json.loads(contents[name]))
            mismatched.extend(problems)
            covered |= images
        else:  # reported above; without it nothing says which files belong to the folder
            covered |= set(storage.list(folder))
    for prefix in RELEASE_FOLDERS:
        extra.extend(n for n in storage.list(prefix) if n not in covered)
    return {
        "checked": len(listed),
        "files": len(files),
        "mismatched": mismatched,
        "missing": sorted(missing),
        "extra": sorted(extra),
    }


RELEASE_FOLDERS = ("exports", "figures", "gallery")


def _is_export_info(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 3 and parts[0] == "exports" and parts[2] == "export_info.json"


def _size_and_hash(data: bytes, info: dict[str, Any], where: str) -> list[str]:
    problems = []
    if len(data) != info["bytes"]:
        problems.append(f"{len(data)} bytes, {where} says {info['bytes']}")
    if hashlib.sha256(data).hexdigest() != info["sha256"]:
        problems.append("sha256 differs")
    return problems


def _rows(name: str, data: bytes) -> list[Any]:
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    rows = json.loads(data)
    if not isinstance(rows, list):
        raise ValueError(f"holds a JSON {type(rows).__name__}, not a list of rows")
    return rows


def verify_export(storage: Storage, folder: str, info: dict[str, Any]) -> tuple[list[str], set[str]]:
    """(problems, image names checked) of one export folder against its export_info.json:
    each file's sha256, size and row count, and every image a row names exists and holds the
    bytes its content-derived name says."""
    problems: list[str] = []
    refs: set[str] = set()
    damaged = False
    img = info.get("image_files") or {}
    for file, entry in sorted(info.get("files", {}).items()):
        name = f"{folder}/{file}"
        try:
            data = storage.read_bytes(name)
        except FileNotFoundError:
            problems.append(f"{name}: missing (export_info.json lists it)")
            damaged = damaged or "rows" in entry
            continue
        found = _size_and_hash(data, entry, "export_info.json")
        if "rows" in entry:
            try:
                rows = _rows(name, data)
            except ValueError as err:
                found.append(f"not readable as rows ({err})")
                rows = []
            if len(rows) != entry["rows"]:
                found.append(f"{len(rows)} rows, export_info.json says {entry['rows']}")
            base = (
                folder if img.get("paths_relative_to", ".") == "." else f"{folder}/{img['paths_relative_to']}"
            )
            for row in rows:
                for col in img.get("columns", []):
                    value = row.get(col) if isinstance(row, dict) else None
                    refs.update(f"{base}/{p}" for p in ([value] if isinstance(value, str) else value or []))
        if found:
            problems.append(f"{name}: {'; '.join(found)}")
            damaged = damaged or "rows" in entry
    images = set(storage.list(f"{folder}/{img['dir']}")) if img else set()
    if damaged:  # the rows cannot say which images belong: report the rows, not every image
        return problems, images
    for ref in sorted(refs - images):
        problems.append(f"{ref}: missing (a row of {folder} names it)")
    for name in sorted(refs & images):
        digest = hashlib.sha256(storage.read_bytes(name)).hexdigest()
        if not name.rsplit("/", 1)[-1].startswith(digest[:20]):
            problems.append(f"{name}: content does not match its name (sha256 {digest[:20]}...)")
    if img and len(images) != img.get("count"):
        problems.append(
            f"{folder}/{img['dir']}: {len(images)} images, export_info.json says {img.get('count')}"
        )
    return problems, refs & images
