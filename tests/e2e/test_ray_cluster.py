"""Joining a real Ray cluster: a head started the way Ray's docs say (`ray start --head`),
with token authentication (Ray's security guide), and an address where nothing listens."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from editthinker_data.cli import app
from editthinker_data.config import ConfigError
from editthinker_data.pipeline.preflight import check_ray_address
from tests.support.paths import ROOT

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_address_fails_at_once_naming_it(monkeypatch):
    port = _free_port()  # closed again: nothing listens there
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        check_ray_address(f"127.0.0.1:{port}")
    assert time.monotonic() - started < 15
    assert f"127.0.0.1:{port}" in str(err.value) and "ray start --head" in str(err.value)
    with pytest.raises(ConfigError, match="not host:port"):
        check_ray_address("my-head")
    monkeypatch.setenv("EDITTHINKER__RUN__RAY_ADDRESS", f"127.0.0.1:{port}")
    result = CliRunner().invoke(app, ["validate", "configs/demo.yaml"])
    assert result.exit_code == 2 and "cannot reach a Ray head" in result.output


def _kill_tree_under(temp_dir: str) -> None:
    """Stop the processes of this head only (`ray stop` would also stop the session's cluster)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if temp_dir in args:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


@pytest.mark.slow
def test_build_through_a_ray_start_head_with_token_auth(tmp_path):
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="etd-rh-", dir="/tmp")  # short: Ray's socket paths
    token = "etd0" * 8
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_", "EDITTHINKER"))}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    head = subprocess.run(
        [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    try:
        assert head.returncode == 0, head.stdout + head.stderr
        # The client side as docs/clusters-and-operations.md says: the token exported, RAY_AUTH_MODE inferred from it.
        client = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
        client.update(EDITTHINKER__RUN__RAY_ADDRESS=f"127.0.0.1:{port}", COLUMNS="100")
        done = subprocess.run(
            [str(BIN / "editthinker-data"), "build", "configs/demo.yaml", "--output", str(tmp_path / "out")],
            cwd=ROOT, env=client, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert (tmp_path / "out" / "manifest.json").exists()
        # The build ran on that head: its actors are in the head's logs, not in a local cluster.
        assert not (tmp_path / "out" / "_state" / "ray").exists()
        logs = list(Path(temp_dir).glob("session_*/logs/*"))
        assert any("Actor" in p.name or "worker" in p.name for p in logs)
    finally:
        _kill_tree_under(temp_dir)
