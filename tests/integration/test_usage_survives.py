"""Usage accounting survives dead actors: an expert actor killed mid-build keeps the calls,
tokens and cost of every batch it answered, its lost batch is counted as lost, and the
totals match what the endpoint itself counted."""

from __future__ import annotations

import pytest
import ray

from editthinker_data.backends import BackendContext
from editthinker_data.backends.procedural.scene import render_scene
from editthinker_data.config import parse_config
from editthinker_data.core.schema import SourcePair
from editthinker_data.core.stats import add_usage, llm_usage, usage_as_actor_info
from editthinker_data.distributed.drive import run_rollouts
from editthinker_data.distributed.pools import Workers
from editthinker_data.pipeline.loop import Names, rollout
from tests.support.openai_server import ChatServer

pytestmark = pytest.mark.slow
KILL_AFTER = 3  # expert batches answered before its actor is killed


def pairs(n):
    img = render_scene("sky", [("circle", "red", 0.3, 0.5, 0.12), ("square", "green", 0.7, 0.5, 0.1)], 48)
    return [
        SourcePair(f"p{i}", "Turn the scarlet ball cobalt.", img, "other", "sha", editor="e")
        for i in range(n)
    ]


def test_a_killed_actors_usage_is_counted_and_matches_the_endpoint(ray_cluster):
    with ChatServer(latency_s=0.05) as server:
        remote = {"kind": "openai", "base_url": server.base_url, "model": "test-vlm",
                  "params": {"backoff_s": 0.01, "max_retries": 2, "parse_retries": 1},
                  "price": {"input_per_mtok": 2.0, "output_per_mtok": 8.0}}  # fmt: skip
        cfg = parse_config(
            {"source": {"manifest": "unused.jsonl"},
             "editors": [{"name": "e", "params": {"skill": 0.3}, "batch_size": 4}],
             "expert": {**remote, "name": "vlm-expert", "batch_size": 2},
             "scorer": {**remote, "name": "vlm-scorer", "batch_size": 4}},
            environ={},
        )  # fmt: skip
        # No answer cache: a retried request goes to the endpoint again, and is paid again.
        workers = Workers(cfg, BackendContext(llm_cache="off"))
        workers.start()
        expert = workers.pools[("expert", "vlm-expert")]
        first = expert.actors[0]
        usage, done = {}, {}

        def on_usage(backend, cost):
            add_usage(usage, backend, cost)
            if backend == "expert/vlm-expert" and usage[backend]["batches"] == KILL_AFTER:
                ray.kill(first, no_restart=True)  # its next batch is on its way or running

        try:
            counters = run_rollouts(
                workers, pairs(10), lambda p: rollout(p, Names("vlm-expert", "vlm-scorer"), max_turns=3, seed=0),
                done.__setitem__, max_in_flight=16, retries=2, on_usage=on_usage,
            )  # fmt: skip
            actors = workers.info()
        finally:
            workers.stop()
        sent_to_server = server.requests

    assert sorted(done) == list(range(10)) and all(t.stop_reason != "failed" for t in done.values())
    assert counters["actors_replaced"] == 1 and expert.replaced == 1

    # Every batch sent is in the usage: answered with its cost, or lost with the actor.
    assert sum(u["batches"] for u in usage.values()) == counters["batches"]
    lost = usage["expert/vlm-expert"]["counters"]
    assert lost.get("lost_batches", 0) >= 1 and lost["lost_requests"] >= 1

    # The killed actor is listed with what it answered; the pool's records add up to the usage.
    records = [a for a in actors if a["role"] == "expert"]
    dead = [a for a in records if a["status"] == "replaced"]
    assert len(dead) == 1 and dead[0]["calls"] >= KILL_AFTER and dead[0]["counters"]["requests"] >= KILL_AFTER
    assert dead[0]["lost_batches"] == lost["lost_batches"]
    assert sum(a["counters"]["requests"] for a in records) == lost["requests"]
    assert sum(a["calls"] + a["lost_batches"] for a in records) == usage["expert/vlm-expert"]["batches"]

    # The endpoint counted every call in the usage, plus at most the lost batch's calls
    # (they may or may not have reached it before the actor died).
    llm = llm_usage(cfg, usage_as_actor_info(usage))
    counted = llm["total"]["requests"]
    assert counted <= sent_to_server <= counted + lost["lost_requests"]
    assert llm["expert"]["tokens_in"] == 1000 * llm["expert"]["requests"]  # the server bills 1000 a call
    assert llm["expert"]["cost_usd"] == pytest.approx(
        llm["expert"]["tokens_in"] / 1e6 * 2.0 + llm["expert"]["tokens_out"] / 1e6 * 8.0, abs=1e-3
    )
    assert dead[0]["counters"]["tokens_in"] > 0  # the dead actor's tokens are in that sum
