"""Shared fixtures: Prefect (ephemeral) and Ray state in a temp dir set up before either is
imported; one local Ray cluster and one demo build per test session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_STATE = Path(tempfile.mkdtemp(prefix="etd-test-"))
from editthinker_data.core import runenv  # noqa: E402

runenv.prepare(_STATE)
os.environ.update(HF_HOME=str(_STATE / "hf"), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "etd-test"
DEMO_CONFIG = ROOT / "configs" / "demo.yaml"


# The longest tests (1.5-2 min each on 2 cores), longest first; then the other slow ones.
# test_bench_smoke is several subprocesses of up to a minute each: started early, they spread.
LONGEST = (
    "tests/test_resume.py",
    "tests/test_multinode.py",
    "tests/test_diffusers_editors.py",
    "tests/test_bench_smoke.py",
)


def pytest_collection_modifyitems(config, items):
    """Longest first (LPT scheduling): with `--maxschedchunk 1` each xdist worker takes the
    next test as it frees up, so the end-to-end builds start early, spread over the workers,
    instead of queueing on one worker at the end of the run."""

    def rank(item) -> tuple[int, int]:
        path = item.nodeid.split("::")[0]
        if path in LONGEST and item.get_closest_marker("slow"):
            return (0, LONGEST.index(path))
        return (1, 0) if item.get_closest_marker("slow") else (2, 0)

    items.sort(key=rank)  # stable: collection order within a rank


def pytest_sessionfinish(session, exitstatus):
    import shutil

    shutil.rmtree(_STATE, ignore_errors=True)


@pytest.fixture(scope="session")
def state_dir() -> Path:
    return _STATE


@pytest.fixture(scope="session")
def demo_cfg():
    from editthinker_data.config import load_config

    return load_config(DEMO_CONFIG)


@pytest.fixture(scope="session")
def ray_cluster(state_dir):
    from editthinker_data.distributed.runtime import ensure_ray, shutdown

    os.environ.setdefault("RAY_num_prestart_python_workers", "0")
    # Keep a few idle workers (Ray keeps as many as CPUs, 2 here): each build's unit tasks
    # then reuse the last build's worker processes instead of starting and importing anew.
    os.environ.setdefault("RAY_num_workers_soft_limit", "6")
    ensure_ray(None, 2, state_dir)
    yield
    shutdown()


@pytest.fixture(scope="session")
def demo_build(ray_cluster, demo_cfg, tmp_path_factory, state_dir):
    """The demo config built once through Prefect and Ray."""
    from flows.build_dataset import build_dataset

    out = tmp_path_factory.mktemp("demo-build")
    result = build_dataset(demo_cfg.model_dump(), str(out), str(state_dir))
    return out, result


@pytest.fixture(scope="session")
def s3_endpoint():
    import boto3
    from moto.server import ThreadedMotoServer

    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL_S3"] = endpoint  # anything that forgets the endpoint still stays on loopback
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    os.environ.pop("AWS_ENDPOINT_URL_S3", None)
    server.stop()
