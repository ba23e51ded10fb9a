"""Outages of the expert through whole builds (issue 26's "done when"), with the model
services on loopback so the outage is staged and every edit is counted at the editor
(tests/support/outage_build.py):

- an outage that starts mid-build and heals: the build pauses (its circuit breaker opens,
  one probe at a time), resumes and exits 0 in the same run, with the healthy build's shards
  and no more edits than the healthy build plus the rollouts it had in flight;
- an outage past `run.outage_wait_s`: exit 75, no edit started after the breaker opened, and
  `status` from another process shows the open breaker while the build waits and the one it
  gave up on after;
- the rerun once the expert is back repeats no edit (the edit store) and writes the healthy
  build's shards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from editthinker_data.core.layout import BREAKERS_FILE
from tests.support.editor_server import EditorServer
from tests.support.openai_server import ChatServer
from tests.support.outage_build import cli_build, outage_config, peak_in_flight, repeated, shards
from tests.support.paths import ROOT

QUOTA = 2  # 10 demo pairs (2 per task type): about 20 expert requests when healthy
FAIL_AFTER = 8  # the expert goes away after its 8th request


@pytest.fixture(scope="module")
def servers():
    with EditorServer(scale=1) as editor, ChatServer() as expert:
        yield editor, expert


@pytest.fixture(scope="module")
def healthy(servers, ray_cluster, state_dir, tmp_path_factory):
    """The same build with the expert up throughout: its shards and how many edits it made."""
    editor, expert = servers
    folder = tmp_path_factory.mktemp("outage-healthy")
    cfg = outage_config(editor.base_url, expert.base_url, per_type_quota=QUOTA)
    before, asked = editor.requests, expert.requests
    code, text = cli_build(cfg, folder, folder / "out", state_dir)
    assert code == 0, text
    assert expert.requests - asked > FAIL_AFTER + 8  # the outage below starts mid-build
    return {"shards": shards(folder / "out"), "edits": editor.requests - before}


def _reset(expert: ChatServer, fail_after: int | None, outage_s: float | None = None) -> None:
    with expert.lock:
        expert.requests, expert.fail_after, expert.outage_s = 0, fail_after, outage_s
        expert.outage_from = expert.outage_until = None


@pytest.mark.slow(seconds=30)
def test_an_outage_that_heals_pauses_the_build_which_finishes_in_the_same_run(
    servers, healthy, state_dir, tmp_path
):
    editor, expert = servers
    cfg = outage_config(editor.base_url, expert.base_url, per_type_quota=QUOTA)
    _reset(expert, FAIL_AFTER, outage_s=4.0)  # down for 4 s from its first refused request
    before = editor.requests
    code, text = cli_build(cfg, tmp_path, tmp_path / "out", state_dir)
    assert code == 0, text
    assert expert.outage_from is not None and time.time() > expert.outage_until  # it was out, then back
    assert shards(tmp_path / "out") == healthy["shards"]
    made = editor.requests - before
    assert healthy["edits"] <= made <= healthy["edits"] + peak_in_flight(tmp_path / "out")
    # The breaker opened, probed and closed: the record it left says none is open.
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["generate_failures"]["failed"] == 0
    assert not (tmp_path / "out" / BREAKERS_FILE).exists()


# Another process reading the output while the build runs, as `status` does from another
# machine: it prints the first document that shows a breaker open in a running build.
WATCHER = """
import json, sys, time
from editthinker_data.release.status import read_status
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    doc = read_status(sys.argv[1])
    if doc["state"] == "running" and doc["breakers"]:
        print(json.dumps(doc))
        break
    time.sleep(0.2)
"""


def cli_status(out) -> tuple[int, str, dict]:
    from typer.testing import CliRunner

    from editthinker_data.cli import app

    text = CliRunner().invoke(app, ["status", str(out)], env={"COLUMNS": "200"})
    as_json = CliRunner().invoke(app, ["status", str(out), "--json"])
    return text.exit_code, " ".join(text.output.split()), json.loads(as_json.output)


@pytest.mark.slow(seconds=45)
def test_an_outage_past_outage_wait_s_exits_75_with_no_edit_after_the_breaker_opened_and_a_rerun_repeats_none(
    servers, healthy, state_dir, tmp_path
):
    editor, expert = servers
    out = tmp_path / "out"
    cfg = outage_config(editor.base_url, expert.base_url, per_type_quota=QUOTA, outage_wait_s=4)
    _reset(expert, FAIL_AFTER)  # down for good
    first = len(editor.started)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCHER, str(out), "300"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        code, text = cli_build(cfg, tmp_path, out, state_dir)
    finally:
        watcher.kill() if watcher.poll() is None else None
        seen = watcher.communicate()[0].strip()
    assert code == 75, text
    assert "unreachable" in text and "run.outage_wait_s" in text

    assert seen, "status from another process never showed the open breaker while the build waited"
    [live] = json.loads(seen)["breakers"]
    assert (live["role"], live["backend"]) == ("expert", "vlm-expert")
    assert live["state"] in ("open", "probing") and live["since"] >= expert.outage_from - 1
    assert live["state"] == "probing" or live["next_probe"] > live["since"]

    exit_code, shown, after = cli_status(out)  # the stopped build's record names the backend it gave up on
    assert exit_code == 1 and after["state"] == "stopped"
    [gave_up] = after["breakers"]
    assert gave_up["state"] == "gave_up" and gave_up["since"] == live["since"]
    assert "breaker expert 'vlm-expert' unreachable since" in shown and "gave up waiting" in shown
    # No edit started after the breaker opened (its time, as the dispatcher recorded it).
    record = json.loads((out / BREAKERS_FILE).read_text())["breakers"][0]
    starts = editor.started[first:]
    assert starts and max(starts) < record["since"], (max(starts) - record["since"], len(starts))
    outage_edits = editor.edits[first:]

    _reset(expert, None)  # the expert is back: the same command finishes the build
    rerun = len(editor.edits)
    code, text = cli_build(cfg, tmp_path, out, state_dir)
    assert code == 0, text
    assert repeated(outage_edits, editor.edits[rerun:]) == 0  # every edit the outage run made was kept
    assert len(outage_edits) + len(editor.edits) - rerun <= healthy["edits"] + peak_in_flight(out)
    assert shards(out) == healthy["shards"]
    assert not (out / BREAKERS_FILE).exists()
    exit_code, shown, done = cli_status(out)
    assert exit_code == 0 and done["breakers"] == [] and "breakers none open" in shown
