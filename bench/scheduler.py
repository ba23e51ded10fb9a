"""Editor busy fraction of the build's scheduler on the config's default run settings, beside
a plain per-trajectory loop.

    python bench/scheduler.py [--pairs 10000] [--k 2] [--edit-ms 160] [--ratio 3] [--all-editors]

Simulated devices: the config's first editor gets K actors (--k) that sleep --edit-ms per
batch (a GPU's fixed time per batch of batch_size edits) on top of their
pixel work; the expert and the scorer sleep --ratio times that per batch and serve at most
--cap requests at once (2 actors x cap/2 per batch), as a remote model with a concurrency
cap would. The run settings (max_in_flight, concurrent_partitions, partition_size) are the
config's own: nothing is tuned here. Units run as the flow runs them: one dispatcher actor
for the build, units started as its budget has room (`wants_unit`, the build's admission), each a Ray task that
hands its partition's rollouts over through the remote runner. `--verbose` prints the editors' busy fraction, rollouts in flight and queued for
editors per 5 s, and the scheduler's per-pool report.

The default run is 10,000 pairs (about 8 minutes on 2 cores): a build's start and its drain
(the last rollouts' remaining turns, up to max_turns x (edit + score + refine), about 7 s
here) are fixed costs, about 1.5 points of a 480 s run but 7 of a 95 s one (--pairs 2000);
at the paper's scale a device edits for hours. The busy fraction before the drain is
printed too, and does not depend on the run's length. So is the dispatcher actor's RSS
growth per 1,000 pairs (from a tenth of the pairs to the end): what a 140K-pair build adds
on the head node.

Printed: the editors' busy fraction (their actors' own batch time / (K x wall)) and wall time
/ ideal (ideal = total edit time / K), for the scheduler and for a plain loop (one
trajectory after another, in this process) over the first --loop-pairs pairs. Source images
are the demo scenes at 48 px, so the pixel work stays small beside the simulated latency on
a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from editthinker_data.core import runenv  # noqa: E402

STATE = Path(tempfile.mkdtemp(prefix="etd-bench-"))
runenv.prepare(STATE)

import psutil  # noqa: E402
import ray  # noqa: E402
from PIL import Image  # noqa: E402

from editthinker_data.config import BuildConfig, load_config  # noqa: E402
from editthinker_data.core.schema import SourcePair  # noqa: E402
from editthinker_data.distributed.build import MAX_UNITS  # noqa: E402
from editthinker_data.distributed.load import load_lines  # noqa: E402
from editthinker_data.distributed.remote import RemoteRunner  # noqa: E402
from editthinker_data.distributed.runtime import ensure_ray, shutdown  # noqa: E402
from editthinker_data.distributed.service import service_name, start_service, stop_service  # noqa: E402
from editthinker_data.execution.local_rollouts import local_backends, local_runner  # noqa: E402
from editthinker_data.pipeline.loop import Names, rollout  # noqa: E402
from editthinker_data.pipeline.quotas import partition_size  # noqa: E402
from editthinker_data.stages.generate import GenerateStage  # noqa: E402

SAMPLE_S, WINDOW = 0.25, 20  # the report is sampled every SAMPLE_S; --verbose shows WINDOW-sample means


def simulated(cfg: BuildConfig, args: argparse.Namespace) -> BuildConfig:
    data = cfg.model_dump()
    small = {"num_cpus": 0.05, "num_gpus": 0}
    if not args.all_editors:  # one pool of K devices: the config's split of pairs is not the subject
        data["editors"] = data["editors"][:1]
    for editor in data["editors"]:
        editor.update(
            num_actors=args.k if not args.all_editors else args.k // len(data["editors"]), resources=small
        )
        if args.edit_batch:
            editor["batch_size"] = args.edit_batch
        editor["params"] = {**editor["params"], "latency_s": args.edit_ms / 1000}
    for role in ("expert", "scorer"):
        data[role].update(num_actors=2, batch_size=max(1, args.cap // 2), resources=small)
        data[role]["params"] = {**data[role]["params"], "latency_s": args.ratio * args.edit_ms / 1000}
    return BuildConfig.model_validate(data)


def demo_pairs(cfg: BuildConfig, n: int, size: int = 48) -> list[SourcePair]:
    root = ROOT / "editthinker_data" / "demo" / "source"
    scenes = []
    for line in (root / "manifest.jsonl").read_text().splitlines():
        try:  # the demo keeps a few bad records on purpose
            row = json.loads(line)
            image = Image.open(root / row["image"]).convert("RGB").resize((size, size), Image.NEAREST)
        except (ValueError, OSError, KeyError):
            continue
        scenes.append((row, image))
    editors = [e.name for e in cfg.editors]
    return [
        SourcePair(
            f"p{i}",
            row["instruction"],
            image,
            row.get("task_type") or "other",
            "sha",
            editor=editors[i % len(editors)],
        )
        for i, (row, image) in ((i, scenes[i % len(scenes)]) for i in range(n))
    ]


def run_unit(name: str, part: list[SourcePair], cfg: BuildConfig) -> list[int]:
    """One generate unit as a build runs it: on a Ray worker, handing its rollouts to the
    dispatcher actor through the remote runner."""
    names = Names(cfg.expert.name, cfg.scorer.name)
    turns: list[int] = []
    make = lambda p: rollout(p, names, max_turns=cfg.loop.max_turns, seed=cfg.seed)  # noqa: E731
    RemoteRunner(name)(part, make, lambda i, t: turns.append(len(t.turns)))
    return turns


def run_scheduler(cfg: BuildConfig, pairs: list[SourcePair]) -> dict:
    size = partition_size(len(pairs), cfg)
    partitions = [pairs[i : i + size] for i in range(0, len(pairs), size)]
    name = service_name(cfg)
    service, _ = start_service(cfg, None, name=name)
    dispatcher = psutil.Process(ray.get(service.__ray_call__.remote(lambda self: os.getpid())))
    unit = ray.remote(run_unit).options(num_cpus=GenerateStage.resources.num_cpus)
    turns: list[int] = []
    try:
        samples: list[tuple[float, float]] = []  # (time, editors' busy seconds so far)
        flights: list[tuple[int, int, int]] = []  # in flight, queued for editors, target
        held: list[tuple[int, int]] = []  # (pairs done, the dispatcher actor's RSS) per window
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(SAMPLE_S):
                if len(samples) % WINDOW == 0:
                    done = ray.get(service.progress.remote()).get("pairs_done", 0)
                    held.append((done, dispatcher.memory_info().rss))
                rep = ray.get(service.report.remote())
                busy = sum(v["busy_s"] for k, v in rep["pools"].items() if k.startswith("editor/"))
                samples.append((time.monotonic(), busy))
                queued = sum(n for k, n in rep["queued"].items() if k.startswith("editor/"))
                flights.append((rep["in_flight"], queued, rep["in_flight_target"]))

        threading.Thread(target=sample, daemon=True).start()
        started, t0 = time.perf_counter(), time.monotonic()
        setting = cfg.run.concurrent_partitions
        todo, running = deque(range(len(partitions))), set()
        while todo or running:  # as the executor's loop runs generate units
            if todo and ray.get(service.wants_unit.remote(len(running), setting, MAX_UNITS, size)):
                running.add(unit.remote(name, partitions[todo.popleft()], cfg))
                continue
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.4)
            for ref in ready:
                running.discard(ref)
                turns.extend(ray.get(ref))
        wall = time.perf_counter() - started
        report = ray.get(service.report.remote())
        sampling.set()
        last_admitted = ray.get(service.last_admitted.remote())
        report["tail_s"] = round(time.monotonic() - last_admitted, 2)
        # busy before the tail: up to the last admission (after it, rollouts only drain)
        t_last, busy_last = min(samples, key=lambda s: abs(s[0] - last_admitted))
    finally:
        stop_service(service)
    editors = {k: v for k, v in report["pools"].items() if k.startswith("editor/")}
    k = sum(v["actors"] for v in editors.values())
    edit_s = sum(v["busy_s"] for v in editors.values())
    return {
        "pairs": len(pairs),
        "turns": sum(turns),
        "wall": wall,
        "edit_s": edit_s,
        "k": k,
        "report": report,
        "steady": busy_last / (k * (t_last - t0)),
        "dispatcher": held,
        "flights": [
            tuple(
                round(sum(f[j] for f in flights[i : i + WINDOW]) / len(flights[i : i + WINDOW]))
                for j in range(3)
            )
            for i in range(0, len(flights), WINDOW)
        ],
        "timeline": [
            (round(t - t0, 1), round((b - b0) / (k * (t - t0p)), 3))
            for (t0p, b0), (t, b) in zip(samples[::WINDOW], samples[WINDOW::WINDOW], strict=False)
        ],
    }


class Timed:
    """An editor that adds up the time of its batches (the plain loop's busy time)."""

    def __init__(self, backend):
        self.backend, self.name, self.seconds = backend, backend.name, 0.0

    def run_batch(self, requests):
        started = time.perf_counter()
        try:
            return self.backend.run_batch(requests)
        finally:
            self.seconds += time.perf_counter() - started


def run_loop(cfg: BuildConfig, pairs: list[SourcePair], k: int) -> dict:
    backends = local_backends(cfg)
    timed = {key: Timed(b) for key, b in backends.items() if key[0] == "editor"}
    executor = local_runner(cfg, {**backends, **timed})
    names = Names(cfg.expert.name, cfg.scorer.name)
    turns = []
    started = time.perf_counter()
    executor(pairs, lambda p: rollout(p, names, max_turns=cfg.loop.max_turns, seed=cfg.seed),
             lambda i, t: turns.append(len(t.turns)))  # fmt: skip
    wall = time.perf_counter() - started
    return {"pairs": len(pairs), "turns": sum(turns), "wall": wall, "k": k,
            "edit_s": sum(t.seconds for t in timed.values())}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    ap.add_argument("--pairs", type=int, default=10000)
    ap.add_argument("--loop-pairs", type=int, default=4)
    ap.add_argument("--edit-ms", type=float, default=160.0, help="editor sleep per batch")
    ap.add_argument("--ratio", type=float, default=3.0, help="expert and scorer time per batch / edit time")
    ap.add_argument("--cap", type=int, default=32, help="requests the expert (and the scorer) serve at once")
    ap.add_argument("--edit-batch", type=int, default=0, help="editor batch size (default: the config's)")
    ap.add_argument("--k", type=int, default=2, help="simulated editor devices (actors)")
    ap.add_argument(
        "--all-editors", action="store_true", help="keep every editor pool of the config (K split over them)"
    )
    ap.add_argument("--verbose", action="store_true", help="print the scheduler's per-pool report")
    ap.add_argument("--smoke", action="store_true", help="48 pairs at 20 ms per batch: checks it runs")
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(pairs=48, edit_ms=20.0, loop_pairs=2)
    args = ap.parse_args()

    cfg = simulated(load_config(args.config), args)
    pairs = demo_pairs(cfg, args.pairs)
    ensure_ray(None, os.cpu_count(), STATE)
    try:
        sched = run_scheduler(cfg, pairs)
    finally:
        shutdown()
        shutil.rmtree(STATE, ignore_errors=True)
    loop = run_loop(cfg, pairs[: args.loop_pairs], sched["k"])

    run = cfg.run
    pools = ", ".join(f"{e.name} x{e.num_actors}" for e in cfg.editors)
    print(f"K = {sched['k']} editor actors ({pools}), batch {cfg.editors[0].batch_size}, {args.edit_ms:.0f} ms per batch; "
          f"expert and scorer {args.ratio:g}x that, at most {args.cap} requests each at once; cpus {os.cpu_count()}")  # fmt: skip
    rep = sched["report"]
    print(f"run settings: partition_size {run.partition_size}, concurrent_partitions {run.concurrent_partitions}, "
          f"max_in_flight {run.max_in_flight} -> {rep['in_flight_target']} (peak {rep['peak_in_flight']})")  # fmt: skip
    print(f"{'mode':<12}{'pairs':>7}{'turns':>7}{'wall s':>9}{'edit s':>9}{'busy':>8}{'wall/ideal':>12}")
    for name, r in (("scheduler", sched), ("plain loop", loop)):
        ideal = r["edit_s"] / r["k"]
        print(f"{name:<12}{r['pairs']:>7}{r['turns']:>7}{r['wall']:>9.1f}{r['edit_s']:>9.1f}"
              f"{ideal / r['wall']:>8.1%}{r['wall'] / ideal:>12.2f}")  # fmt: skip
    print(
        f"scheduler before its tail ({rep['tail_s']:.1f}s draining the last rollouts): {sched['steady']:.1%} busy"
    )
    held = [h for h in sched["dispatcher"] if h[0] >= len(pairs) // 10]  # after the start-up
    if len(held) >= 2 and held[-1][0] > held[0][0]:
        (n0, rss0), (n1, rss1) = held[0], held[-1]
        print(f"dispatcher actor RSS: {rss0 / 2**20:.0f} MB at {n0} pairs done, {rss1 / 2**20:.0f} MB at {n1}: "
              f"{(rss1 - rss0) / 2**20 / (n1 - n0) * 1000:+.1f} MB per 1,000 pairs")  # fmt: skip
    for line in load_lines(rep):
        print(line)
    if args.verbose:
        print("editors busy per 5 s (end of window, busy):", sched["timeline"])
        print("mean in flight, queued for editors, in-flight target per 5 s:", sched["flights"])
        print(json.dumps(rep, indent=1))


if __name__ == "__main__":
    main()
