"""Failures that must not look like success: a backend that goes away leaves the build
unfinished (a rerun finishes it, byte for byte), unparseable answers are final and counted
against their backend, a build over the failure limit or with nothing kept exits non-zero,
and usage is summed over every process that worked on a build."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from PIL import Image

from editthinker_data import stages
from editthinker_data.backends import BackendError, TransientBackendError, UnusableAnswer
from editthinker_data.backends.transport.http_retry import post_with_retries
from editthinker_data.config import parse_config
from editthinker_data.core.layout import POOL_UNIT, part_name
from editthinker_data.core.outcome import BuildIncomplete, failure_share, verdict
from editthinker_data.core.reports import GenerateReport, TransientPairs
from editthinker_data.core.schema import Scores, SourcePair
from editthinker_data.execution.base import LocalExecutor
from editthinker_data.execution.local_rollouts import local_backends, local_runner
from editthinker_data.io.storage import LocalStorage
from editthinker_data.pipeline.loop import Names, drive, rollout
from editthinker_data.stages.generate import GenerateStage
from editthinker_data.stages.pool import PoolStage
from tests.support.loopback_http import Handler, LoopbackServer
from tests.support.openai_server import ChatServer

SRC = Image.new("RGB", (8, 8), (0, 0, 0))


def tiny_config(demo_cfg, base_url: str, **run):
    """10 demo pairs (2 per task type) in 2 units, at most 3 turns, a remote expert and scorer."""
    data = demo_cfg.model_dump()
    data["source"]["per_type_quota"] = 2
    data["loop"]["max_turns"] = 3
    params = {"backoff_s": 0.01, "max_retries": 2, "parse_retries": 1}
    for role in ("expert", "scorer"):
        data[role] = {"kind": "openai", "name": f"vlm-{role}", "base_url": base_url, "model": "test-vlm",
                      "params": params, "batch_size": 4}  # fmt: skip
    data["output"].update(exports=[], report=False)
    data["run"].update(partition_size=5, **run)
    return parse_config(data, environ={})


def executor(cfg, out):
    return local_runner(cfg, local_backends(cfg, stages.backend_context(cfg, str(out))))


def requests_in(usage) -> int:
    return sum(u["counters"].get("requests", 0) for u in usage.values())


# ---------------------------------------------------------------- classified at the source


@pytest.mark.parametrize(
    ("error", "transient", "reason"),
    [
        (TransientBackendError("gave up after 3 tries"), True, "expert_unreachable"),
        (UnusableAnswer("expert answer unusable after 2 tries"), False, "expert_unparseable"),
        (BackendError("HTTP 400: bad image"), False, "expert_error"),
    ],
)
def test_a_failed_turn_says_whether_a_rerun_can_help(error, transient, reason):
    def call(c):
        if c.role == "editor":
            return SRC
        if c.role == "scorer":
            return Scores(5.0, 5.0)
        raise error

    pair = SourcePair("p1", "make it red", SRC, "other", "sha", editor="e")
    traj = drive(rollout(pair, Names("vlm-x", "s"), max_turns=3, seed=0), call)
    assert traj.stop_reason == "failed" and len(traj.turns) == 1
    f = traj.failure
    assert (f.turn, f.stage, f.role, f.backend) == (2, "refine", "expert", "vlm-x")
    assert f.transient is transient and traj.transient is transient and f.reason == reason
    assert f.who == "expert 'vlm-x'" and str(error) in traj.error


def test_giving_up_on_a_backend_is_transient_a_bad_request_is_not():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1/chat/completions"

    async def post(url):
        async with httpx.AsyncClient(timeout=2) as client:
            counters: dict[str, int] = {}
            try:
                await post_with_retries(
                    client, url, max_retries=2, backoff_s=0.01, counters=counters, json={}
                )
            except BackendError as err:
                return err, counters

    err, counters = asyncio.run(post(closed))
    assert isinstance(err, TransientBackendError) and "gave up after 3 tries" in str(err)
    assert counters == {"requests": 3, "retries": 2}

    class StatusHandler(Handler):
        def do_POST(self):  # answers the status code the path names
            self.read_body()
            self.reply(int(self.path.strip("/")), b'{"error": "no"}')

    server = LoopbackServer(StatusHandler)
    server.start()
    try:
        for status in (401, 403, 404):  # there, but not as configured: a rerun tries again
            err, counters = asyncio.run(post(f"{server.url}/{status}"))
            assert isinstance(err, TransientBackendError) and f"HTTP {status}" in str(err)
            assert counters == {"requests": 1}  # not retried now
        for status in (400, 413, 422):  # this request is wrong: final
            err, counters = asyncio.run(post(f"{server.url}/{status}"))
            assert not isinstance(err, TransientBackendError) and f"HTTP {status}" in str(err)
    finally:
        server.stop()


# ---------------------------------------------------------------- units


@pytest.fixture(params=["local", "s3"])
def outage_output(request, tmp_path):
    """Where the interrupted build goes: local disk, or S3 (the moto server on loopback)."""
    if request.param == "local":
        return str(tmp_path / "outage")
    from tests.support.paths import BUCKET

    request.getfixturevalue("s3_endpoint")
    return f"s3://{BUCKET}/outage-{tmp_path.name}"


def test_outage_leaves_the_unit_unfinished_and_a_rerun_retries_only_those_pairs(
    demo_cfg, tmp_path, outage_output
):
    from editthinker_data.io.storage import open_storage

    with ChatServer() as server:
        cfg = tiny_config(demo_cfg, server.base_url)
        healthy = LocalStorage(tmp_path / "healthy")
        LocalExecutor().run_one(PoolStage(cfg), healthy, POOL_UNIT)
        expected = LocalExecutor().run_one(
            GenerateStage(cfg), healthy, part_name(0), runner=executor(cfg, tmp_path / "healthy")
        )
        healthy_requests = server.requests
        assert requests_in(expected.usage) == healthy_requests > 0
        assert expected.failures == [] and expected.stats["kept"] == 5

        out = outage_output
        storage = open_storage(out)
        LocalExecutor().run_one(PoolStage(cfg), storage, POOL_UNIT)
        server.requests, server.fail_after = 0, 8  # the endpoint goes away after 8 requests
        first = LocalExecutor().run_one(GenerateStage(cfg), storage, part_name(0), runner=executor(cfg, out))
        assert first.incomplete is True and not first.finished and first.stats == {}
        transient = first.transient  # per backend: the expert and the scorer both lost their endpoint
        assert set(transient) <= {"expert 'vlm-expert'", "scorer 'vlm-scorer'"} and transient
        assert all("gave up after 3 tries" in info.example for info in transient.values())
        unfinished = sum(info.count for info in transient.values())
        assert 1 <= unfinished < 5  # some pairs finished before the outage, some did not
        assert not storage.exists("_markers/generate/part-00000.json")  # not done
        assert not storage.list("trajectories")  # no partial shard or index
        assert storage.list("_journal/usage/part-00000") == ["_journal/usage/part-00000/usage.json"]
        outage_requests = server.requests
        assert requests_in(first.usage) == outage_requests

        server.requests, server.fail_after = 0, None  # the endpoint is back
        ran: list[int] = []
        plain = executor(cfg, out)

        def counting(items, make, on_done, **kw):
            ran.append(len(items))
            return plain(items, make, on_done, **kw)

        again = LocalExecutor().run_one(GenerateStage(cfg), storage, part_name(0), runner=counting)
        assert ran == [unfinished] and again.resumed == 5 - unfinished
        assert 0 < server.requests < healthy_requests  # turns before the outage came from the cache
        assert [s.sha256 for s in again.shards] == [s.sha256 for s in expected.shards]
        assert again.stats == expected.stats and again.failures == []
        # usage survives the rerun: the marker holds both processes' requests
        assert requests_in(again.usage) == outage_requests + server.requests
        assert storage.list("_journal") == []
        # No edit was made twice: the rerun took the edits of the unfinished rollouts from the
        # edit store, so both runs together made as many as the healthy build; once every
        # trajectory is journaled the store is empty again.
        assert edits_in(again.usage, "edits_stored") == edits_in(expected.usage, "edits_stored") > 0
        assert edits_in(again.usage, "edits_reused") >= unfinished
        assert storage.list("cache/edits") == [] and healthy.list("cache/edits") == []


def edits_in(usage: dict, counter: str) -> int:
    """A counter of the edit store, summed over the editors."""
    return sum(int(u["counters"].get(counter, 0)) for who, u in usage.items() if who.startswith("editor/"))


class Crash(Exception):
    pass


def test_usage_saved_with_the_journal_survives_a_crash(demo_cfg, tmp_path):
    with ChatServer() as server:
        cfg = tiny_config(demo_cfg, server.base_url, journal_every=2)
        storage = LocalStorage(tmp_path)
        LocalExecutor().run_one(PoolStage(cfg), storage, POOL_UNIT)
        plain = executor(cfg, tmp_path)

        def crashing(items, make, on_done, **kw):
            def done(i, traj):
                on_done(i, traj)
                if i == 3:
                    raise Crash  # right after the journal's second batch of two

            return plain(items, make, done, **kw)

        with pytest.raises(Crash):
            LocalExecutor().run_one(GenerateStage(cfg), storage, part_name(0), runner=crashing)
        saved = storage.read_json("_journal/usage/part-00000/usage.json")
        assert requests_in(saved) == server.requests > 0  # all of it: the crash lost no finished work
        before = server.requests

        report = LocalExecutor().run_one(
            GenerateStage(cfg), storage, part_name(0), runner=executor(cfg, tmp_path)
        )
        assert report.resumed == 4
        assert requests_in(report.usage) == server.requests > before  # both processes
        assert report.usage["expert/vlm-expert"]["batches"] > 0


def test_unparseable_answers_are_final_failures_of_the_backend(demo_cfg, tmp_path):
    with ChatServer(fault_rate=1.0, faults=["malformed"]) as server:
        cfg = tiny_config(demo_cfg, server.base_url)
        storage = LocalStorage(tmp_path)
        LocalExecutor().run_one(PoolStage(cfg), storage, POOL_UNIT)
        report = LocalExecutor().run_one(
            GenerateStage(cfg), storage, part_name(0), runner=executor(cfg, tmp_path)
        )
        sent = server.requests
        assert report.finished and storage.exists("_markers/generate/part-00000.json")
        assert report.stats == {"input": 5, "kept": 0, "filtered": {}, "failed": {"scorer_unparseable": 5}}
        assert report.failed_pairs == 5 and report.backend_failures == {"scorer 'vlm-scorer'": 5}
        assert {f["reason"] for f in report.failures} == {"scorer_unparseable"}
        assert all(f["detail"].startswith("scorer 'vlm-scorer': turn 1 score:") for f in report.failures)
        share = failure_share([report], 0.2)
        assert (share["failed"], share["pairs"], share["fraction"]) == (5, 5, 1.0)
        problem = verdict(share, {"sft": 0, "rl": 0, "trajectories": 0})
        assert problem.startswith("The build kept nothing") and "scorer 'vlm-scorer': 5" in problem
        assert (
            sent == 5 * 2 * 2
        )  # two VIEScore calls, one ask and one re-ask each, all cached: a rerun replays them


def test_failure_share_limit():
    def report(n, failed):
        return GenerateReport(partition=0, stats={"input": n}, failed_pairs=failed,
                              failures=[{"reason": "expert_error"}] * failed,
                              backend_failures={"expert 'x'": failed} if failed else {})  # fmt: skip

    totals = {"sft": 3, "rl": 1}
    share = failure_share([report(5, 1), report(5, 1)], 0.2)
    assert share["fraction"] == 0.2 and verdict(share, totals) is None  # at the limit: fine
    share = failure_share([report(5, 1), report(5, 2)], 0.2)
    problem = verdict(share, totals)
    assert "3 of 10 pairs failed (expert 'x': 3)" in problem and "run.max_failed_fraction=0.2" in problem
    assert verdict(failure_share([report(5, 3)], 1.0), totals) is None  # the user accepted it
    assert "kept nothing" in verdict(failure_share([report(5, 0)], 1.0), {"sft": 0, "rl": 0})


def test_incomplete_message_names_the_backend_and_how_to_finish():
    report = GenerateReport(
        partition=0,
        incomplete=True,
        pairs=5,
        transient={"expert 'vlm-x'": TransientPairs(count=3, example="turn 2 refine: gave up", pairs=[])},
    )
    err = BuildIncomplete({}, 2, {0: report})
    text = str(err)
    assert "3 of 5 pairs in 1 unit(s) could not finish" in text and "expert 'vlm-x': 3" in text
    assert "Run the same command again" in text and err.exit_code == 75


# ---------------------------------------------------------------- whole builds through the CLI


def cli_build(cfg, tmp_path, out, state_dir):
    import yaml
    from typer.testing import CliRunner

    from editthinker_data.cli import app

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    args = ["build", str(path), "-o", str(out), "--state-dir", str(state_dir)]
    result = CliRunner().invoke(app, args, terminal_width=200)
    return result, " ".join(result.output.split()), path


def shard_hashes(manifest):
    return {k: [(s["url"].rsplit("/", 1)[-1], s["sha256"]) for s in v] for k, v in manifest["shards"].items()}


@pytest.mark.slow
def test_outage_build_exits_non_zero_and_a_plain_rerun_matches_a_healthy_build(
    demo_cfg, ray_cluster, state_dir, tmp_path
):
    import json

    from flows.build_dataset import build_dataset

    with ChatServer() as server:
        # The endpoint goes away for good: the breaker pauses the build, then gives up after
        # run.outage_wait_s (30 minutes by default; 3 s here).
        cfg = tiny_config(demo_cfg, server.base_url, outage_wait_s=3)
        healthy = build_dataset(cfg.model_dump(), str(tmp_path / "healthy"), str(state_dir))
        assert healthy.manifest["totals"]["sft"] + healthy.manifest["totals"]["rl"] > 0

        out = tmp_path / "out"
        server.requests, server.fail_after = 0, 15  # the endpoint goes away mid-build
        first, text, path = cli_build(cfg, tmp_path, out, state_dir)
        assert first.exit_code == 75, first.output
        assert (
            "The build is not finished" in text
            and "could not finish because a backend was unreachable" in text
        )
        assert "gave up after 3 tries" in text and "No dataset was written" in text
        assert (
            f"To finish it, run: editthinker-data build {path} --output {out} --state-dir {state_dir}" in text
        )
        assert not (out / "manifest.json").exists() and not (out / "stats.json").exists()
        outage_requests = server.requests

        server.requests, server.fail_after = 0, None  # back: the same command finishes it
        second, text, _ = cli_build(cfg, tmp_path, out, state_dir)
        assert second.exit_code == 0, second.output
        manifest = json.loads((out / "manifest.json").read_text())
        assert shard_hashes(manifest) == shard_hashes(healthy.manifest)
        stats = json.loads((out / "stats.json").read_text())
        assert stats["generate_failures"]["failed"] == 0
        total = stats["llm_usage"]["total"]["requests"]
        assert 0 < server.requests < total == outage_requests + server.requests  # both processes counted
        backends = stats["backends"]
        assert sum(b["counters"].get("requests", 0) for b in backends.values()) == total


@pytest.mark.slow
def test_a_build_where_every_answer_is_unusable_exits_non_zero(demo_cfg, ray_cluster, state_dir, tmp_path):
    import json

    with ChatServer(fault_rate=1.0, faults=["malformed"]) as server:
        cfg = tiny_config(demo_cfg, server.base_url)
        out = tmp_path / "out"
        result, text, _ = cli_build(cfg, tmp_path, out, state_dir)
    assert result.exit_code == 65, result.output
    assert "The build kept nothing: 0 step samples. 10 of 10 pairs failed (scorer 'vlm-scorer': 10)" in text
    assert "To finish it" not in text  # final failures: rerunning alone would not help
    stats = json.loads((out / "stats.json").read_text())
    assert stats["stages"]["generate"]["failed"] == {"scorer_unparseable": 10}
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert sum(f["reason"] == "scorer_unparseable" for f in failures) == 10
