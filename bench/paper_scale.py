"""A build in the paper's proportions, simulated, through the real CLI: what the orchestration
costs per turn, and how close the build comes to its devices' time.

    python bench/paper_scale.py [--pairs 2000 --pairs 20000] [--time-scale 2000]
                                [--partition-size N] [--json F] [--baseline F] [--smoke]

The full run (issue 24, item 4) is `--pairs 140000 --time-scale 100`: at the default time
scale the devices' whole work (about 306 s) is far less than the CPU time the run needs on
2 cores, so wall / ideal would measure the CPU, not the orchestration (docs/benchmarks.md).

Each run is `editthinker-data build CONFIG --output OUT --state-dir STATE` in a subprocess,
the whole path (pool -> generate -> select -> write_steps -> finalize -> release), on its own
local Ray and ephemeral Prefect. The config is configs/paper-140k.yaml's shape:

- three editor pools of `simulated` editors (no pixel work: each device sleeps its batch's
  time and returns the source faintly tinted, the same on every run) at the planner's seconds
  per edit, FLUX.1 Kontext 20 s on 5 devices, Qwen-Image-Edit 110 s on 27, OmniGen2 35 s on
  8, every time divided by --time-scale;
- a remote expert (4 s a request) and a VIEScore scorer (3 s a request, two a score), kind
  `openai`, each on its own local OpenAI-compatible test server with that latency (scaled)
  and a hosted API's concurrency cap (--api-cap; a request beyond it gets 429 with
  Retry-After, or waits with --over-cap wait). The servers answer in the released formats
  without model work: the expert asks for another turn until the instruction was refined
  --turns - 1 times, so every trajectory runs --turns turns;
- 64 px sources (the demo's drawn scenes, each pair its own layout) in three inputs named
  as the paper's sources, in their proportions 60 / 40 / 40; output.shard_max_samples 1000.

Printed per run:
- wall / ideal: ideal is the slowest pool's edit seconds (the edits the build made, from its
  trajectories, at the scaled time) over its devices;
- every pool's busy fraction, as the scheduler measured it (stats.json: busy over the time
  rollouts were in flight) and over the whole wall time;
- orchestration CPU per turn: the CLI process tree is sampled every 0.5 s (psutil) and each
  process's CPU since the last sample is charged to what its title says it is then: the
  driver (the CLI process), the dispatcher (`ray::DispatchService`), the unit processes
  (Ray workers running `generate-*`, `write_steps-*` and the other units, or idle between
  them), Prefect's server, and Ray's own daemons; the backend actors (the simulated devices
  and the expert's and scorer's clients) and the test servers are left out;
- peak RSS of the driver and the dispatcher, and the object store's peak (Ray's memory
  summary, every 0.5 s);
- Prefect task runs (its database in the state folder) and Ray tasks (the units, by their
  done-markers);
- the files written, and the step shards' sizes (min / median / max samples per shard,
  from the WIDS indexes) against shard_max_samples.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from memory import write_source  # noqa: E402

from tests.support.openai_server import ChatServerProcess  # noqa: E402

# configs/paper-140k.yaml: pools (name, the planner's seconds per edit, devices), sources.
POOLS = (("flux-kontext", 20.0, 5), ("qwen-image-edit", 110.0, 27), ("omnigen2", 35.0, 8))
SOURCES = (("pico", 60), ("opengpt", 40), ("sharegpt", 40))
EXPERT_S, SCORER_S = 4.0, 3.0
ROLE_ACTORS, ROLE_BATCH, ROLE_CAP = 4, 16, 64
SAMPLE_S = 0.5
SHARD_MAX = 1000  # output.shard_max_samples


def split_pairs(n: int) -> dict[str, int]:
    """n pairs over the sources by ratio, the remainders to the largest fractions."""
    total = sum(r for _, r in SOURCES)
    exact = {name: n * r / total for name, r in SOURCES}
    out = {name: math.floor(v) for name, v in exact.items()}
    for name in sorted(exact, key=lambda k: out[k] - exact[k])[: n - sum(out.values())]:
        out[name] += 1
    return out


def make_config(work: Path, n: int, args, expert_url: str, scorer_url: str) -> Path:
    import yaml

    inputs = []
    for name, count in split_pairs(n).items():
        # a few spare records: the pool takes each input's share of max_pairs
        manifest = write_source(work / "src" / name, count + 2, args.size, prefix=name, mark=True)
        inputs.append({"name": name, "format": "jsonl", "path": str(manifest), "ratio": dict(SOURCES)[name],
                       "licence": "Apache-2.0"})  # fmt: skip
    divisor = args.device_divisor
    editors = [
        {"name": name, "kind": "simulated", "params": {"edit_seconds": seconds / args.time_scale},
         "resources": {"num_cpus": 0.01}, "num_actors": max(1, math.ceil(devices / divisor))}
        for name, seconds, devices in POOLS
    ]  # fmt: skip

    def role(name: str, url: str, params: dict) -> dict:
        return {"name": name, "kind": "openai", "base_url": url, "model": "gpt-4.1",
                "price": {"input_per_mtok": 2.0, "output_per_mtok": 8.0}, "max_concurrency": ROLE_CAP,
                "batch_size": ROLE_BATCH, "num_actors": ROLE_ACTORS, "resources": {"num_cpus": 0.01},
                "params": params}  # fmt: skip

    cfg = {
        "name": f"paper-scale-{n}",
        "seed": 0,
        "source": {"max_pairs": n, "inputs": inputs, "near_duplicate_distance": None},
        "editors": editors,
        "expert": role("gpt41-expert", expert_url, {}),
        "scorer": role("gpt41-scorer", scorer_url, {"protocol": "viescore"}),
        "loop": {"max_turns": 5},
        "output": {"dir": str(work / "out"), "license": "other", "shard_max_samples": SHARD_MAX},
        "run": {} if args.partition_size is None else {"partition_size": args.partition_size},
    }
    path = work / "paper-scale.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def classify(pid: int, root: int, title: str) -> str | None:
    """What a process is, by its title now; None: a worker not yet titled (charged later)."""
    if pid == root:
        return "driver"
    if title.startswith("ray::DispatchService"):
        return "dispatcher"
    if title.startswith("ray::BackendActor"):
        return "backend actors"
    if title.startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent")):
        return "ray daemons"
    if title.startswith("ray::"):
        return "units"
    if "default_worker.py" in title:
        return None
    if "prefect" in title and ("server" in title or "uvicorn" in title):
        return "prefect server"
    if any(k in title for k in ("gcs_server", "raylet", "log_monitor", "dashboard", "monitor.py", "ray/")):
        return "ray daemons"
    return "other"


class Sampler:
    """CPU seconds by kind of process, peak RSS of the driver and the dispatcher, and the
    object store's peak, for the CLI's process tree."""

    def __init__(self, root_pid: int, state: Path):
        self.root, self.state = root_pid, state
        self.cpu: dict[str, float] = defaultdict(float)
        self.last: dict[int, float] = {}
        self.rss = {"driver": 0, "dispatcher": 0}
        self.store = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._procs, self._store)]
        for t in self.threads:
            t.start()

    def _procs(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.root)
        except psutil.NoSuchProcess:
            return
        while True:
            stopping = self.stop.is_set()
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for p in procs:
                try:
                    title = " ".join(p.cmdline())
                    times = p.cpu_times()
                    rss = p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                kind = classify(p.pid, self.root, title)
                if kind is None:
                    continue
                total = times.user + times.system
                self.cpu[kind] += total - self.last.get(p.pid, 0.0)
                self.last[p.pid] = total
                if kind in self.rss:
                    self.rss[kind] = max(self.rss[kind], rss)
            if stopping:
                return
            self.stop.wait(SAMPLE_S)  # set: one more sample, the last CPU times

    def _store(self) -> None:
        address = None
        while not self.stop.wait(SAMPLE_S):
            if not self.rss["dispatcher"]:  # Ray is up once the dispatcher is: no polls before
                continue
            try:
                if address is None:
                    address = self._gcs_address()
                    if address is None:
                        continue
                from ray._private.internal_api import memory_summary

                found = re.search(r"Plasma memory usage (\d+) MiB", memory_summary(address, stats_only=True))
            except Exception:  # Ray starting or stopping
                continue
            if found:
                self.store = max(self.store, int(found.group(1)) * 2**20)

    def _gcs_address(self) -> str | None:
        ports = glob.glob(str(self.state / "**" / "session_latest" / "gcs_server_port_*"), recursive=True)
        ports += glob.glob("/tmp/etd-ray-*/session_latest/gcs_server_port_*")
        import psutil

        try:
            tree = psutil.Process(self.root).children(recursive=True)
        except psutil.NoSuchProcess:
            return None
        for p in tree:
            try:
                cmd = p.cmdline()
            except psutil.Error:
                continue
            if cmd and cmd[0].endswith("gcs_server"):
                log_dir = next((a.split("=", 1)[1] for a in cmd if a.startswith("--log_dir=")), "")
                ip = next(
                    (a.split("=", 1)[1] for a in cmd if a.startswith("--node-ip-address=")), "127.0.0.1"
                )
                session = Path(log_dir).parent
                port = next(iter(session.glob("gcs_server_port_*")), None)
                if port is None:
                    port = next(
                        (Path(f) for f in ports if Path(f).parent.resolve() == session.resolve()), None
                    )
                if port is not None and port.read_text().strip():
                    return f"{ip}:{port.read_text().strip()}"
        return None

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)


def prefect_task_runs(state: Path) -> int | None:
    dbs = sorted(state.glob("prefect/**/*.db"), key=lambda p: p.stat().st_size, reverse=True)
    for db in dbs:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                return int(con.execute("select count(*) from task_run").fetchone()[0])
        except sqlite3.Error:
            continue
    return None


def stage_seconds(state: Path) -> dict[str, float]:
    """Each stage's span, first unit's start to last unit's end, from Prefect's task runs."""
    from datetime import datetime

    spans: dict[str, list[datetime]] = {}
    for db in sorted(state.glob("prefect/**/*.db"), key=lambda p: p.stat().st_size, reverse=True)[:1]:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            rows = con.execute("select name, start_time, end_time from task_run where end_time is not null")
            for name, start, end in rows:
                stage = name.split("-", 1)[0]
                lo, hi = datetime.fromisoformat(start), datetime.fromisoformat(end)
                span = spans.setdefault(stage, [lo, hi])
                span[0], span[1] = min(span[0], lo), max(span[1], hi)
    return {k: (hi - lo).total_seconds() for k, (lo, hi) in sorted(spans.items(), key=lambda kv: kv[1][0])}


def ray_temp(state: Path) -> Path:
    """Where the build's Ray keeps its session (distributed.runtime.ray_temp_dir)."""
    from editthinker_data.distributed.runtime import ray_temp_dir

    return ray_temp_dir(state)


