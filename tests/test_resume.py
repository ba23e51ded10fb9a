"""A build killed with SIGKILL mid-way and run again equals an uninterrupted build."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
        **os.environ,
        **env,
    }


def test_sigkill_mid_unit_then_resume_matches_clean_build(demo_build, tmp_path):
    _, clean = demo_build
    out, state = tmp_path / "out", tmp_path / "st"
    args, env = cli(out, state, EDITTHINKER__RUN__JOURNAL_EVERY="2")
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 180
    try:
        while not (out / "_journal").exists() or not any((out / "_journal").rglob("*.pkl")):
            assert proc.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline, "no journal appeared"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: driver, Prefect server, Ray
        proc.wait()
    assert not (out / "stats.json").exists()

    args, env = cli(out, state)
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    strip = lambda m: {k: [(s["url"], s["sha256"]) for s in v] for k, v in m["shards"].items()}  # noqa: E731
    assert strip(manifest) == strip(clean["manifest"])
    reports = [json.loads(p.read_text()) for p in (out / "_markers" / "generate").glob("*.json")]
    assert sum(r["resumed"] for r in reports) > 0
    assert not list((out / "_journal").rglob("*.pkl"))
