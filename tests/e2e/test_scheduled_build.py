"""Scheduled builds end to end, as docs/clusters-and-operations.md's "Scheduled builds" does
them: a real Prefect server on loopback, `editthinker-data deploy`, `prefect deployment run`, and a
process worker that executes the run, which builds the demo config."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from editthinker_data.core.layout import LEASE_FILE, MANIFEST_FILE
from tests.support.paths import DEMO_CONFIG, ROOT

pytestmark = pytest.mark.slow
PREFECT = str(Path(sys.executable).parent / "prefect")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prefect_server(tmp_path):
    """`prefect server start` on loopback with its own PREFECT_HOME; the environment that
    the CLI, the worker and its flow runs share."""
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PYTHONPATH": str(ROOT),
    }
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Prefect server did not answer /api/health in 90 s"
            time.sleep(0.5)
        yield api, env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _run(args: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_deploy_then_run_builds_through_a_real_prefect_server(prefect_server, tmp_path):
    api, env = prefect_server
    t0 = time.monotonic()
    out = tmp_path / "nightly"
    cli = [sys.executable, "-m", "editthinker_data.cli"]
    deployed = _run(
        [*cli, "deploy", str(DEMO_CONFIG), "--cron", "0 2 * * *", "--work-pool", "etd-builds",
         "--name", "demo-nightly", "--output", str(out)],
        env,
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    assert "created work pool 'etd-builds' (type process)" in deployed.stdout
    assert "prefect worker start --pool etd-builds" in deployed.stdout

    pool = httpx.get(f"{api}/work_pools/etd-builds").json()
    assert pool["type"] == "process"
    deployment = httpx.get(f"{api}/deployments/name/scheduled-build/demo-nightly").json()
    assert deployment["parameters"] == {"config": str(DEMO_CONFIG), "output": str(out), "state_dir": None}
    assert deployment["entrypoint"] == "flows.scheduled_build.scheduled_build"
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["0 2 * * *"]

    triggered = _run([PREFECT, "deployment", "run", "scheduled-build/demo-nightly"], env)
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", triggered.stdout).group(1)
    print(f"deployed and triggered in {time.monotonic() - t0:.1f}s")
    started = time.monotonic()
    # The run reads the config when it starts, with the worker's environment overrides, as
    # `build` would (a smaller pool also keeps this test short).
    worker_env = {**env, "EDITTHINKER__SOURCE__PER_TYPE_QUOTA": "3"}
    worker = _run(
        [PREFECT, "worker", "start", "--pool", "etd-builds", "--run-once", "--limit", "1"], worker_env
    )
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]

    run = httpx.get(f"{api}/flow_runs/{run_id}").json()
    assert run["state"]["type"] == "COMPLETED", worker.stdout[-3000:] + worker.stderr[-3000:]
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["totals"]["sft"] > 0 and manifest["totals"]["rl"] > 0
    assert not (out / LEASE_FILE).exists()  # released when the run finished
    assert json.loads((out / "config.json").read_text())["source"]["per_type_quota"] == 3
    stats = json.loads((out / "stats.json").read_text())
    assert 0 < max(t["kept"] for t in stats["pool_by_task_type"].values()) <= 3
    print(f"worker run and build: {time.monotonic() - started:.1f}s")
