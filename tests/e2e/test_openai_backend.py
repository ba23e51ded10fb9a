"""The OpenAI-compatible expert and scorer against a local server with faults."""

import json

import pytest

from editthinker_data.backends import BackendError, RefineRequest, ScoreRequest
from editthinker_data.backends.experts.openai_compat import OpenAIExpert, OpenAIScorer
from editthinker_data.backends.procedural.scene import render_scene
from tests.support.openai_server import ChatServer

SRC = render_scene("sky", [("circle", "red", 0.3, 0.5, 0.12), ("square", "green", 0.72, 0.45, 0.1)])
GOOD = render_scene("sky", [("circle", "blue", 0.3, 0.5, 0.12), ("square", "green", 0.72, 0.45, 0.1)])


def make(cls, server, tmp_path, **kw):
    backend = cls(
        name="t", base_url=server.base_url, model="test-vlm", cache_dir=str(tmp_path), backoff_s=0.01, **kw
    )
    backend.setup()
    return backend


def test_expert_and_scorer_answers(tmp_path):
    with ChatServer() as server:
        expert = make(OpenAIExpert, server, tmp_path)
        [r] = expert.run_batch(
            [RefineRequest(SRC, SRC, "Turn the scarlet ball cobalt.", "Turn the scarlet ball cobalt.")]
        )
        assert not r.stop and r.instruction == "Make the red circle blue."
        scorer = make(OpenAIScorer, server, tmp_path)
        good, bad = scorer.run_batch(
            [
                ScoreRequest(SRC, GOOD, "Make the red circle blue."),
                ScoreRequest(SRC, SRC, "Make the red circle blue."),
            ]
        )
        assert good.semantic > 9 and bad.semantic < 1
        # VIEScore's protocol: two calls a score, each counted (the server bills 1000 prompt tokens a call)
        assert scorer.stats()["requests"] == 4 and scorer.stats()["tokens_in"] == 4000


def test_batches_reuse_the_backends_connections(tmp_path):
    """One session per backend: later batches go over the connections the first opened
    (a client per batch paid a new connection, and a TLS handshake, per request)."""
    with ChatServer() as server:
        expert = make(OpenAIExpert, server, tmp_path, max_concurrency=2)
        for k in range(5):  # each batch different, so none is answered from the cache
            instruction = f"Turn the scarlet ball cobalt, take {k}."
            results = expert.run_batch([RefineRequest(SRC, SRC, instruction, instruction)] * 2)
            assert not any(isinstance(r, BackendError) for r in results)
        assert server.requests == 10
        assert len(server.peers) <= 2
        # A backend still pickles (a Ray actor's constructor arguments may carry one): the
        # session stays behind and starts again where the backend is used.
        import pickle

        again = pickle.loads(pickle.dumps(expert))
        again.run_batch([RefineRequest(SRC, SRC, "Turn the ball cobalt.", "Turn the ball cobalt.")])
        assert server.requests == 11


def test_faults_are_retried_and_answers_cached(tmp_path):
    # 16 scores, 32 calls (two a score)
    reqs = [ScoreRequest(SRC, GOOD if i % 2 else SRC, f"Make the red circle blue. ({i})") for i in range(16)]
    with ChatServer(fault_rate=0.3, seed=3, hang_s=1.0) as server:
        scorer = make(
            OpenAIScorer, server, tmp_path, max_concurrency=8, parse_retries=4, max_retries=8, timeout_s=0.3
        )
        first = scorer.run_batch(reqs)
        assert not [r for r in first if isinstance(r, BackendError)]
        assert all(server.injected.values()), server.injected  # every kind of fault, timeouts too
        stats = scorer.stats()
        assert stats["retries"] > 0 and stats["reasks"] > 0 and stats["failures"] == 0
        assert stats["requests"] == server.requests
        sent = server.requests
        again = make(OpenAIScorer, server, tmp_path).run_batch(reqs)
        assert server.requests == sent  # a rerun sends nothing
        assert [(a.semantic, a.quality) for a in again] == [(b.semantic, b.quality) for b in first]


