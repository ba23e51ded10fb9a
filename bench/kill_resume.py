"""Kill a demo build with SIGKILL at a random moment, run it again, and compare its
manifest (every shard's name and sha256) with an uninterrupted build's. Prints how many of
N runs matched.

    python bench/kill_resume.py [--runs 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "editthinker_data.cli", "build", "configs/demo.yaml", "-o", str(out)]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def shards(out: Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    return {k: [(s["url"], s["sha256"]) for s in v] for k, v in manifest["shards"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--max-delay",
        type=float,
        default=30.0,
        help="latest kill moment, seconds after start (0: the reference build's own time)",
    )
    ap.add_argument(
        "--max-pairs", type=int, default=None, help="build at most this many pairs (source.max_pairs)"
    )
    ap.add_argument(
        "--smoke", action="store_true", help="one run of 4 pairs, no exports or report: checks it runs"
    )
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(runs=1, max_pairs=4, max_delay=0.0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    env = {**os.environ, "EDITTHINKER__RUN__JOURNAL_EVERY": "2"}
    if args.max_pairs:
        env["EDITTHINKER__SOURCE__MAX_PAIRS"] = str(args.max_pairs)
    if args.smoke:  # they come after the shards, which are what is compared
        env.update(EDITTHINKER__OUTPUT__REPORT="false", EDITTHINKER__OUTPUT__EXPORTS="[]")
    work = Path(tempfile.mkdtemp(prefix="etd-kill-"))
    try:
        ref = work / "reference"
        started = time.perf_counter()
        done = build(ref, env)
        assert done.returncode == 0, f"reference build failed:\n{done.stderr[-4000:]}"
        max_delay = args.max_delay or time.perf_counter() - started
        expected = shards(ref)
        matched = 0
        for i in range(args.runs):
            out = work / f"run{i}"
            delay = rng.uniform(2.0, max_delay)
            argv = [
                sys.executable,
                "-m",
                "editthinker_data.cli",
                "build",
                "configs/demo.yaml",
                "-o",
                str(out),
            ]
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            time.sleep(delay)
            finished_first = proc.poll() is not None
            if not finished_first:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            done = build(out, env)
            ok = done.returncode == 0 and shards(out) == expected
            matched += ok
            stage = "finished before the kill" if finished_first else f"killed at {delay:.1f}s"
            print(f"run {i + 1}: {stage}; resumed build {'matches' if ok else 'DIFFERS'}", flush=True)
            shutil.rmtree(out, ignore_errors=True)
        print(f"matched {matched} of {args.runs}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
