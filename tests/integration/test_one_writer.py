"""Every way into a build claims the output first: `build`, `pool` and a deployment run are
refused at once while another build holds the output, write nothing, and leave the other
build's lease alone; the shared preparation reads configs from paths and s3:// URLs."""

from __future__ import annotations

import time

import boto3
import pytest
from typer.testing import CliRunner

from editthinker_data.cli import app
from editthinker_data.config import ConfigError
from editthinker_data.core.layout import LEASE_FILE, POOL_FILE
from editthinker_data.execution.prepare import load_build_config, prepare_build
from editthinker_data.io.lease import EXIT_BUSY, OutputBusy, OutputLease, holder_info
from editthinker_data.io.storage import open_storage
from tests.support.paths import BUCKET, DEMO_CONFIG

runner = CliRunner()


def _output(kind: str, tmp_path, request) -> str:
    if kind == "local":
        return str(tmp_path / "out")
    request.getfixturevalue("s3_endpoint")
    return f"s3://{BUCKET}/one-writer-{tmp_path.name}"


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_build_pool_and_a_deployment_run_are_refused_while_another_build_writes(kind, tmp_path, request):
    from flows.scheduled_build import scheduled_build

    out = _output(kind, tmp_path, request)
    storage = open_storage(out)
    running = OutputLease(storage, holder_info("nightly", "f00d", "deployment run calm-fox")).acquire()
    try:
        held = storage.read_versioned(LEASE_FILE).version
        for command in ("build", "pool"):
            started = time.monotonic()
            result = runner.invoke(app, [command, str(DEMO_CONFIG), "--output", out, "--overwrite"])
            assert time.monotonic() - started < 10
            assert result.exit_code == EXIT_BUSY, result.output
            text = " ".join(result.output.split())  # the console wraps long lines
            for part in ("being written by another build", "deployment run calm-fox", "config nightly"):
                assert part in text
        with pytest.raises(OutputBusy, match="deployment run calm-fox"):
            scheduled_build.fn(str(DEMO_CONFIG), out, str(tmp_path / "state"))
        assert storage.read_versioned(LEASE_FILE).version == held  # untouched by the refused ones
        assert storage.list("") == [LEASE_FILE]  # --overwrite cleared nothing, nothing was written
    finally:
        running.release()
    assert storage.list("") == []


def test_pool_releases_the_output_when_it_ends(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["pool", str(DEMO_CONFIG), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / POOL_FILE).exists() and not (out / LEASE_FILE).exists()


def test_prepare_reads_a_config_from_s3_and_places_output_and_state(s3_endpoint, tmp_path, monkeypatch):
    manifest = (DEMO_CONFIG.parent / "../editthinker_data/demo/source/manifest.jsonl").resolve()
    text = DEMO_CONFIG.read_text().replace("../editthinker_data/demo/source/manifest.jsonl", str(manifest))
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=BUCKET, Key="cfg/nightly.yaml", Body=text)
    monkeypatch.setenv("EDITTHINKER__LOOP__MAX_TURNS", "3")  # overrides apply to a URL config too
    cfg = load_build_config(f"s3://{BUCKET}/cfg/nightly.yaml")
    assert cfg.name == "editthinker-demo" and cfg.loop.max_turns == 3
    with pytest.raises(ConfigError, match="not found"):
        load_build_config(f"s3://{BUCKET}/cfg/missing.yaml")

    monkeypatch.chdir(tmp_path)
    prepared = prepare_build(str(DEMO_CONFIG), "rel/out")
    assert prepared.output == str(tmp_path / "rel" / "out")  # absolute: a worker runs elsewhere
    assert prepared.state_dir == tmp_path / "rel" / "out" / "_state" and prepared.state_dir.is_dir()


def test_deploy_fails_fast_without_a_server_url_or_with_a_bad_cron(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = runner.invoke(app, ["deploy", str(DEMO_CONFIG), "--cron", "0 2 * * *", "--work-pool", "p"])
    assert result.exit_code == 2 and "PREFECT_API_URL is not set" in result.output
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # nothing listens: never reached
    result = runner.invoke(app, ["deploy", str(DEMO_CONFIG), "--cron", "every night", "--work-pool", "p"])
    assert result.exit_code == 2 and "five cron fields" in " ".join(result.output.split())
