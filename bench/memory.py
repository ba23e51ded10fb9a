"""Peak memory of the build's driver and of its largest Ray worker at N and 10N pairs, with
source images of 1024^2 pixels, beside the driver at a small image size.

    python bench/memory.py [--pairs 32] [--factor 10] [--size 1024] [--small 128] [--in-flight 8]

Each run is a real build (`flows.build_dataset`, pool -> generate -> ... -> finalize, no
exports or report) in its own process, on a fresh local Ray: the sources are the demo's
procedural scenes drawn at --size (each pair its own layout, so none is a duplicate), the
editors are the demo's procedural editors (real pixel work at that size, plus
--latency-ms per batch as a GPU would take), the expert and scorer the procedural ones.
Printed per run: pairs, turns, the driver's peak RSS (getrusage), the largest Ray worker's
peak memory and what it was (sampled every 0.1 s; the dispatcher actor is shown on its own),
the object store's peak (Ray's memory summary, every 0.5 s) and what the driver received
from its units (their reports) per turn. A worker's memory is its own, RSS less shared
pages, as Ray's memory guide measures a worker's heap ("RSS minus SHR ... object store
shared memory is reported by the OS as shared with each worker"): the object-store pages a
worker has read live once per node, in the store, and are counted there. Its RSS is shown
beside it. Then the ratios 10N / N, which stay near 1 when memory is flat in the number of
pairs, and the driver's peak at --size over --small, which stays near 1 when no image
passes through it.

Every run has the same in-flight budget (--in-flight, run.max_in_flight; default 8) and N
defaults to four times that, so the runs differ only in the number of pairs and the N run
already holds what a long build holds. A rollout keeps its source and every turn image in
the object store until its unit writes it, so the store holds about the budget x (1 + the
turns a rollout in flight has made); a run of twice the budget ends before its rollouts in
flight reach their later turns (at 256 px: 6 MB at 16 pairs, 10 at 160; 8 at 32, 9 at 320),
and every worker that reads images counts the store's pages in its RSS. What the budget
holds (images in the store, batches at the scorer) grows with the budget, which `auto`
sizes from measured latencies and the pools' capacity, never from the number of pairs;
`--in-flight auto` runs the config's own setting (on 2 cores a short run then measures a
smaller budget than a long one, and the ratios show that, not N).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_source(out: Path, n: int, size: int, prefix: str = "", mark: bool = False) -> Path:
    """n pairs: the demo's instructions over scenes drawn at `size`, each in its own layout.
    `mark`: two corner pixels from each id's hash, so that no two are alike (small scenes
    repeat layouts, and the pool drops repeats as duplicates)."""
    import hashlib

    from editthinker_data.backends.procedural.scene import render_scene
    from editthinker_data.core.schema import encode_png
    from editthinker_data.demo.generate import PAIRS, _place

    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        key, background, objects, instruction, task_type = PAIRS[i % len(PAIRS)]
        name = f"{prefix}-{key}-{i}" if prefix else f"{key}-{i}"
        image = render_scene(background, _place(objects, name), size)
        if mark:
            digest = hashlib.sha256(name.encode()).digest()
            image.putpixel((0, 0), tuple(digest[:3]))
            image.putpixel((1, 0), tuple(digest[3:6]))
        (out / "images" / f"{name}.png").write_bytes(encode_png(image))
        record = {"id": name, "image": f"images/{name}.png", "instruction": instruction}
        if task_type:
            record["task_type"] = task_type
        lines.append(json.dumps(record))
    manifest = out / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def sample_workers(peaks: dict[tuple[int, str], tuple[int, int]], stop: threading.Event) -> None:
    """Peak RSS and peak private RSS (RSS less shared pages: the object store's pages a
    worker has read are shared, resident once for the whole node) per process and kind."""
    import psutil

    me = os.getpid()
    while not stop.wait(0.1):
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                cmd = " ".join(proc.info["cmdline"] or [])
                if proc.info["pid"] == me or not cmd.startswith("ray::"):
                    continue
                mem = proc.memory_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            # by what the process is running now (a worker process runs one unit after another)
            kind = _kind(cmd.split()[0])
            if kind:
                old = peaks.get((proc.info["pid"], kind), (0, 0))
                peaks[(proc.info["pid"], kind)] = (max(old[0], mem.rss), max(old[1], mem.rss - mem.shared))


def sample_store(peak: list[int], stop: threading.Event) -> None:
    """Peak bytes held in the object store (every node), from Ray's own memory summary."""
    import re

    import ray
    from ray._private.internal_api import memory_summary

    while not stop.wait(0.5):
        if not ray.is_initialized():
            continue
        try:
            found = re.search(r"Plasma memory usage (\d+) MiB", memory_summary(stats_only=True))
        except Exception:  # Ray starting or stopping
            continue
        if found:
            peak[0] = max(peak[0], int(found.group(1)) * 2**20)


