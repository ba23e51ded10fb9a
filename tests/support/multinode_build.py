"""Started by test_multinode.py in its own process (the test session already has its own Ray):
a three-node Ray cluster on this machine (`ray.cluster_utils.Cluster`: a head and two
workers), a clean build of a small demo config through it, then the same build into a second
output with the worker node that holds most backend actors killed (its raylet and every
process on it, no grace) once some pairs are done. Prints one JSON line for the test.

    python tests/support/multinode_build.py WORKDIR [--kill-after N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from editthinker_data.core import runenv  # noqa: E402


def small_config(address: str) -> dict:
    from editthinker_data.config import load_config

    cfg = load_config(ROOT / "configs" / "demo.yaml").model_dump()
    cfg["source"]["per_type_quota"] = 3  # 15 pairs over the five task types
    cfg["loop"]["max_turns"] = 3
    cfg["output"].update(exports=[], report=False)
    cfg["run"].update(partition_size=5, max_in_flight=4, ray_address=address, backend_retries=2)
    return cfg


def build(cfg: dict, out: Path, state: Path) -> Any:
    from flows.build_dataset import build_dataset

    result = build_dataset(cfg, str(out), str(state))
    if not hasattr(result, "manifest"):  # a Failed state: the flow returns it instead of raising
        raise SystemExit(f"build into {out} did not finish: {result}")
    return result


def shard_hashes(out: Path) -> dict[str, str]:
    manifest = json.loads((out / "manifest.json").read_text())
    return {s["url"]: s["sha256"] for items in manifest["shards"].values() for s in items}


def kill_busiest_worker(cluster, after_pairs: int, report: dict) -> None:
    """Waits for `after_pairs` finished pairs, then kills the worker node with most live actors."""
    from editthinker_data.core.progress import current

    while current().snapshot().get("pairs_done", 0) < after_pairs:
        if current().snapshot()["stage"] in ("selecting", "done"):
            report["error"] = "the build finished before the kill"
            return
        time.sleep(0.05)
    alive = cluster.global_state.actor_table(None, actor_state_name="ALIVE")
    per_node = Counter(a["Address"]["NodeID"] for a in alive.values())
    victim = max(cluster.worker_nodes, key=lambda n: per_node.get(n.node_id, 0))
    report.update(
        killed_node=victim.node_id,
        actors_on_killed_node=per_node.get(victim.node_id, 0),
        actors_per_node=dict(per_node),
        pairs_done_at_kill=current().snapshot().get("pairs_done", 0),
    )
    cluster.remove_node(victim, allow_graceful=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--kill-after", type=int, default=4)
    args = parser.parse_args()
    runenv.prepare(args.workdir / "state")
    import ray
    from ray.cluster_utils import Cluster

    from editthinker_data.core.progress import reset

    temp = tempfile.mkdtemp(prefix="etd-mn-", dir="/tmp")  # Ray's socket paths must stay short
    os.environ["RAY_TMPDIR"] = temp  # Cluster writes the head's address under Ray's default temp dir
    Path(temp, "ray").mkdir()
    common = {"temp_dir": f"{temp}/ray", "include_dashboard": False, "object_store_memory": 80 * 1024**2}
    # The head runs the driver only (no CPUs for actors); the four backend actors (0.25 CPU
    # each, one per pool, so each is busy) fit on either worker, so a lost worker's actors
    # can be replaced on the other.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, **common})
    report: dict = {"temp_dir": temp}
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, **common)
        cluster.wait_for_nodes()
        cfg = small_config(cluster.address)
        started = time.monotonic()
        reset()
        clean = build(cfg, args.workdir / "clean", args.workdir / "state")
        report["clean_s"] = round(time.monotonic() - started, 1)
        reset()  # the killer counts this build's pairs
        killer = threading.Thread(target=kill_busiest_worker, args=(cluster, args.kill_after, report))
        killer.start()
        started = time.monotonic()
        killed = build(cfg, args.workdir / "killed", args.workdir / "state")
        report["killed_s"] = round(time.monotonic() - started, 1)
        killer.join()
        report.update(
            clean_shards=shard_hashes(args.workdir / "clean"),
            killed_shards=shard_hashes(args.workdir / "killed"),
            generate=[clean.stats["stages"]["generate"], killed.stats["stages"]["generate"]],
            killed_stats_actors=killed.stats.get("actors"),
            killed_backends=killed.stats.get("backends"),
            units=[
                json.loads(m.read_text())["scheduler"]
                for m in sorted((args.workdir / "killed" / "_markers" / "generate").glob("*.json"))
            ],
        )
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    print("RESULT " + json.dumps(report, default=str))


if __name__ == "__main__":
    main()
