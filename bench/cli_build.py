"""The real command line, timed from outside: `editthinker-data build` on N synthetic pairs
with the demo's backends (procedural editors, expert and scorer; 64 px scenes), on this
tree and on an older commit, back to back on the same machine.

    python bench/cli_build.py [--pairs 2000] [--ref 55eb5af] [--partition-size auto 12]

Each build is a subprocess in its own output folder. The older commit runs from a git
worktree of this repository with its own `configs/demo.yaml` (its keys as they were then),
given the same manifest and a per-type quota that keeps every pair. Printed per build: wall
time, the build's own stage time, CPU seconds by process kind (driver, Ray unit workers,
backend actors, dispatcher, Prefect server, Ray's daemons: the process tree of the command,
sampled every 0.5 s), the driver's peak RSS, turns, and the ratio of each build's wall time
to the older commit's. Run it on a quiet machine: every process shares the same cores.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from memory import write_source  # noqa: E402

STICKY = ("backend actors", "dispatcher")  # an actor's process stays what it became


def kind_of(proc: psutil.Process, driver: int) -> str:
    if proc.pid == driver:
        return "driver"
    try:
        cmd = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "other"
    if cmd.startswith("ray::"):
        title = cmd.split()[0]
        if "BackendActor" in title:
            return "backend actors"
        if "DispatchService" in title:
            return "dispatcher"
        if any(d in title for d in ("DashboardAgent", "RuntimeEnvAgent")):
            return "ray daemons"
        return "unit workers"  # ray::IDLE, ray::generate-..., ray::write_steps-...: the units' processes
    if "default_worker.py" in cmd:
        return "unit workers"  # a worker starting up, before it takes a title
    if "prefect" in cmd or "uvicorn" in cmd:
        return "prefect server"
    if any(d in cmd for d in ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py")):
        return "ray daemons"
    return "other"


def timed_build(cmd: list[str], cwd: Path, env: dict | None = None) -> dict:
    """Runs the command; CPU seconds per process kind (the last reading of each process in
    its tree) and the driver's peak RSS."""
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    last: dict[int, tuple[str, float]] = {}
    kinds: dict[int, str] = {}
    peak = 0
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in tree:
            try:
                if kinds.get(p.pid) not in STICKY:
                    kinds[p.pid] = kind_of(p, proc.pid)
                t = p.cpu_times()
                last[p.pid] = (kinds[p.pid], t.user + t.system)
                if p.pid == proc.pid:
                    peak = max(peak, p.memory_info().rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        time.sleep(0.5)
    out = proc.stdout.read() if proc.stdout else ""
    wall = time.monotonic() - start
    cpu: collections.Counter[str] = collections.Counter()
    for kind, seconds in last.values():
        cpu[kind] += seconds
    stages = re.search(r"the\s+build's\s+stages\s+([\d.]+)s", out)
    turns = re.search(r"trajectory turns (\d+)", out)
    return {
        "rc": proc.returncode,
        "wall": wall,
        "stages": float(stages.group(1)) if stages else float("nan"),
        "cpu": cpu,
        "driver_rss": peak,
        "turns": int(turns.group(1)) if turns else 0,
        "log": out,
    }


def config_for(demo: Path, manifest: Path, pairs: int, out: Path, partition_size: str | None) -> Path:
    cfg = yaml.safe_load(demo.read_text())
    cfg["source"]["manifest"] = str(manifest)
    cfg["source"]["per_type_quota"] = pairs
    cfg.pop("plan", None)
    cfg["output"]["report"] = False
    if partition_size is not None:
        cfg["run"]["partition_size"] = int(partition_size) if partition_size.isdigit() else partition_size
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--ref", default="55eb5af", help="the older commit, or none")
    ap.add_argument("--partition-size", nargs="+", default=["auto", "12"], help="this tree's builds")
    ap.add_argument("--smoke", action="store_true", help="40 pairs, this tree only, one build")
    args = ap.parse_args()
    if args.smoke:
        args.pairs, args.ref, args.partition_size = 40, "none", ["auto"]
    # Short paths: the older commit's Ray puts its sockets under <output>/_state (107 bytes at most).
    work = Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))
    manifest = write_source(work / "source", args.pairs, 64)
    runs: list[tuple[str, dict]] = []
    try:
        if args.ref != "none":
            tree = work / "ref"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.ref], check=True,
                           capture_output=True)  # fmt: skip
            out = work / "r"
            out.mkdir()
            cfg = config_for(tree / "configs" / "demo.yaml", manifest, args.pairs, out, None)
            env = {**_env(), "PYTHONPATH": str(tree)}
            cmd = [sys.executable, "-m", "editthinker_data.cli", "build", str(cfg), "-o", str(out / "b")]
            runs.append((f"{args.ref} (demo run settings)", timed_build(cmd, tree, env)))
        for size in args.partition_size:
            out = work / f"o{size}"
            out.mkdir()
            cfg = config_for(ROOT / "configs" / "demo.yaml", manifest, args.pairs, out, size)
            env = {**_env(), "PYTHONPATH": str(ROOT)}
            cmd = [sys.executable, "-m", "editthinker_data.cli", "build", str(cfg), "-o", str(out / "b")]
            runs.append((f"this tree, partition_size {size}", timed_build(cmd, ROOT, env)))
    finally:
        if args.ref != "none":
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "ref")], check=False,
                           capture_output=True)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)
    report(args.pairs, runs)


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("EDITTHINKER_LEAN", "RAY_"))}


def report(pairs: int, runs: list[tuple[str, dict]]) -> None:
    for name, r in runs:
        if r["rc"] != 0:
            print(r["log"][-3000:])
            raise SystemExit(f"{name}: exit {r['rc']}")
    kinds = [
        "driver",
        "unit workers",
        "dispatcher",
        "prefect server",
        "backend actors",
        "ray daemons",
        "other",
    ]
    print(f"{pairs} pairs, demo backends, 64 px")
    print(
        f"{'build':42} {'wall s':>7} {'stages s':>8} {'turns':>6} {'driver MB':>9} "
        + " ".join(f"{k[:10]:>10}" for k in kinds)
    )
    for name, r in runs:
        print(f"{name:42} {r['wall']:7.1f} {r['stages']:8.1f} {r['turns']:6d} {r['driver_rss'] / 2**20:9.0f} "
              + " ".join(f"{r['cpu'][k]:10.1f}" for k in kinds))  # fmt: skip
    print("(the last columns: CPU seconds by process kind)")
    base = runs[0][1]["wall"]
    for name, r in runs[1:]:
        print(f"wall {name} / {runs[0][0]}: {r['wall'] / base:.2f}")
    for name, r in runs:
        orch = sum(r["cpu"][k] for k in ("driver", "unit workers", "dispatcher", "prefect server"))
        print(f"orchestration CPU per turn, {name}: {1000 * orch / max(r['turns'], 1):.1f} ms")


if __name__ == "__main__":
    main()