def test_gives_up_with_a_reason(tmp_path):
    with ChatServer(fault_rate=1.0, faults=["malformed"]) as server:
        [r] = make(OpenAIExpert, server, tmp_path, parse_retries=1).run_batch(
            [RefineRequest(SRC, SRC, "Make the red circle blue.", "Make the red circle blue.")]
        )
        assert isinstance(r, BackendError) and "unusable after 2 tries" in str(r)
    with ChatServer(fault_rate=1.0, faults=["500"]) as server:
        [r] = make(OpenAIScorer, server, tmp_path, max_retries=2).run_batch([ScoreRequest(SRC, SRC, "x")])
        assert isinstance(r, BackendError) and str(r).startswith("semantic call: ")
        assert "gave up after 3 tries" in str(r) and server.requests == 6  # both calls, 3 tries each
        [r] = make(OpenAIScorer, server, tmp_path, max_retries=2, protocol="merged").run_batch(
            [ScoreRequest(SRC, SRC, "x")]
        )
        assert isinstance(r, BackendError) and "gave up after 3 tries" in str(r) and server.requests == 9
    with ChatServer(fault_rate=1.0, faults=["truncated"]) as server:
        [r] = make(OpenAIScorer, server, tmp_path, parse_retries=0).run_batch([ScoreRequest(SRC, SRC, "y")])
        assert isinstance(r, BackendError) and "cut off at max_tokens=1024" in str(r)


def test_a_bad_request_is_not_retried(tmp_path):
    with ChatServer() as server:
        backend = make(OpenAIScorer, server, tmp_path, max_retries=5)
        backend.base_url += "/nowhere"  # the server answers 404 to unknown paths
        [r] = backend.run_batch([ScoreRequest(SRC, SRC, "z")])
        assert isinstance(r, BackendError) and "HTTP 404" in str(r) and backend.stats()["retries"] == 0


def test_api_key_is_sent_but_never_stored(tmp_path, monkeypatch):
    monkeypatch.setenv("ETD_TEST_KEY", "sk-secret-123")
    with ChatServer() as server:
        backend = make(OpenAIScorer, server, tmp_path, api_key_env="ETD_TEST_KEY")
        backend.run_batch([ScoreRequest(SRC, SRC, "Make the red circle blue.")])
        assert server.auth == ["Bearer sk-secret-123"] * 2  # the semantic and the quality call
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert stored and b"sk-secret" not in stored
    assert "sk-secret" not in repr(backend.stats()) + repr(vars(backend).get("api_key_env"))


def test_missing_api_key_env_fails_preflight(tmp_path, monkeypatch):
    from editthinker_data.config import ConfigError, parse_config
    from editthinker_data.pipeline.preflight import preflight

    monkeypatch.delenv("ETD_TEST_KEY", raising=False)
    (tmp_path / "m.jsonl").write_text('{"id": "a", "image": "a.png", "instruction": "x"}\n')
    remote = {
        "kind": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "model": "m",
        "api_key_env": "ETD_TEST_KEY",
    }
    cfg = parse_config({"source": {"manifest": str(tmp_path / "m.jsonl")}, "scorer": remote}, environ={})
    with pytest.raises(
        ConfigError, match="^scorer .openai.: environment variable ETD_TEST_KEY is not set; export it"
    ):
        preflight(cfg)
    monkeypatch.setenv("ETD_TEST_KEY", "sk-x")
    preflight(cfg)


def test_missing_api_key_env_fails_at_setup(tmp_path, monkeypatch):
    monkeypatch.delenv("ETD_TEST_KEY", raising=False)
    backend = OpenAIExpert(
        name="t",
        base_url="http://127.0.0.1:9/v1",
        model="m",
        api_key_env="ETD_TEST_KEY",
        cache_dir=str(tmp_path),
    )
    with pytest.raises(ValueError, match="ETD_TEST_KEY is not set"):
        backend.setup()


