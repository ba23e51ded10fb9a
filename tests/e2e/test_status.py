"""`status OUTPUT`: where a build stands, read from its storage alone, for a build that never
started, one running (here, and on S3 from another process), one that stopped unfinished,
a finished one and a versioned root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from editthinker_data.cli import app
from editthinker_data.core.layout import POOL_UNIT, part_name
from editthinker_data.core.stats import llm_usage, merge_usage, usage_as_actor_info
from editthinker_data.execution.base import LocalExecutor
from editthinker_data.io.lease import OutputLease, holder_info
from editthinker_data.io.storage import LocalStorage
from editthinker_data.release.status import read_status
from editthinker_data.stages.generate import GenerateStage
from editthinker_data.stages.pool import PoolStage
from tests.e2e.test_transient import executor, tiny_config
from tests.support.openai_server import ChatServer
from tests.support.paths import BUCKET, DEMO_CONFIG, ROOT

PRICE = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}


def pool(cfg, storage):
    return LocalExecutor().run_one(PoolStage(cfg), storage, POOL_UNIT)


def generate(cfg, storage, partition: int, runner):
    return LocalExecutor().run_one(GenerateStage(cfg), storage, part_name(partition), runner=runner)


def cli_status(*args: str):
    result = CliRunner().invoke(app, ["status", *args], env={"COLUMNS": "160"})
    return result, (json.loads(result.output) if "--json" in args else None)


def test_an_output_nothing_was_built_in_says_so_with_exit_3(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for where in (empty, tmp_path / "missing"):
        shown, _ = cli_status(str(where))
        assert shown.exit_code == 3, shown.output
        assert "nothing built here yet" in shown.output and "editthinker-data build CONFIG" in shown.output
        as_json, doc = cli_status(str(where), "--json")
        assert as_json.exit_code == 3 and doc["state"] == "not_started" and doc["stage"] is None


def test_running_stopped_and_finished_units_with_rates_failures_and_cost(demo_cfg, tmp_path):
    """A unit paused mid-run under a held lease is running (pairs, turns, a rate and an ETA);
    once it finishes it counts as finished; an outage in the next unit leaves it unfinished,
    its unanswered pairs counted against their backends; without the lease it is stopped."""
    with ChatServer() as server:
        cfg = tiny_config(demo_cfg, server.base_url, journal_every=1)
        data = cfg.model_dump()
        for role in ("expert", "scorer"):
            data[role]["price"] = PRICE
        cfg = type(cfg).model_validate(data)
        storage = LocalStorage(tmp_path)
        pool(cfg, storage)
        lease = OutputLease(storage, holder_info(cfg.name, cfg.fingerprint(), "editthinker-data build"))
        lease.acquire()
        plain = executor(cfg, tmp_path)
        paused, resume, seen, at_pause = threading.Event(), threading.Event(), [], []

        def pausing(items, make, on_done, **kw):
            def done(i, traj):
                if i == 2:  # a rate needs a second of history (the lease's clock ticks in seconds)
                    time.sleep(1.2)
                on_done(i, traj)
                seen.append(len(traj.turns))
                if i == 2:  # three pairs journaled (journal_every 1), two to go
                    at_pause.extend(seen)
                    paused.set()
                    resume.wait(60)

            return plain(items, make, done, **kw)

        unit = threading.Thread(target=generate, args=(cfg, storage, 0, pausing))
        unit.start()
        try:
            assert paused.wait(60)
            doc = read_status(str(tmp_path))
            shown, as_json = cli_status(str(tmp_path), "--json")
            text, _ = cli_status(str(tmp_path))
        finally:
            resume.set()
            unit.join()
        assert doc["state"] == "running" and doc["stage"] == "generating"
        assert doc["units"]["generate"] == {"total": 2, "finished": 0, "running": 1, "unfinished": 1}
        assert doc["running_units"] == ["part-00000"]
        assert doc["pairs"] == {"total": 10, "done": 3} and doc["turns"] == sum(at_pause) > 0
        rate = doc["rate"]
        assert rate["pairs_per_s"] * rate["window_s"] == pytest.approx(
            3, abs=0.05
        )  # all three since the start
        assert rate["edits_per_s"] * rate["window_s"] == pytest.approx(sum(at_pause), abs=0.05)
        assert rate["eta_s"] == pytest.approx(7 / rate["pairs_per_s"], abs=0.051)  # to a tenth of a second
        expert = doc["usage"]["expert"]
        assert (
            expert["requests"] > 0 and expert["tokens_in"] == 1000 * expert["requests"]
        )  # the server's count
        assert expert["cost_usd"] == pytest.approx(
            (expert["tokens_in"] * 2.0 + expert["tokens_out"] * 8.0) / 1e6, abs=1e-4
        )
        assert doc["breakers"] == [] and doc["breakers_note"] == "none open"
        assert shown.exit_code == 0 and as_json["state"] == "running" and as_json["pairs"] == doc["pairs"]
        assert text.exit_code == 0 and "running: generating" in text.output, text.output
        assert "3 of 10 done" in text.output and "edits/s" in text.output and "ETA of generate" in text.output
        assert "editthinker-data build on" in text.output and "model usage so far" in text.output

        finished = read_status(str(tmp_path))  # the unit finished; the build still holds the lease
        assert finished["units"]["generate"] == {"total": 2, "finished": 1, "running": 0, "unfinished": 1}
        assert finished["pairs"]["done"] == 5 and finished["turns"] == sum(seen)
        marker = storage.read_json("_markers/generate/part-00000.json")
        assert finished["turns"] == marker["turns"]
        # priced as the finished build's stats.json prices it
        assert finished["usage"] == llm_usage(cfg, usage_as_actor_info(merge_usage(marker["usage"])))

        server.fail_after = server.requests + 6  # the endpoint goes away mid-unit
        incomplete = generate(cfg, storage, 1, executor(cfg, tmp_path))
        assert incomplete.incomplete is True
        watched: list = []  # --watch --json: a document a line until the build stops holding the output
        watch = threading.Thread(target=lambda: watched.append(CliRunner().invoke(
            app, ["status", str(tmp_path), "--watch", "--json", "--interval", "0.5"])))  # fmt: skip
        watch.start()
        time.sleep(1.5)
        lease.release()
        watch.join(30)
    lines = [json.loads(line) for line in watched[0].output.splitlines()]
    assert watched[0].exit_code == 1 and len(lines) >= 2
    assert [d["state"] for d in lines] == ["running"] * (len(lines) - 1) + ["stopped"]
    doc = read_status(str(tmp_path))
    assert doc["state"] == "stopped" and doc["stage"] == "generating" and doc["rate"] is None
    assert doc["units"]["generate"] == {"total": 2, "finished": 1, "running": 0, "unfinished": 1}
    unanswered = {
        f["backend"]: f["count"] for f in doc["failures"] if f["stage"].startswith("generate (unfinished")
    }
    expected = {who: t.count for who, t in incomplete.transient.items()}
    assert unanswered == expected and sum(expected.values()) >= 1
    assert (
        doc["stopped_units"][0]["unit"] == "part-00001" and doc["stopped_units"][0]["outcome"] == "incomplete"
    )
    assert doc["pairs"]["done"] == 10 - sum(expected.values())
    shown, _ = cli_status(str(tmp_path))
    assert shown.exit_code == 1 and "stopped while generating" in shown.output
    assert "generate: 1 finished, 0 running, 1 unfinished of 2" in shown.output


@pytest.mark.slow
def test_a_finished_build_a_stopped_copy_and_a_versioned_root(demo_build, tmp_path):
    out, _ = demo_build
    stats = json.loads((out / "stats.json").read_text())
    totals = json.loads((out / "manifest.json").read_text())["totals"]
    shown, doc = cli_status(str(out), "--json")
    assert shown.exit_code == 0, shown.output
    assert (doc["state"], doc["stage"], doc["writer"], doc["rate"]) == ("finished", "done", None, None)
    assert doc["units"]["generate"] == {"total": 4, "finished": 4, "running": 0, "unfinished": 0}
    assert doc["pairs"] == {
        "total": stats["stages"]["pool"]["kept"],
        "done": stats["stages"]["generate"]["input"],
    }
    assert doc["turns"] == totals["trajectories"]
    by_backend: dict[str, int] = {}
    for f in doc["failures"]:
        if f["stage"] == "generate":
            by_backend[f["backend"]] = by_backend.get(f["backend"], 0) + f["count"]
    assert by_backend == stats["generate_failures"]["by_backend"]
    text, _ = cli_status(str(out))
    assert "finished" in text.output and "generate: 4 finished, 0 running, 0 unfinished of 4" in text.output
    assert "breakers none open" in " ".join(text.output.split())  # no breaker record: none open at its end
    watched = CliRunner().invoke(app, ["status", str(out), "--watch", "--interval", "0.5"])
    assert watched.exit_code == 0 and "generate: 4 finished" in watched.output  # not running: one view

    copy = tmp_path / "stopped"  # a build that died mid-generate: one unit unmarked, nothing after
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("_state"))
    lost = json.loads((copy / "_markers/generate/part-00002.json").read_text())["stats"]["input"]
    for name in (
        "stats.json",
        "manifest.json",
        "_markers/generate/part-00002.json",
        "selection/steps.parquet",
    ):
        (copy / name).unlink()
    shown, doc = cli_status(str(copy), "--json")
    assert shown.exit_code == 1 and (doc["state"], doc["stage"]) == ("stopped", "generating")
    assert doc["units"]["generate"] == {"total": 4, "finished": 3, "running": 0, "unfinished": 1}
    assert doc["pairs"]["done"] == stats["stages"]["generate"]["input"] - lost > 0

    unusable = tmp_path / "unusable"  # finished, but nothing kept: the verdict the build exits with
    shutil.copytree(out, unusable, ignore=shutil.ignore_patterns("_state"))
    manifest = json.loads((unusable / "manifest.json").read_text())
    manifest["totals"].update(sft=0, rl=0)
    (unusable / "manifest.json").write_text(json.dumps(manifest))
    shown, doc = cli_status(str(unusable), "--json")
    assert (
        shown.exit_code == 1
        and doc["state"] == "unusable"
        and doc["problem"].startswith("The build kept nothing")
    )

    root = tmp_path / "root"  # a versioned root: v0001 finished, v0002 started and stopped
    shutil.copytree(out, root / "v0001", ignore=shutil.ignore_patterns("_state"))
    (root / "v0001" / "version.json").write_text('{"version": "v0001", "previous": null}\n')
    (root / "latest").write_text("v0001\n")
    shown, doc = cli_status(str(root), "--json")
    assert shown.exit_code == 0 and doc["version"] == {"name": "v0001", "latest": "v0001"}
    assert doc["state"] == "finished" and doc["pairs"]["done"] == stats["stages"]["generate"]["input"]
    (root / "v0002").mkdir()
    (root / "v0002" / "version.json").write_text('{"version": "v0002", "previous": "v0001"}\n')
    shown, doc = cli_status(str(root), "--json")
    assert doc["version"] == {"name": "v0002", "latest": "v0001"}
    assert shown.exit_code == 1 and (doc["state"], doc["stage"]) == ("stopped", "pooling")


@pytest.mark.slow(seconds=150)  # a build in its own process: Prefect and Ray start there
def test_status_of_a_running_s3_build_from_another_process(s3_endpoint, tmp_path):
    """The build runs in its own process (the README's command, with editors slowed down);
    this process reads the bucket: a stage and partial progress while it runs, then the
    finished build."""
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["source"]["manifest"] = str((DEMO_CONFIG.parent / data["source"]["manifest"]).resolve())
    for editor in data["editors"]:
        editor["params"]["latency_s"] = 1.0  # a GPU's time per batch: generation lasts long enough to watch
    data["output"].update(exports=[], report=False)
    data["run"].update(partition_size=10, journal_every=2)
    config = tmp_path / "slow-demo.yaml"
    config.write_text(yaml.safe_dump(data))
    url = f"s3://{BUCKET}/builds/status-{tmp_path.name}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_", "EDITTHINKER"))}
    env.update(XDG_STATE_HOME=str(tmp_path / "xdg-state"), AWS_ENDPOINT_URL_S3=s3_endpoint)
    cli = Path(sys.executable).parent / "editthinker-data"
    build = subprocess.Popen(
        [str(cli), "build", str(config), "--output", url], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    partial, states = None, set()
    try:
        deadline = time.monotonic() + 400
        while build.poll() is None and time.monotonic() < deadline:
            doc = read_status(url, endpoint_url=s3_endpoint)
            states.add((doc["state"], doc["stage"]))
            moving = 0 < doc["pairs"]["done"] < doc["pairs"]["total"] and doc["units"]["generate"]["running"]
            if doc["stage"] == "generating" and moving and partial is None:
                partial = doc
                shown, as_json = cli_status(url, "--json", "--endpoint-url", s3_endpoint)
            time.sleep(0.5)
        log = build.communicate(timeout=max(deadline - time.monotonic(), 1))[0]
    finally:
        if build.poll() is None:
            build.kill()
    assert build.returncode == 0, log[-3000:]
    assert partial is not None, states
    assert partial["state"] == "running" and partial["writer"]["command"] == "editthinker-data build"
    assert partial["units"]["generate"]["total"] == 4 and partial["units"]["generate"]["running"] >= 1
    assert partial["units"]["generate"]["finished"] < 4 and partial["turns"] >= partial["pairs"]["done"]
    assert partial["rate"]["edits_per_s"] > 0 and partial["rate"]["eta_s"] > 0
    assert shown.exit_code == 0 and as_json["state"] == "running" and as_json["output"] == url
    assert as_json["pairs"]["done"] >= partial["pairs"]["done"]
    shown, doc = cli_status(url, "--json", "--endpoint-url", s3_endpoint)
    assert shown.exit_code == 0 and (doc["state"], doc["stage"], doc["writer"]) == ("finished", "done", None)
    assert doc["pairs"] == {"total": 40, "done": 40} and doc["units"]["generate"]["finished"] == 4
    text, _ = cli_status(url, "--endpoint-url", s3_endpoint)
    assert "generate: 4 finished, 0 running, 0 unfinished of 4" in text.output


def test_final_failures_are_counted_by_backend_and_reason(demo_cfg, tmp_path):
    """A scorer whose answers never parse: every pair fails for good, counted against it, as
    the unit's own report counts them; the pool's unusable records stay the pool's."""
    with ChatServer(fault_rate=1.0, faults=["malformed"]) as server:
        cfg = tiny_config(demo_cfg, server.base_url)
        storage = LocalStorage(tmp_path)
        pooled_report = pool(cfg, storage)
        report = generate(cfg, storage, 0, executor(cfg, tmp_path))
    doc = read_status(str(tmp_path))
    final = {(f["backend"], f["reason"]): f["count"] for f in doc["failures"] if f["stage"] == "generate"}
    assert (
        final
        == {("scorer 'vlm-scorer'", "scorer_unparseable"): 5}
        == {(who, f["reason"]): n for who, n in report.backend_failures.items() for f in report.failures[:1]}
    )
    pooled = {f["reason"]: f["count"] for f in doc["failures"] if f["stage"] == "pool"}
    assert pooled == pooled_report.stats["failed"] and sum(pooled.values()) > 0
    assert doc["state"] == "stopped" and doc["units"]["generate"]["finished"] == 1 and doc["turns"] == 0
