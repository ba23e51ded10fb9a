"""What a finished build did, in the counts the planner scales: pairs per editor (the pool
snapshot), turns and expert critiques per editor (the trajectory index), the model usage and
each pool's busy time (stats.json). Reads only tables the build already writes."""

from __future__ import annotations

from collections import Counter
from statistics import fmean
from typing import Any

from editthinker_data.core.layout import POOL_FILE, STATS_FILE
from editthinker_data.io.storage import Storage
from editthinker_data.io.tables import read_parquet
from editthinker_data.pipeline.plan import Measured, trajectory_calls

TIMINGS = ("edit_s", "score_s", "refine_s", "think_s")


def measure(storage: Storage) -> Measured:
    """A build's counts, per editor, as `trajectory_calls` counts each trajectory."""
    if not storage.exists(STATS_FILE):
        raise FileNotFoundError(f"{storage.url} holds no finished build ({STATS_FILE} is missing)")
    stats = storage.read_json(STATS_FILE)
    pairs = Counter(r["editor"] for r in read_parquet(storage, POOL_FILE))
    trajectories: dict[str, dict[str, Any]] = {}
    timings: dict[str, list[float]] = {k: [] for k in TIMINGS}
    for name in sorted(storage.list("trajectories")):
        if not name.endswith(".parquet"):
            continue
        for row in read_parquet(storage, name):
            trajectories.setdefault(row["trajectory"], row)
            for k in TIMINGS:
                if row.get(k) is not None:
                    timings[k].append(row[k])
    edits: Counter[str] = Counter()
    critiques: Counter[str] = Counter()
    for t in trajectories.values():
        made = trajectory_calls(t["num_turns"], t["stop_reason"])
        edits[t["editor"]] += made[0]
        critiques[t["editor"]] += made[1]
    return Measured(
        pairs=dict(pairs),
        edits=dict(edits),
        critiques=dict(critiques),
        usage={k: v for k, v in stats.get("llm_usage", {}).items() if k != "total"},
        pools=stats.get("scheduler", {}).get("pools", {}),
        turn_seconds={k: fmean(v) for k, v in timings.items() if v},
    )