def _kind(title: str) -> str | None:
    for prefix, kind in (("ray::generate-", "generate unit"), ("ray::write_steps-", "write_steps unit"),
                         ("ray::BackendActor", "backend actor"), ("ray::DispatchService", "dispatcher")):  # fmt: skip
        if title.startswith(prefix):
            return kind
    return None


def one(n: int, size: int, latency_ms: float, in_flight: str, work: Path) -> dict:
    """One build in this process; returns its measurements."""
    from editthinker_data.core import runenv

    runenv.prepare(work / "state")
    from editthinker_data.config import load_config
    from flows.build_dataset import build_dataset

    manifest = write_source(work / "source", n, size)
    cfg = load_config(ROOT / "configs" / "demo.yaml").model_dump()
    cfg["source"].update(manifest=str(manifest), per_type_quota=None, near_duplicate_distance=None)
    cfg["output"].update(exports=[], report=False)
    cfg["run"]["max_in_flight"] = in_flight if in_flight == "auto" else int(in_flight)
    for editor in cfg["editors"]:
        editor["params"] = {**editor["params"], "latency_s": latency_ms / 1000}
    peaks: dict[tuple[int, str], tuple[int, int]] = {}
    stop = threading.Event()
    store = [0]
    threading.Thread(target=sample_workers, args=(peaks, stop), daemon=True).start()
    threading.Thread(target=sample_store, args=(store, stop), daemon=True).start()
    started = time.perf_counter()
    result = build_dataset(cfg, str(work / "out"), str(work / "state"))
    wall = time.perf_counter() - started
    stop.set()
    if not hasattr(result, "stats"):  # a Failed state: the flow returns it instead of raising
        raise SystemExit(f"the build did not finish: {result}")
    stats = result.stats
    turns = _turns(work / "out")
    reports = [json.loads(p.read_text()) for p in sorted((work / "out" / "_markers" / "generate").iterdir())]
    received = sum(len(pickle.dumps(r)) for r in reports)
    # a backend actor by its role and name (stats.json's actors carry their pids)
    names = {a["pid"]: f"{a['role']} {a['name']}" for a in stats.get("actors", []) if a.get("pid")}
    largest: dict[str, int] = {}
    private: dict[str, int] = {}
    for (pid, kind), (rss, own) in peaks.items():
        kind = names.get(pid, kind) if kind == "backend actor" else kind
        largest[kind] = max(largest.get(kind, 0), rss)
        private[kind] = max(private.get(kind, 0), own)
    dispatcher = largest.pop("dispatcher", 0)
    private.pop("dispatcher", None)
    what, rss = max(largest.items(), key=lambda kv: kv[1], default=("-", 0))
    own_what, own = max(private.items(), key=lambda kv: kv[1], default=("-", 0))
    return {
        "pairs": stats["stages"]["generate"]["input"],
        "turns": turns,
        "wall_s": round(wall, 1),
        "driver_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_mb": rss / 2**20,
        "worker": what,
        "private_mb": own / 2**20,
        "private_worker": own_what,
        "dispatcher_mb": dispatcher / 2**20,
        "store_mb": store[0] / 2**20,
        "peak_in_flight": stats["scheduler"]["peak_in_flight"],
        "largest_mb": {kind: round(r / 2**20) for kind, r in sorted(largest.items())},
        "private_by_kind_mb": {kind: round(r / 2**20) for kind, r in sorted(private.items())},
        "driver_bytes_per_turn": received / max(turns, 1),
    }


def _turns(out: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_table(p).num_rows for p in (out / "trajectories").glob("part-*.parquet"))


