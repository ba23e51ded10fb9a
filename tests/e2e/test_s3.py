"""Builds on object storage: a real S3 API server on loopback (moto's server mode), boto3."""

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from editthinker_data.cli import app
from editthinker_data.core.layout import POOL_UNIT, part_name
from editthinker_data.execution.base import LocalExecutor
from editthinker_data.io.storage import S3Storage, open_storage
from editthinker_data.release.report import Build, verify
from editthinker_data.stages.generate import GenerateStage
from editthinker_data.stages.pool import PoolStage
from tests.support.paths import BUCKET, ROOT


def test_roundtrip_multipart_listing_and_folders(s3_endpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(S3Storage, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(S3Storage, "MULTIPART_CHUNK", 5 * 1024 * 1024)
    st = open_storage(f"s3://{BUCKET}/rt", endpoint_url=s3_endpoint, cache_dir=tmp_path / "cache")
    assert not st.exists("a.json")
    st.write_json("a.json", {"x": 1})
    assert st.read_json("a.json") == {"x": 1} and st.exists("a.json")
    big = os.urandom(11 * 1024 * 1024)
    staged = st.staging_path("shards/big.tar")
    staged.write_bytes(big)
    st.commit(staged, "shards/big.tar")
    head = boto3.client("s3", endpoint_url=s3_endpoint).head_object(Bucket=BUCKET, Key="rt/shards/big.tar")
    assert head["ContentLength"] == len(big) and "-" in head["ETag"]  # uploaded in parts
    assert hashlib.sha256(st.read_bytes("shards/big.tar")).digest() == hashlib.sha256(big).digest()
    assert st.local_copy("shards/big.tar").read_bytes() == big
    work = st.work_dir("gallery")
    (work / "img").mkdir()
    (work / "img" / "a.png").write_bytes(b"png")
    (work / "index.html").write_text("<html>")
    st.publish_dir("gallery")
    assert st.list("gallery") == ["gallery/img/a.png", "gallery/index.html"]
    assert st.list("") == ["a.json", "gallery/img/a.png", "gallery/index.html", "shards/big.tar"]
    st.delete("a.json")
    assert not st.exists("a.json")
    with pytest.raises(FileNotFoundError):
        st.read_bytes("nope.json")


@pytest.fixture
def short_home():
    """A home as short as /root (9 characters): the default state folder under it left Ray's
    sockets too little room (the old rule kept Ray's temp dir there, 120 bytes to a socket)."""
    for _ in range(100):
        home = Path("/tmp") / secrets.token_hex(2)
        try:
            home.mkdir()
        except FileExistsError:
            continue
        yield home
        shutil.rmtree(home, ignore_errors=True)
        return
    raise RuntimeError("no free /tmp/XXXX name for a short home")


@pytest.mark.slow
def test_readme_s3_build_command_then_inspect_verify_and_detect_damage(s3_endpoint, short_home):
    """The S3 build command of docs/clusters-and-operations.md, as a user types it: a fresh process, relative config path, the
    endpoint from AWS_ENDPOINT_URL_S3; run state goes to the default per-user folder,
    ~/.local/state/editthinker-data, under a home as short as /root (how the container image
    runs), where Ray's socket paths must still fit in 107 bytes."""
    from editthinker_data.distributed.runtime import ray_temp_dir

    url = f"s3://{BUCKET}/builds/demo"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_", "EDITTHINKER", "XDG_"))
    }
    env.update(HOME=str(short_home), AWS_ENDPOINT_URL_S3=s3_endpoint, COLUMNS="100")
    cli = Path(sys.executable).parent / "editthinker-data"
    state = (
        short_home / ".local" / "state" / "editthinker-data" / hashlib.sha256(url.encode()).hexdigest()[:16]
    )
    ray_temp = ray_temp_dir(state)
    try:
        done = subprocess.run(
            [str(cli), "build", "configs/demo.yaml", "--output", url],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        sockets = [p for p in ray_temp.glob("session_*/sockets/*")]
        assert sockets and max(len(str(p).encode()) for p in sockets) <= 107, sockets
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    states = list(state.parent.iterdir())
    assert states == [state] and (state / "prefect").is_dir() and (state / "imagesig.sqlite").exists()
    storage = open_storage(url, endpoint_url=s3_endpoint)
    manifest = storage.read_json("manifest.json")
    for items in manifest["shards"].values():
        for s in items:
            assert hashlib.sha256(storage.read_bytes(s["url"])).hexdigest() == s["sha256"]
    b = Build(url, endpoint_url=s3_endpoint)
    checked, mismatches = b.recheck_selection()
    assert checked == 40 and mismatches == []
    assert storage.exists("exports/llamafactory/sft_train.json") and storage.exists("gallery/index.html")
    rows = json.loads(storage.read_bytes("exports/llamafactory/sft_train.json"))
    assert all(storage.exists(f"exports/llamafactory/{p}") for r in rows for p in r["images"])

    runner = CliRunner()
    ok = runner.invoke(app, ["verify", url, "--endpoint-url", s3_endpoint])
    assert ok.exit_code == 0, ok.output
    assert verify(storage)["checked"] == sum(len(v) for v in manifest["shards"].values())

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    sft = manifest["shards"]["sft"]
    client.put_object(Bucket=BUCKET, Key=f"builds/demo/{sft[0]['url']}", Body=b"corrupted")
    gone = manifest["shards"]["trajectories"][1]["url"]  # step shards are packed: the demo has one per split
    client.delete_object(Bucket=BUCKET, Key=f"builds/demo/{gone}")
    client.put_object(Bucket=BUCKET, Key="builds/demo/steps/sft/part-99999-000000.tar", Body=b"x")
    report = verify(storage)
    assert [m.split(":")[0] for m in report["mismatched"]] == [sft[0]["url"]]
    assert report["missing"] == [gone]
    assert report["extra"] == ["steps/sft/part-99999-000000.tar"]
    bad = runner.invoke(app, ["verify", url, "--endpoint-url", s3_endpoint])
    assert bad.exit_code == 1 and "3 problem(s)" in bad.output


def test_verify_local_catches_corruption(demo_build, tmp_path):
    import shutil

    out, result = demo_build
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("_state"))
    storage = open_storage(copy)
    assert verify(storage)["mismatched"] == []
    first = result.manifest["shards"]["trajectories"][0]["url"]
    data = bytearray((copy / first).read_bytes())
    data[600] ^= 0xFF
    (copy / first).write_bytes(bytes(data))
    assert verify(storage)["mismatched"] == [f"{first}: sha256 differs"]


def test_source_manifest_and_images_on_s3(s3_endpoint, demo_cfg, tmp_path):
    from pathlib import Path

    from editthinker_data.config import parse_config
    from editthinker_data.io.pool_snapshot import load_partition, load_source_image
    from editthinker_data.io.storage import LocalStorage

    src = Path(demo_cfg.source.manifest).parent
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for path in [src / "manifest.jsonl", *sorted((src / "images").iterdir())]:
        client.put_object(
            Bucket=BUCKET, Key=f"sources/demo/{path.relative_to(src).as_posix()}", Body=path.read_bytes()
        )
    data = demo_cfg.model_dump()
    data["source"]["manifest"] = f"s3://{BUCKET}/sources/demo/manifest.jsonl"
    cfg = parse_config(data, environ={})
    remote = LocalExecutor().run_one(PoolStage(cfg), LocalStorage(tmp_path / "remote"), POOL_UNIT)
    local = LocalExecutor().run_one(PoolStage(demo_cfg), LocalStorage(tmp_path / "local"), POOL_UNIT)
    assert remote.stats == local.stats and remote.by_editor == local.by_editor
    entries = load_partition(LocalStorage(tmp_path / "remote"), 0)
    assert entries[0].image_path.startswith(f"s3://{BUCKET}/sources/demo/images/")
    assert load_source_image(entries[0]).size == (128, 128)
    missing = [f for f in remote.failures if f["reason"] == "image_missing"]
    assert missing and "s3://" in missing[0]["detail"]


def test_units_survive_s3_faults(s3_endpoint, demo_cfg, tmp_path):
    """30% of S3 requests fail (503 SlowDown, 500, dropped connections): retries absorb them
    and the output verifies."""
    from editthinker_data.execution.local_rollouts import local_runner
    from tests.support.faulty_s3 import FaultyProxy

    host, port = s3_endpoint.removeprefix("http://").split(":")
    with FaultyProxy(host, int(port), fault_rate=0.3, seed=1) as proxy:
        storage = S3Storage(
            f"s3://{BUCKET}/faulty", endpoint_url=proxy.endpoint, cache_dir=tmp_path / "cache"
        )
        pool = LocalExecutor().run_one(PoolStage(demo_cfg), storage, POOL_UNIT)
        executor = local_runner(demo_cfg)
        reports = [
            LocalExecutor().run_one(GenerateStage(demo_cfg), storage, part_name(p), runner=executor)
            for p in pool.partitions
        ]
        assert sum(r.stats["input"] for r in reports) == 40
        clean = S3Storage(f"s3://{BUCKET}/faulty", endpoint_url=s3_endpoint, cache_dir=tmp_path / "c2")
        for r in reports:
            for s in r.shards:
                assert hashlib.sha256(clean.read_bytes(s.url)).hexdigest() == s.sha256
        assert sum(proxy.faults.values()) >= 10 and all(proxy.faults.values()), proxy.faults