@pytest.mark.slow
def test_build_against_a_failing_server_accounts_for_every_pair(demo_cfg, ray_cluster, state_dir, tmp_path):
    """30% of calls fail in every way the server knows; every source pair is accounted
    for at every stage, and a rebuild (--overwrite keeps <output>/cache) sends nothing."""
    from editthinker_data.io.storage import LocalStorage
    from editthinker_data.stages import clear_output
    from flows.build_dataset import build_dataset

    with ChatServer(fault_rate=0.3, seed=7, hang_s=1.5) as server:
        params = {"backoff_s": 0.01, "max_retries": 8, "parse_retries": 4}
        data = demo_cfg.model_dump()
        price = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}
        data["expert"] = {"kind": "openai", "name": "vlm-expert", "base_url": server.base_url, "model": "test-vlm",
                          "max_concurrency": 8, "params": params, "batch_size": 8, "price": price,
                          "timeout_s": 0.75}  # fmt: skip
        data["scorer"] = {"kind": "openai", "name": "vlm-scorer", "base_url": server.base_url, "model": "test-vlm",
                          "params": params, "batch_size": 8, "price": price, "timeout_s": 0.75}  # fmt: skip
        data["output"]["report"] = False
        out = str(tmp_path / "a")
        first = build_dataset(data, out, str(state_dir))
        stages = first.stats["stages"]
        for name, st in stages.items():
            assert st["input"] == st["kept"] + sum(st["filtered"].values()) + sum(st["failed"].values()), name
        gen = stages["generate"]
        assert gen["input"] == 40 == stages["pool"]["kept"]
        assert all(server.injected.values()) and sum(server.injected.values()) > 20, server.injected
        usage = first.stats["llm_usage"]
        assert usage["expert"]["retries"] > 0 and usage["scorer"]["tokens_in"] > 0
        assert usage["scorer"]["cost_usd"] == pytest.approx(
            usage["scorer"]["tokens_in"] * 2e-6 + usage["scorer"]["tokens_out"] * 8e-6, abs=1e-3
        )
        assert usage["total"]["requests"] == usage["expert"]["requests"] + usage["scorer"]["requests"]
        assert usage["total"]["requests"] == server.requests
        from typer.testing import CliRunner

        from editthinker_data.cli import app

        shown = CliRunner().invoke(app, ["inspect", out], terminal_width=200)
        assert shown.exit_code == 0, shown.output
        assert "model calls" in shown.output
        total_row = next(line for line in shown.output.splitlines() if line.strip("│ ").startswith("total"))
        assert (
            str(usage["total"]["requests"]) in total_row and f"${usage['total']['cost_usd']:.2f}" in total_row
        )
        sent = server.requests
        assert clear_output(LocalStorage(out)) > 0
        second = build_dataset(data, out, str(state_dir))
        assert server.requests == sent  # everything came from <output>/cache/llm
        usage2 = second.stats["llm_usage"]["total"]
        assert usage2["requests"] == 0 and usage2["cost_usd"] == 0 and usage2["cache_hits"] > 0
        strip = lambda m: {k: [s["sha256"] for s in v] for k, v in m["shards"].items()}  # noqa: E731
        assert strip(second.manifest) == strip(first.manifest)


def test_requests_per_minute_paces_requests(tmp_path):
    import time

    with ChatServer() as server:
        scorer = make(OpenAIScorer, server, tmp_path, requests_per_minute=600)  # one per 0.1 s
        started = time.monotonic()
        scorer.run_batch([ScoreRequest(SRC, SRC, f"Make the red circle blue {i}.") for i in range(6)])
        assert time.monotonic() - started >= 0.5
        assert scorer.stats()["rate_wait_s"] > 0.1  # the waits are counted


def test_tokens_per_minute_follows_the_servers_usage(tmp_path):
    """The server counts 1000 prompt tokens a call; 60k tokens/minute allow ~1 call/s. The
    estimate before the first calls is lower, so settling with the real usage must slow
    the later calls down to the limit."""
    import time

    with ChatServer(canned=True) as server:
        scorer = make(OpenAIScorer, server, tmp_path, tokens_per_minute=60_000, max_concurrency=4)
        started = time.monotonic()
        # two scores, four calls (VIEScore's protocol asks twice a score)
        scorer.run_batch([ScoreRequest(SRC, SRC, f"Make the red circle blue {i}.") for i in range(2)])
        elapsed = time.monotonic() - started
        used = scorer.stats()["tokens_in"] + scorer.stats()["tokens_out"]
        assert used > 4000 and elapsed >= (used - 1000) / 1000 - 0.6  # all but the first's share, paced


def test_rate_limits_are_shared_by_the_actors_of_a_role():
    from editthinker_data.backends import create_backend
    from editthinker_data.config import BackendSpec

    spec = BackendSpec(kind="openai", base_url="http://127.0.0.1:9/v1", model="m", num_actors=4,
                       requests_per_minute=400, tokens_per_minute=100_000, max_concurrency=30)  # fmt: skip
    backend = create_backend("scorer", spec)
    assert backend.limiter.requests.per_second == pytest.approx(100 / 60)
    assert backend.limiter.tokens.per_second == pytest.approx(25_000 / 60)
    assert backend.max_concurrency == 7  # 30 over 4 actors, rounded down: together never above the cap
    assert create_backend("scorer", spec.model_copy(update={"max_concurrency": 2})).max_concurrency == 1