def run(n: int, size: int, latency_ms: float, in_flight: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="etd-mem-") as work:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_", "EDITTHINKER"))}
        done = subprocess.run(
            [sys.executable, __file__, "--one", str(n), "--size", str(size),
             "--latency-ms", str(latency_ms), "--in-flight", in_flight, "--work", work],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
        if done.returncode or not lines:
            raise SystemExit(
                f"run of {n} pairs at {size}px failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            )
        return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--pairs", type=int, default=32, help="N: four times the in-flight budget reaches the steady state"
    )
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--small", type=int, default=128, help="the image size the driver is compared with")
    ap.add_argument(
        "--latency-ms", type=float, default=50.0, help="editor time per batch on top of its pixel work"
    )
    ap.add_argument(
        "--in-flight", default="8", help="run.max_in_flight of every run (a number, or auto: the config's)"
    )
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument(
        "--smoke", action="store_true", help="2 and 4 pairs at 256 px, 2 at 64 px: checks it runs"
    )
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(pairs=2, factor=2, size=256, small=64, latency_ms=0.0, in_flight="2")
    args = ap.parse_args()
    if args.one:
        result = one(args.one, args.size, args.latency_ms, args.in_flight, args.work)
        print("RESULT " + json.dumps(result), flush=True)
        return

    runs = [
        ("N", args.pairs, args.size),
        (f"{args.factor}N", args.pairs * args.factor, args.size),
        ("N small", args.pairs, args.small),
    ]
    results = {}
    print(f"in-flight budget (run.max_in_flight) in every run: {args.in_flight}; editor latency "
          f"{args.latency_ms:g} ms per batch")  # fmt: skip
    print(f"{'run':<9}{'size':>6}{'pairs':>7}{'turns':>7}{'wall s':>8}{'driver MB':>11}{'worker MB':>11}"
          f"{'worker RSS':>12}{'store MB':>10}{'dispatch MB':>13}{'driver B/turn':>15}  largest worker (private; RSS)")  # fmt: skip
    for label, n, size in runs:
        r = results[label] = run(n, size, args.latency_ms, args.in_flight)
        print(f"{label:<9}{size:>6}{r['pairs']:>7}{r['turns']:>7}{r['wall_s']:>8}{r['driver_mb']:>11.0f}"
              f"{r['private_mb']:>11.0f}{r['worker_mb']:>12.0f}{r['store_mb']:>10.0f}{r['dispatcher_mb']:>13.0f}"
              f"{r['driver_bytes_per_turn']:>15.0f}  {r['private_worker']}; {r['worker']}")  # fmt: skip
    for label, r in results.items():
        print(f"{label}: peak RSS MB by worker: {r['largest_mb']}")
        print(f"{label}: peak private RSS MB (less shared object-store pages): {r['private_by_kind_mb']}")
    big, base, small = results[f"{args.factor}N"], results["N"], results["N small"]
    for kind in sorted(set(big["largest_mb"]) & set(base["largest_mb"])):
        print(
            f"  {kind}: {args.factor}N / N {big['largest_mb'][kind] / max(base['largest_mb'][kind], 1):.2f}"
            f" (private {big['private_by_kind_mb'][kind] / max(base['private_by_kind_mb'][kind], 1):.2f})"
        )
    print(f"{args.factor}N / N at {args.size}px: driver {big['driver_mb'] / base['driver_mb']:.2f}, "
          f"largest worker {big['private_mb'] / base['private_mb']:.2f} (its own memory; "
          f"RSS with the object-store pages it read {big['worker_mb'] / base['worker_mb']:.2f}), "
          f"object store {big['store_mb'] / max(base['store_mb'], 1):.2f}, "
          f"dispatcher {big['dispatcher_mb'] / base['dispatcher_mb']:.2f}")  # fmt: skip
    print(f"driver at {args.size}px / at {args.small}px (N pairs): {base['driver_mb'] / small['driver_mb']:.2f}; "
          f"dispatcher {base['dispatcher_mb'] / small['dispatcher_mb']:.2f}")  # fmt: skip
    print(f"object store peak per rollout in flight (peak {base['peak_in_flight']} and {big['peak_in_flight']}): "
          f"{base['store_mb'] / base['peak_in_flight']:.1f} and {big['store_mb'] / big['peak_in_flight']:.1f} MB")  # fmt: skip
    uncompressed = 3 * args.size * args.size
    print(
        f"one {args.size}^2 RGB image is {uncompressed / 2**20:.1f} MiB; the driver received "
        f"{base['driver_bytes_per_turn']:.0f} bytes per turn (unit reports only)"
    )


if __name__ == "__main__":
    main()