def ray_tasks(state: Path) -> dict[str, int]:
    """Ray tasks by stage: every task a worker ran is a `:task_name:` line in its log."""
    counts: dict[str, int] = defaultdict(int)
    for log in ray_temp(state).glob("session_2*/logs/worker-*.out"):  # not session_latest, a link
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(":task_name:"):
                counts[line.removeprefix(":task_name:").split("-", 1)[0]] += 1
    return dict(sorted(counts.items()))


def edits_by_editor(out: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    counts: dict[str, int] = defaultdict(int)
    for part in sorted((out / "trajectories").glob("*.parquet")):
        for name in pq.read_table(part, columns=["editor"]).column("editor").to_pylist():
            counts[name] += 1
    return dict(counts)


def files_by_folder(out: Path) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for p in out.rglob("*"):
        if p.is_file():
            rel = p.relative_to(out).parts
            counts[rel[0] if len(rel) > 1 else "."] += 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def shard_sizes(out: Path) -> dict[str, list[int]]:
    sizes = {}
    for index in sorted(out.glob("*.wids.json")):
        split = index.name.removesuffix(".wids.json")
        sizes[split] = [int(s["nsamples"]) for s in json.loads(index.read_text()).get("shardlist", [])]
    return sizes


def run(n: int, args) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_", "EDITTHINKER"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    server = {"canned": True, "canned_turns": args.turns, "max_concurrency": args.api_cap,
              "over_capacity": args.over_cap, "keep_bodies": False}  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="etd-paper-"))
    with (
        ChatServerProcess(latency_s=EXPERT_S / args.time_scale, **server) as expert,
        ChatServerProcess(latency_s=SCORER_S / args.time_scale, **server) as scorer,
    ):
        config = make_config(work, n, args, expert.base_url, scorer.base_url)
        out, state = work / "out", work / "state"
        with open(work / "build.log", "w") as log:
            started = time.perf_counter()
            cli = subprocess.Popen(
                [sys.executable, "-m", "editthinker_data.cli", "build", str(config), "--output", str(out),
                 "--state-dir", str(state)],
                env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            sampler = Sampler(cli.pid, state)
            code = cli.wait()
            wall = time.perf_counter() - started
            sampler.close()
    if code:
        tail = (work / "build.log").read_text()[-4000:]
        raise SystemExit(f"the build of {n} pairs failed (exit {code}); work in {work}:\n{tail}")
    stats = json.loads((out / "stats.json").read_text())
    edits = edits_by_editor(out)
    seconds = {name: s / args.time_scale for name, s, _ in POOLS}
    devices = {
        e["name"]: e["num_actors"] for e in __import__("yaml").safe_load(config.read_text())["editors"]
    }
    pool_time = {name: edits.get(name, 0) * seconds[name] / devices[name] for name in seconds}
    files = sum(1 for p in out.rglob("*") if p.is_file())
    result = {
        "pairs": stats["stages"]["generate"]["input"],
        "turns": sum(edits.values()),
        "edits": edits,
        "wall_s": wall,
        "ideal_s": max(pool_time.values()),
        "pool_time_s": pool_time,
        "devices": devices,
        "scheduler": stats.get("scheduler") or {},
        "cpu": dict(sampler.cpu),
        "rss": sampler.rss,
        "store": sampler.store,
        "task_runs": prefect_task_runs(state),
        "units": ray_tasks(state),
        "files": files,
        "files_by_folder": files_by_folder(out),
        "shards": shard_sizes(out),
        "api": {"expert": expert.counters, "scorer": scorer.counters},
        "stage_s": stage_seconds(state),
        "work": str(work),
    }
    if not args.keep:
        shutil.rmtree(ray_temp(state), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return result


def report(r: dict, args, baseline: dict | None = None) -> None:
    turns = max(r["turns"], 1)
    print(f"\n== {r['pairs']} pairs, {r['turns']} turns (edits), time scale {args.time_scale:g} ==")
    print(
        f"wall {r['wall_s']:.1f} s, ideal {r['ideal_s']:.2f} s: wall / ideal {r['wall_s'] / r['ideal_s']:.1f}"
    )
    pools = r["scheduler"].get("pools", {})
    print(f"{'pool':<28}{'devices':>8}{'edits':>8}{'device s':>10}{'busy (active)':>15}{'busy (wall)':>13}")
    for name, _, _ in POOLS:
        p = pools.get(f"editor/{name}", {})
        wall_busy = p.get("busy_s", 0.0) / (r["devices"][name] * r["wall_s"])
        print(f"editor/{name:<21}{r['devices'][name]:>8}{r['edits'].get(name, 0):>8}{r['pool_time_s'][name]:>10.2f}"
              f"{p.get('busy', 0.0):>14.1%}{wall_busy:>12.1%}")  # fmt: skip
    for key in sorted(k for k in pools if not k.startswith("editor/")):
        p = pools[key]
        print(f"{key:<28}{p.get('actors', 0):>8}{p.get('requests', 0):>8}{'':>10}{p.get('busy', 0.0):>14.1%}"
              f"{p.get('busy_s', 0.0) / (p.get('actors', 1) * r['wall_s']):>12.1%}")  # fmt: skip
    cpu = r["cpu"]
    orchestration = ("driver", "dispatcher", "units", "prefect server")
    parts = "  ".join(f"{k} {cpu.get(k, 0.0) * 1000 / turns:.2f}" for k in orchestration)
    total = sum(cpu.get(k, 0.0) for k in orchestration)
    print(f"orchestration CPU ms per turn: {parts}  total {total * 1000 / turns:.2f}")
    print(
        f"orchestration CPU s: {total:.1f}; beside it (left out): Ray's daemons {cpu.get('ray daemons', 0.0):.1f}, "
        f"backend actors {cpu.get('backend actors', 0.0):.1f}, other {cpu.get('other', 0.0):.1f}"
    )
    print(f"peak RSS MB: driver {r['rss']['driver'] / 2**20:.0f}  dispatcher {r['rss']['dispatcher'] / 2**20:.0f}"
          f"  object store peak MB {r['store'] / 2**20:.0f}")  # fmt: skip
    units = ", ".join(f"{k} {v}" for k, v in r["units"].items())
    print(f"Prefect task runs {r['task_runs']}; Ray tasks (units) {sum(r['units'].values())}: {units}")
    shards = [n for sizes in r["shards"].values() for n in sizes]
    steps = {k: v for k, v in r["shards"].items() if k != "trajectories"}
    step_sizes = [n for sizes in steps.values() for n in sizes] or [0]
    folders = ", ".join(f"{k} {v}" for k, v in list(r["files_by_folder"].items())[:6])
    print(f"files written {r['files']} ({folders}); step shards {len(step_sizes)} (of {len(shards)} shards), samples per "
          f"shard min {min(step_sizes)} median {statistics.median(step_sizes):g} max {max(step_sizes)} "
          f"against shard_max_samples 1000")  # fmt: skip
    api = r["api"]
    print(f"API: expert {api['expert']}, scorer {api['scorer']}")
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in r.get("stage_s", {}).items())
    if stages:
        print(f"stage spans (Prefect task runs, first start to last end): {stages}")
    checks(r, step_sizes, baseline)


def checks(r: dict, step_sizes: list[int], baseline: dict | None) -> None:
    """Issue 24's bar for the full run, each figure beside its bound: wall / ideal at most
    1.10, the slowest pool (most device seconds per device) at least 95% busy while rollouts
    are in flight, the median step shard at least half of shard_max_samples, and, given a
    baseline run (--baseline, a smaller run's --json), peak RSS within 1.2x of it."""
    slowest = max(r["pool_time_s"], key=r["pool_time_s"].get)
    busy = r["scheduler"].get("pools", {}).get(f"editor/{slowest}", {}).get("busy", 0.0)
    rows = [
        ("wall / ideal", f"{r['wall_s'] / r['ideal_s']:.3f}", "<= 1.10", r["wall_s"] / r["ideal_s"] <= 1.10),
        (f"slowest pool ({slowest}) busy", f"{busy:.1%}", ">= 95%", busy >= 0.95),
        ("median step shard", f"{statistics.median(step_sizes):g}", f">= {SHARD_MAX // 2}",
         statistics.median(step_sizes) >= SHARD_MAX / 2),
    ]  # fmt: skip
    if baseline:
        for who in ("driver", "dispatcher"):
            ratio = r["rss"][who] / max(baseline["rss"][who], 1)
            name = f"{who} peak RSS / {baseline['pairs']}-pair run's"
            rows.append((name, f"{ratio:.2f}", "<= 1.20", ratio <= 1.2))
    for name, value, bound, ok in rows:
        print(f"check: {name:<44}{value:>9}  {bound:<9}{'ok' if ok else 'MISSED'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--pairs", type=int, action="append", help="pairs per run (repeat; default 2000 and 20000)"
    )
    ap.add_argument(
        "--time-scale", type=float, default=2000.0, help="every edit and request time is divided by it"
    )
    ap.add_argument("--partition-size", type=int, help="run.partition_size (default: the config's default)")
    ap.add_argument("--turns", type=int, default=3, help="turns every trajectory runs (the plan's 3.0)")
    ap.add_argument("--size", type=int, default=64, help="source image side, px")
    ap.add_argument("--api-cap", type=int, default=ROLE_CAP, help="requests each test API serves at once")
    ap.add_argument("--over-cap", choices=("429", "wait"), default="429")
    ap.add_argument("--json", help="write each run's figures here (a list when several sizes run)")
    ap.add_argument("--baseline", help="a smaller run's --json: check peak RSS within 1.2x of it")
    ap.add_argument("--keep", action="store_true", help="keep each run's folder (printed) and Ray's session")
    ap.add_argument("--device-divisor", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument(
        "--smoke", action="store_true", help="60 pairs, time scale 20000, devices / 9: checks it runs"
    )
    args = ap.parse_args()
    os.environ["RAY_BACKEND_LOG_LEVEL"] = "fatal"  # this process's store polls, not the build's
    if args.smoke:
        args.pairs, args.time_scale, args.device_divisor = args.pairs or [60], 20000.0, 9
    sizes = args.pairs or [2000, 20000]
    print(f"paper scale: pools {', '.join(f'{n} {s:g} s x {d}' for n, s, d in POOLS)} (/ {args.device_divisor} "
          f"devices), expert {EXPERT_S:g} s, scorer {SCORER_S:g} s x 2, time scale {args.time_scale:g}, "
          f"{args.turns} turns, {args.size} px, partition_size {args.partition_size or 'default'}")  # fmt: skip
    baseline = json.loads(Path(args.baseline).read_text()) if args.baseline else None
    results = []
    for n in sizes:
        results.append(run(n, args))
        report(results[-1], args, baseline)
        if args.json:
            Path(args.json).write_text(json.dumps(results if len(results) > 1 else results[0], indent=1))


if __name__ == "__main__":
    main()
