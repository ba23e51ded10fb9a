"""Every script in bench/ runs in its `--smoke` size, as a user runs it (a subprocess, this
tree on its path, a shell's environment), and prints its figures. A change that breaks a
benchmark fails here, not months later in the hands of whoever measures next."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.paths import ROOT

pytestmark = pytest.mark.slow(seconds=150)  # kill_resume and memory run three builds each

NUMBER = r"(\d+(?:\.\d+)?)"
# The lines that carry each script's figures; every number they capture must be finite and
# above zero. Longest first, so xdist starts them early. A script not named here is still
# run, and must print at least one decimal figure.
FIGURES: dict[str, list[str]] = {
    "kill_resume.py": [r"^run 1: .*; resumed build matches$", r"^matched (\d+) of \1$"],
    "memory.py": [
        rf"^2N / N at 256px: driver {NUMBER}, largest worker {NUMBER} .* dispatcher {NUMBER}$",
        rf"^driver at 256px / at 64px \(N pairs\): {NUMBER}; dispatcher {NUMBER}$",
    ],
    "outage.py": [
        rf"^healthy +0 +{NUMBER} +(\d+)$",
        rf"^outage +0 +{NUMBER} +(\d+)$",  # the outage healed: the same run finished
        rf"^edits outage / healthy: {NUMBER}x",
        r"^shards identical: yes$",
        rf"^past run\.outage_wait_s=\S+: exit 75 after {NUMBER} s, (\d+) edits$",
        r"^rerun: exit 0 after .* repeated 0; shards identical: yes$",  # the edit store kept every edit
    ],
    "paper_scale.py": [
        rf"^wall {NUMBER} s, ideal {NUMBER} s: wall / ideal {NUMBER}$",
        rf"^editor/omnigen2 +(\d+) +(\d+) +{NUMBER} +{NUMBER}% +\d+\.\d%$",
        rf"^orchestration CPU ms per turn: driver {NUMBER} +dispatcher {NUMBER} +units {NUMBER} +prefect server"
        rf" {NUMBER} +total {NUMBER}$",
        rf"^peak RSS MB: driver {NUMBER} +dispatcher {NUMBER} +object store peak MB \d+$",
        r"^Prefect task runs (\d+); Ray tasks \(units\) (\d+): ",
        rf"^files written (\d+) .*samples per shard min (\d+) median {NUMBER} max (\d+) against shard_max_samples 1000$",
    ],
    "expert_concurrency.py": [
        rf"^  concurrency 1: +{NUMBER} calls/s +concurrency 4: +{NUMBER} calls/s +ratio {NUMBER}x$",
        r"^pipeline: (\d+) pairs",
        rf"^ratio: {NUMBER}x$",
    ],
    "dispatch_ceiling.py": [
        rf"^turns/s: {NUMBER} over the run \({NUMBER} s\), {NUMBER} in its middle$",
        rf"^CPU ms per turn: dispatcher {NUMBER}, units {NUMBER}, backends {NUMBER},",
        rf"^GPUs kept busy at the middle rate: {NUMBER} at 20 s per edit, {NUMBER} at 5 s per edit, {NUMBER} at 1 s",
        rf"^fleet: {NUMBER} turns/s in the middle of {NUMBER} possible; editors busy {NUMBER}%",
    ],
    "scheduler.py": [rf"^scheduler +48 +(\d+) +{NUMBER} +{NUMBER} +{NUMBER}% +{NUMBER}$"],
    "pipeline_vs_loop.py": [
        rf"^plain loop +{NUMBER} +{NUMBER}$",
        rf"^actor pool +{NUMBER} +{NUMBER}$",
        rf"^ratio pool/loop: {NUMBER}x$",
    ],
    "editor_pool.py": [
        rf"^plain loop : +{NUMBER} edits/s",
        rf"^actor pool : +{NUMBER} edits/s",
        rf"^ratio pool/loop: {NUMBER}x$",
    ],
    "pool_scale.py": [
        r"^first: 200 records \((\d+) kept.* cache hits 0 misses (\d+)$",
        r"^rerun: 200 records \((\d+) kept.* cache hits (\d+) misses 0$",  # every signature cached
        rf"^rerun / first speed: {NUMBER}x$",
    ],
    "cli_build.py": [
        rf"^this tree, partition_size auto +{NUMBER} +{NUMBER} +(\d+) +{NUMBER} ",
        rf"^orchestration CPU per turn, this tree, partition_size auto: {NUMBER} ms$",
    ],
    "s3_write.py": [
        rf"^storage\.commit \(multipart\) +{NUMBER} +{NUMBER}$",
        rf"^raw boto3 put_object +{NUMBER} +{NUMBER}$",
        rf"^ratio ours/raw: {NUMBER}$",
    ],
}
SCRIPTS = sorted((ROOT / "bench").glob("*.py"), key=lambda p: (list(FIGURES) + [p.name]).index(p.name))


def test_every_named_bench_exists():
    """A bench renamed or removed takes its expected figures with it."""
    assert set(FIGURES) <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_bench_smoke(script: Path):
    # As a user's shell: none of this session's Prefect, Ray or build settings. A short
    # temp dir keeps Ray's socket paths (under the benches' state dirs) within 107 bytes.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_", "EDITTHINKER"))}
    tmp = tempfile.mkdtemp(prefix="etdb-", dir="/tmp")
    env.update(PYTHONPATH=str(ROOT), TMPDIR=tmp)
    try:
        done = subprocess.run(
            [sys.executable, str(script), "--smoke"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = done.stdout
    assert done.returncode == 0, f"{script.name} --smoke failed:\n{out[-3000:]}\n{done.stderr[-5000:]}"
    for pattern in FIGURES.get(script.name, [r"\d\.\d"]):
        found = re.search(pattern, out, re.M)
        assert found, f"{script.name} --smoke printed no line matching {pattern!r}:\n{out}"
        for value in map(float, found.groups()):
            assert math.isfinite(value) and value > 0, f"{script.name}: {found.group(0)!r}"
