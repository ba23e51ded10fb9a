"""The HTTP editor client against a local service: both answer styles, every failure
path, the concurrency cap, and a run through the Ray actor pool with 30% faults."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from editthinker_data.backends import BackendError, EditRequest, create_backend
from editthinker_data.config import BackendSpec, ConfigError, parse_config
from tests.support.editor_server import EditorServer


def image(seed=0, size=(24, 16)):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8"))


def client(server, **params):
    spec = BackendSpec(
        kind="http", base_url=server.base_url, params={"backoff_s": 0.01, "timeout_s": 0.5, **params}
    )
    backend = create_backend("editor", spec)
    backend.setup()
    return backend


@pytest.mark.parametrize("raw", [False, True])
def test_edits_come_back_whole(raw):
    with EditorServer(raw=raw, scale=1) as server:
        ed = client(server, model="omnigen2", extra={"guidance": 5})
        img = image()
        out = ed.run_batch([EditRequest(img, "invert it", 3), EditRequest(image(1), "again", 4)])
    assert np.array_equal(np.asarray(out[0]), np.asarray(ImageOps.invert(img)))
    assert sorted(b["seed"] for b in server.bodies) == [3, 4]
    assert all(b["model"] == "omnigen2" and b["guidance"] == 5 for b in server.bodies)
    assert ed.stats() == {"requests": 2, "retries": 0, "failures": 0, "edits": 2}


@pytest.mark.parametrize(("output_size", "want"), [("source", (24, 16)), ("model", (48, 32))])
def test_output_size_policy(output_size, want):
    with EditorServer(scale=2) as server:
        out = client(server, output_size=output_size).run_batch([EditRequest(image(), "x", 0)])
    assert out[0].size == want


def test_every_transient_failure_is_retried():
    script = ["429", "500", "reset", "timeout", "malformed", "truncated"]
    with EditorServer(script=script) as server:
        ed = client(server, max_retries=len(script))
        out = ed.run_batch([EditRequest(image(), "invert", 0)])
    assert isinstance(out[0], Image.Image)
    assert server.requests == len(script) + 1
    assert ed.stats()["retries"] == len(script)


def test_exhausted_retries_fail_that_request_alone():
    with EditorServer(script=["500", "500", "500"]) as server:
        ed = client(server, max_retries=2, max_concurrency=1)
        out = ed.run_batch([EditRequest(image(), "first", 0), EditRequest(image(1), "second", 0)])
    assert isinstance(out[0], BackendError) and "gave up after 3 tries (HTTP 500)" in str(out[0])
    assert isinstance(out[1], Image.Image)
    assert ed.stats()["failures"] == 1


@pytest.mark.parametrize(
    ("fault", "message"), [("400", "HTTP 400"), ("noimage", "without an image: prompt refused")]
)
def test_final_answers_are_not_retried(fault, message):
    with EditorServer(script=[fault]) as server:
        out = client(server).run_batch([EditRequest(image(), "x", 0)])
    assert isinstance(out[0], BackendError) and message in str(out[0])
    assert server.requests == 1


def test_concurrency_cap_and_api_key(monkeypatch):
    monkeypatch.setenv("EDITOR_TOKEN", "sekrit")
    with EditorServer(latency_s=0.1) as server:
        ed = client(server, max_concurrency=3, api_key_env="EDITOR_TOKEN")
        out = ed.run_batch([EditRequest(image(i), "x", i) for i in range(9)])
    assert all(isinstance(o, Image.Image) for o in out)
    assert server.max_in_flight == 3
    assert all(h.get("Authorization") == "Bearer sekrit" for h in server.headers)
    assert "sekrit" not in repr(ed.__dict__.get("counters"))


def test_batches_reuse_the_editors_connections():
    with EditorServer() as server:
        ed = client(server, max_concurrency=2)
        for k in range(4):
            assert all(isinstance(o, Image.Image) for o in ed.run_batch([EditRequest(image(k), "x", k)] * 2))
    assert server.requests == 8 and len(server.peers) <= 2


def test_bad_settings_fail_before_any_request(monkeypatch):
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    with pytest.raises(ValueError, match="environment variable NO_SUCH_TOKEN is not set"):
        create_backend(
            "editor", BackendSpec(kind="http", base_url="http://127.0.0.1:9", api_key_env="NO_SUCH_TOKEN")
        ).setup()
    with pytest.raises(ValueError, match="give the service's address"):
        create_backend("editor", BackendSpec(kind="http", base_url="omnigen2:8000"))
    with pytest.raises(ConfigError, match="bad params"):
        create_backend("editor", BackendSpec(kind="http", base_url="http://127.0.0.1:9", temperature=0.5))


@pytest.mark.slow
def test_actor_pool_run_with_a_flaky_service(ray_cluster):
    from editthinker_data.core.schema import SourcePair
    from editthinker_data.distributed.drive import run_rollouts
    from editthinker_data.distributed.pools import Workers
    from editthinker_data.pipeline.loop import Names, rollout

    with EditorServer(
        fault_rate=0.3, faults=("429", "500", "reset", "malformed", "truncated", "400")
    ) as server:
        cfg = parse_config(
            {
                "source": {"manifest": "unused.jsonl"},
                "editors": [{"name": "svc", "kind": "http", "base_url": server.base_url, "batch_size": 4,
                             "params": {"backoff_s": 0.01, "max_retries": 3}}],
            },
            environ={},
        )  # fmt: skip
        workers = Workers(cfg)
        workers.start()
        pairs = [
            SourcePair(f"p{i}", "Turn the red ball blue.", image(i, (32, 32)), "other", "sha", editor="svc")
            for i in range(12)
        ]
        done = {}
        try:
            run_rollouts(
                workers, pairs, lambda p: rollout(p, Names("procedural", "procedural"), max_turns=2, seed=0),
                lambda i, t: done.__setitem__(i, t), max_in_flight=12, retries=1,
            )  # fmt: skip
            info = [a for a in workers.info() if a["role"] == "editor"][0]
        finally:
            workers.stop()
    assert sorted(done) == list(range(12))  # every pair accounted for, failed or not
    failed = [t for t in done.values() if t.stop_reason == "failed"]
    assert all("HTTP 400" in t.error or "gave up" in t.error for t in failed)
    assert server.injected and info["counters"]["retries"] >= 1
    assert info["counters"]["requests"] == server.requests
