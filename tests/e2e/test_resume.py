"""A build killed with SIGKILL mid-way and run again equals an uninterrupted build.

On S3, the production output: a rerun must find the journal and markers in the object
store. The same kill on local disk is `bench/kill_resume.py` (10 random kill points); a
local unfinished build resumed by a plain rerun is `test_transient.py`, and a unit that
crashes mid-way resumes to the same bytes in `test_units.py`. Each case here is two full
CLI builds (about 1.5-2.5 min on 2 cores), so the suite runs the one storage that a
single-machine bench cannot reach."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.paths import BUCKET

pytestmark = pytest.mark.slow(seconds=120)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(out, state, **env):
    return [
        sys.executable,
        "-m",
        "editthinker_data.cli",
        "build",
        "configs/demo.yaml",
        "-o",
        str(out),
        "--state-dir",
        str(state),
    ], {
        # As a user's shell: not this test session's Prefect home (its SQLite database is
        # the session's own ephemeral server's) or Ray settings.
        **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_", "EDITTHINKER"))},
        **env,
    }


@pytest.fixture
def target(request, tmp_path):
    """(output location, a function that opens its storage) on S3."""
    from editthinker_data.io.storage import open_storage

    endpoint = request.getfixturevalue("s3_endpoint")
    url = f"s3://{BUCKET}/resume-{tmp_path.name}"
    return url, lambda: open_storage(url, endpoint_url=endpoint)


def test_sigkill_mid_unit_then_resume_matches_clean_build(demo_build, target, tmp_path):
    _, clean = demo_build
    out, storage = target
    state = tmp_path / "st"
    args, env = cli(out, state, EDITTHINKER__RUN__JOURNAL_EVERY="2")
    log = tmp_path / "first.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=sink, stderr=sink, start_new_session=True)
    deadline = time.monotonic() + 180
    try:
        while not storage().list(
            "_journal/generate"
        ):  # a journal batch (a unit's progress record comes first)
            assert proc.poll() is None, (
                "the build ended before it could be killed:\n" + log.read_text()[-3000:]
            )
            assert time.monotonic() < deadline, "no journal appeared"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: driver, Prefect server, Ray
        proc.wait()
    assert not storage().exists("stats.json")

    args, env = cli(out, state)
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    st = storage()
    manifest = st.read_json("manifest.json")
    strip = lambda m: {k: [(s["url"], s["sha256"]) for s in v] for k, v in m["shards"].items()}  # noqa: E731
    assert strip(manifest) == strip(clean.manifest)
    reports = [st.read_json(name) for name in st.list("_markers/generate")]
    assert sum(r["resumed"] for r in reports) > 0
    assert st.list("_journal") == []
