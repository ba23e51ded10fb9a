"""A worker node lost mid-build on a three-node Ray cluster (`ray.cluster_utils.Cluster`):
the build replaces the node's actors on the surviving node, finishes, and writes the shards
a clean build writes, with every batch it sent accounted for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

HELPER = Path(__file__).resolve().parents[1] / "support" / "multinode_build.py"


@pytest.mark.slow(seconds=110)
def test_build_survives_a_lost_worker_node(tmp_path):
    # Its own process: this session already has a local Ray, and a driver joins one cluster.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_", "EDITTHINKER"))}
    env["PYTHONPATH"] = str(HELPER.parents[2])
    done = subprocess.run(
        [sys.executable, str(HELPER), str(tmp_path), "--kill-after", "4"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    r = json.loads(lines[-1].removeprefix("RESULT "))
    assert "error" not in r, r["error"]

    # The kill landed mid-build, on a node that held backend actors.
    assert r["actors_on_killed_node"] >= 1 and 0 < r["pairs_done_at_kill"] < 15
    # Same shards, byte for byte, as the clean build of the same config.
    assert r["killed_shards"] == r["clean_shards"]
    assert {u.split("/")[0] for u in r["clean_shards"]} >= {"trajectories", "steps"}
    assert r["generate"][0] == r["generate"][1] == {"input": 15, "kept": 15, "filtered": {}, "failed": {}}

    # The scheduler recovered (not a retry of the whole unit): actors replaced, batches retried.
    units = r["units"]
    assert sum(u["actors_replaced"] for u in units) >= 1 and sum(u["retries"] for u in units) >= 1

    # `actors` lists the lost node's actors as replaced (or unreachable), beside their
    # replacements, which run on a surviving node.
    actors = r["killed_stats_actors"]
    lost = [a for a in actors if a["node"] == r["killed_node"]]
    assert lost and all(a["status"] in ("replaced", "unreachable") for a in lost)
    assert any(a["status"] == "replaced" and a["calls"] + a["lost_batches"] >= 1 for a in lost)
    alive = [a for a in actors if a["status"] == "alive"]
    assert {(a["role"], a["name"]) for a in alive} == {(a["role"], a["name"]) for a in actors}
    assert all(a["node"] not in (None, r["killed_node"]) for a in alive)

    # Every batch sent is in the usage: answered (with its cost) or lost with its actor.
    backends = r["killed_backends"]
    assert sum(b["batches"] for b in backends.values()) == sum(u["batches"] for u in units)
    answered, lost_batches = Counter(), Counter()
    for a in actors:
        answered[f"{a['role']}/{a['name']}"] += a["calls"]
        lost_batches[f"{a['role']}/{a['name']}"] += a["lost_batches"]
    for name, b in backends.items():
        assert b["counters"].get("lost_batches", 0) == lost_batches[name], name
        assert b["batches"] == answered[name] + lost_batches[name], name
    assert sum(lost_batches.values()) >= 1
