"""A dead dispatcher costs its units a retry, not the build: SIGKILL of the dispatcher actor
mid-build, and the same run finishes (the flow starts it again; its units resume from their
journals, their edits from the edit store) with shards identical to an uninterrupted build."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest


def _kill_dispatcher_after(pairs: int, report: dict) -> None:
    import ray

    from editthinker_data.core.progress import current

    deadline = time.monotonic() + 300
    while current().snapshot()["stage"] != "generating" or current().snapshot().get("pairs_done", 0) < pairs:
        if time.monotonic() > deadline or current().snapshot()["stage"] in ("selecting", "done"):
            report["error"] = f"the build got to {current().snapshot()} before the kill"
            return
        time.sleep(0.05)
    names = [n for n in ray.util.list_named_actors() if n.startswith("dispatch-")]
    pids = [ray.get(ray.get_actor(n).__ray_call__.remote(lambda self: os.getpid())) for n in names]
    report["killed"] = pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


@pytest.mark.slow(seconds=90)
def test_sigkill_of_the_dispatcher_mid_build_finishes_in_the_same_run(
    demo_build, demo_cfg, tmp_path, state_dir
):
    from editthinker_data.core.progress import reset
    from flows.build_dataset import build_dataset

    out, clean = demo_build
    reset()  # the session's earlier builds' counters are not this one's
    report: dict = {}
    killer = threading.Thread(target=_kill_dispatcher_after, args=(10, report), daemon=True)
    killer.start()
    result = build_dataset(demo_cfg.model_dump(), str(tmp_path), str(state_dir))
    killer.join(timeout=5)
    assert "error" not in report and len(report.get("killed", [])) == 1, report
    assert hasattr(result, "manifest"), f"the build did not finish in the same run: {result}"

    def strip(manifest: dict) -> dict:
        return {k: [(s["url"], s["sha256"]) for s in v] for k, v in manifest["shards"].items()}

    assert strip(result.manifest) == strip(clean.manifest)  # identical shards
    assert not [p for p in (tmp_path / "_journal").rglob("*") if p.is_file()]  # every unit finished
