"""Reading a finished build back: stage counts, breakdowns, score histograms, one
trajectory turn by turn, and a re-derivation of every filter decision from the stored
scores (the check that what was kept follows the rules)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from editthinker_data.config import BuildConfig
from editthinker_data.selection import select
from editthinker_data.storage import Storage, open_storage
from editthinker_data.units import DECISIONS_FILE, STEPS_FILE, load_trajectory_summaries, read_parquet


class Build:
    def __init__(self, output: str | Storage, endpoint_url: str | None = None):
        self.storage = (
            output if isinstance(output, Storage) else open_storage(output, endpoint_url=endpoint_url)
        )
        if not self.storage.exists("stats.json"):
            raise FileNotFoundError(f"{self.storage.url} holds no finished build (stats.json is missing)")
        self.stats: dict[str, Any] = self.storage.read_json("stats.json")
        self.manifest: dict[str, Any] = self.storage.read_json("manifest.json")
        self.config = BuildConfig.model_validate_json(self.storage.read_bytes("config.json"))
        self.partitions = sorted(
            {
                int(p.split("part-")[1][:5])
                for p in self.storage.list("trajectories")
                if p.endswith(".parquet")
            }
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
            name = f"trajectories/part-{p:05d}.parquet"
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
                        target.write_bytes(tar.extractfile(member).read())
                        written.append(target)
        return sorted(written)


def verify(storage: Storage) -> dict[str, list[str] | int]:
    """Re-read every shard the manifest lists: sha256, size and sample count must match;
    shards on storage that the manifest does not list are extra."""
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
    return {"checked": len(listed), "mismatched": mismatched, "missing": missing, "extra": extra}