def test_cache_on_s3_output_and_off(tmp_path, s3_endpoint):
    from editthinker_data.backends import BackendContext
    from editthinker_data.io.storage import open_storage

    reqs = [ScoreRequest(SRC, GOOD, f"Make the red circle blue. ({i})") for i in range(3)]
    ctx = BackendContext(output_url="s3://etd-test/llm-cache-build", s3_endpoint_url=s3_endpoint)
    with ChatServer() as server:
        first = OpenAIScorer(name="t", base_url=server.base_url, model="m", context=ctx)
        first.setup()
        first.run_batch(reqs)
        second = OpenAIScorer(name="t", base_url=server.base_url, model="m", context=ctx)
        second.setup()
        second.run_batch(reqs)
        assert server.requests == 6 and second.stats()["cache_hits"] == 6  # two calls a score
        names = open_storage(ctx.output_url, endpoint_url=s3_endpoint).list("cache/llm")
        # 3 semantic answers and 1 quality answer: the quality call sees the edited image only,
        # the same for the three requests, so its (content-addressed) entry is shared
        assert len(names) == 4 and all(n.endswith(".json") for n in names)
        other_model = OpenAIScorer(name="t", base_url=server.base_url, model="m2", context=ctx)
        other_model.setup()
        other_model.run_batch(reqs[:1])
        assert server.requests == 8  # the model is part of the key
        off = OpenAIScorer(
            name="t", base_url=server.base_url, model="m", context=BackendContext(llm_cache="off")
        )
        off.setup()
        off.run_batch(reqs)
        assert server.requests == 14 and off.stats()["cache_hits"] == 0


def test_thinker_answers_in_tags(tmp_path):
    from editthinker_data.backends.experts.openai_compat import OpenAIThinker

    with ChatServer() as server:
        thinker = make(OpenAIThinker, server, tmp_path)
        [(r, s)] = thinker.run_batch(
            [RefineRequest(SRC, SRC, "Turn the scarlet ball cobalt.", "Turn the scarlet ball cobalt.")]
        )
        assert r.instruction == "Make the red circle blue." and s.semantic < 1
        [(r, s)] = thinker.run_batch(
            [RefineRequest(SRC, GOOD, "Make the red circle blue.", "Make the red circle blue.")]
        )
        assert s.semantic > 9 and s.quality > 9
        assert r.instruction.startswith("Make the red circle blue.")  # repeated, or restated after a doubt


def test_a_reask_is_another_request_that_a_deterministic_server_answers_anew(tmp_path):
    """A server that answers the same request the same way (a tiny random model at
    temperature 0) gave the same unusable answer to every re-ask, since each re-ask was the
    same request. A re-ask continues the conversation with the model's own answer and a
    correction saying what was wrong, under another seed: every request and every answer
    differ, and a rerun replays them all from the cache."""
    from editthinker_data.backends import UnusableAnswer
    from tests.support.openai_server import babble_answer

    req = ScoreRequest(SRC, GOOD, "Make the red circle blue.")
    with ChatServer(babble="stop") as server:
        [r] = make(OpenAIScorer, server, tmp_path, parse_retries=2).run_batch([req])
        assert isinstance(r, UnusableAnswer) and "unusable after 3 tries" in str(r)
        bodies = list(server.bodies)
        assert len(bodies) == 6  # VIEScore's two calls, three tries each
        assert len({json.dumps(b, sort_keys=True) for b in bodies}) == 6
        assert len({babble_answer(b) for b in bodies}) == 6
        for call in {json.dumps(b["messages"][0], sort_keys=True) for b in bodies}:
            tries = sorted((b for b in bodies if json.dumps(b["messages"][0], sort_keys=True) == call),
                           key=lambda b: len(b["messages"]))  # fmt: skip
            assert [len(b["messages"]) for b in tries] == [1, 3, 5]
            assert [b["seed"] for b in tries] == [0, 1, 2]
            for before, after in zip(tries, tries[1:], strict=False):
                assert after["messages"][: len(before["messages"])] == before["messages"]
                said, correction = after["messages"][-2:]
                assert said == {"role": "assistant", "content": babble_answer(before)}
                assert correction["role"] == "user"
                assert "could not be used: no JSON object with a score" in correction["content"]

        rerun = make(OpenAIScorer, server, tmp_path, parse_retries=2)
        [again] = rerun.run_batch([req])
        assert server.requests == 6 and rerun.stats()["cache_hits"] == 6  # the same keys, in order
        assert str(again) == str(r)

    with ChatServer(babble="length") as server:
        [r] = make(OpenAIExpert, server, tmp_path / "cut", parse_retries=1).run_batch(
            [RefineRequest(SRC, GOOD, "Make the red circle blue.", "Make the red circle blue.")]
        )
        assert isinstance(r, UnusableAnswer) and "cut off at max_tokens=1024" in str(r)
        first, second = server.bodies
        assert second["seed"] == first["seed"] + 1 and babble_answer(first) != babble_answer(second)
        assert second["messages"][1]["content"] == babble_answer(first)
        assert "cut off at max_tokens=1024" in second["messages"][2]["content"]
