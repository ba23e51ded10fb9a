"""The dispatcher's ceiling: turns per second one dispatcher sustains when its backends answer
at once, and the GPUs that rate keeps busy.

    python bench/dispatch_ceiling.py [--pairs 3000] [--units 8] [--turns 3] [--editors 4]

One dispatcher actor (`service.DispatchService`) as a build starts it, fed by --units generate
units at a time (Ray tasks, each handing its --partition pairs over through the remote runner,
as `bench/scheduler.py` runs them). Its backends are instant stand-ins, swapped in for the
config's procedural ones in every Ray worker (a `worker_process_setup_hook`): the editor
answers with its source image (no pixel work beyond Ray storing it), the scorer with fixed
scores, the expert with "again" appended to the instruction and never satisfied, so every
rollout runs exactly --turns turns (edit, score, refine; the last without a refine). What
remains is the orchestration: the dispatcher's loop, its actor calls and its answers to the
units' polls, the units' feeding and fetching, Ray.

Printed: turns per second, over the run and over its middle (from a tenth to nine tenths of
the turns, without start-up and drain); CPU seconds per turn of the dispatcher process, the
units (their worker processes while they ran), the backend actors, the driver and Ray's own
raylet and GCS (process CPU times, psutil); and the GPUs the middle rate keeps busy at 20 s,
5 s and 1 s per edit (turns/s x seconds per edit: a turn is one edit).

On a shared 2-core machine every process competes for the same cores: the rate is a floor
for what the dispatcher does with a core of its own, its CPU per turn the figure that carries.
"""

from __future__ import annotations

import argparse
import contextlib
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

STATE = Path(tempfile.mkdtemp(prefix="etd-ceil-"))
runenv.prepare(STATE)

import psutil  # noqa: E402
import ray  # noqa: E402
from PIL import Image  # noqa: E402

from editthinker_data.config import BuildConfig, parse_config  # noqa: E402
from editthinker_data.core.schema import Refinement, Scores, SourcePair  # noqa: E402
from editthinker_data.distributed.remote import RemoteRunner  # noqa: E402
from editthinker_data.distributed.runtime import ray_temp_dir  # noqa: E402
from editthinker_data.distributed.service import service_name, start_service, stop_service  # noqa: E402
from editthinker_data.pipeline.loop import Names, rollout  # noqa: E402

SECONDS_PER_EDIT = (20.0, 5.0, 1.0)
TARGET = (2000, 5.0)
MAX_POOL = 1000  # actors in one editor pool (the config's num_actors allows 1,024)  # the mark: 2,000 GPUs at 5 s per edit


class InstantEditor:
    def __init__(self, name: str):
        self.name = name

    def setup(self) -> None:
        pass

    def run_batch(self, requests):
        return [r.image for r in requests]


class InstantScorer(InstantEditor):
    def run_batch(self, requests):
        return [Scores(5.0, 5.0, {}) for _ in requests]


class InstantExpert(InstantEditor):
    def run_batch(self, requests):
        return [Refinement("again", f"{r.previous_instruction} again", False) for r in requests]


class Devices:
    """`devices` simulated devices in one async actor process: each batch takes a free one
    for `latency_s` (no CPU; one batch at a time per device, as `BackendActor` runs them)
    and answers as the instant stand-ins do, with `BackendActor`'s methods. A pool of
    thousands of slots costs a few processes, and the dispatcher still holds one handle per
    slot, as it would for thousands of GPUs. The handles do not say which slot a batch was
    sent to, so a process's batches share its devices: the dispatcher's own limit (two
    batches per slot) keeps at most twice as many here as there are devices."""

    def __init__(self, role: str, name: str, latency_s: float, devices: int):
        import asyncio

        kinds = {"editor": InstantEditor, "expert": InstantExpert, "scorer": InstantScorer}
        self.backend, self.role, self.latency_s = kinds[role](name), role, latency_s
        self.free = asyncio.Semaphore(devices)
        self.spans: list[tuple[float, float]] = []  # each batch's device time (wall clock)

    async def busy(self) -> list[tuple[float, float]]:
        return self.spans

    async def info(self) -> dict:
        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "setups": 1,
                "calls": 0, "counters": {}}  # fmt: skip

    async def run_counted(self, requests):
        import asyncio
        import dataclasses

        started = time.perf_counter()
        if self.role == "editor":  # the source image's reference is fetched, as resolve() does
            images = await asyncio.gather(*[r.image for r in requests])
            requests = [dataclasses.replace(r, image=im) for r, im in zip(requests, images, strict=True)]
        if self.latency_s:
            async with self.free:
                begun = time.time()
                await asyncio.sleep(self.latency_s)
                self.spans.append((begun, time.time()))
        return self.backend.run_batch(requests), {}, time.perf_counter() - started

    async def run_split(self, requests):
        results, cost, seconds = await self.run_counted(requests)
        return (*results, ({}, cost, seconds))


def devices_name(role: str, name: str, k: int) -> str:
    return f"ceiling-{role}-{name}-{k}"


def occupancy(cfg: BuildConfig, start: float, end: float) -> float:
    """Device-seconds the simulated editors spent on batches between `start` and `end`."""
    total = 0.0
    for e in cfg.editors:
        per = e.params.get("slots_per_process")
        for k in range(-(-e.num_actors // per) if per else 0):
            for a, b in ray.get(ray.get_actor(devices_name("editor", e.name, k)).busy.remote()):
                total += max(0.0, min(b, end) - max(a, start))
    return total


def instant_backends() -> None:
    """Every Ray worker's backends are the instant stand-ins (this runs in each worker); a
    pool whose params name `slots_per_process` gets its slots from shared `Devices` actors."""
    from editthinker_data.distributed import pools

    kinds = {"editor": InstantEditor, "expert": InstantExpert, "scorer": InstantScorer}
    pools.create_backend = lambda role, spec, seed=0, context=None: kinds[role](spec.name)
    real, shared = getattr(pools.Pool, "_spawn", None), {}

    def spawn(self, slot):
        per = self.spec.params.get("slots_per_process")
        if not per:
            return real(self, slot)
        key = (self.role, self.name, slot // per)
        if key not in shared:
            shared[key] = (
                ray.remote(Devices)
                .options(num_cpus=0, max_concurrency=4 * per + 16, name=devices_name(*key))
                .remote(
                    self.role,
                    self.name,
                    self.spec.params.get("latency_s", 0.0),
                    min(per, self.spec.num_actors - slot // per * per),  # the last process: the rest
                )
            )
        # a handle of its own per slot, as separate actors have
        return ray.cloudpickle.loads(ray.cloudpickle.dumps(shared[key]))

    if hasattr(pools.Pool, "_spawn"):
        pools.Pool._spawn = spawn
    else:  # the code before `_spawn` (before/after comparisons)
        before = pools.Pool._new_actor

        def new_actor(self, slot):
            if not self.spec.params.get("slots_per_process"):
                return before(self, slot)
            actor = spawn(self, slot)
            self.history.append(pools.ActorRecord(actor, slot))
            return actor

        pools.Pool._new_actor = new_actor


def config(
    editors: list[dict], turns: int, partition: int, in_flight: int | str, units: int, batch: int, others: int
) -> BuildConfig:
    small = {"num_cpus": 0.01}
    return parse_config(
        {
            "source": {"manifest": "unused.jsonl"},
            "editors": [{"name": f"e{i}", "resources": small, **e} for i, e in enumerate(editors)],
            "expert": {"name": "x", "batch_size": batch, "num_actors": others, "resources": small},
            "scorer": {"name": "s", "batch_size": batch, "num_actors": others, "resources": small},
            "loop": {"max_turns": turns},
            "run": {"partition_size": partition, "max_in_flight": in_flight, "concurrent_partitions": units},
        },
        environ={},
    )


def run_unit(name: str, part: list[SourcePair], turns: int) -> tuple[int, float]:
    """One generate unit through the remote runner; its turns and its process's CPU seconds."""
    me = psutil.Process()
    before = sum(me.cpu_times()[:2])
    done = []
    make = lambda p: rollout(p, Names("x", "s"), max_turns=turns, seed=0)  # noqa: E731
    RemoteRunner(name)(part, make, lambda i, t: done.append(len(t.turns)))
    return sum(done), sum(me.cpu_times()[:2]) - before


def cpu(procs: dict[str, list[psutil.Process]]) -> dict[str, float]:
    out = {}
    for what, ps in procs.items():
        total = 0.0
        for p in ps:
            with contextlib.suppress(psutil.Error):  # gone: its time went with it
                total += sum(p.cpu_times()[:2])
        out[what] = total
    return out


def ray_system(temp: Path) -> list[psutil.Process]:
    """This session's raylet and GCS server (found by the temp dir on their command line)."""
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(temp) in cmd and any(n in cmd for n in ("raylet", "gcs_server")):
            found.append(p)
    return found


def measure(cfg: BuildConfig, pairs: list[SourcePair], turns: int, temp: Path) -> dict:
    size = cfg.run.partition_size
    parts = [pairs[i : i + size] for i in range(0, len(pairs), size)]
    name = service_name(cfg)
    service, _ = start_service(cfg, None, name=name)
    try:
        dispatcher = psutil.Process(ray.get(service.__ray_call__.remote(lambda self: os.getpid())))
        backends = [psutil.Process(i["pid"]) for i in ray.get(service.info.remote())]
        procs = {"dispatcher": [dispatcher], "backends": backends, "driver": [psutil.Process()],
                 "ray": ray_system(temp)}  # fmt: skip
        unit = ray.remote(run_unit).options(num_cpus=0)
        ray.get([unit.remote(name, [], turns) for _ in range(cfg.run.concurrent_partitions)])  # workers up
        expected = len(pairs) * turns
        marks: dict[str, tuple] = {}  # mark -> (time, cpu, units' cpu so far, turns)
        units_cpu = [0.0]
        stop = threading.Event()

        def watch() -> None:  # the middle of the run: a tenth to nine tenths of the turns
            while not stop.wait(0.25):
                done = ray.get(service.progress.remote()).get("turns", 0)
                for mark, share in (("lo", 0.1), ("hi", 0.9)):
                    if mark not in marks and done >= share * expected:
                        pools = ray.get(service.report.remote())["pools"]
                        busy = sum(v["busy_s"] for k, v in pools.items() if k.startswith("editor/"))
                        marks[mark] = (time.perf_counter(), cpu(procs), busy, done)

        threading.Thread(target=watch, daemon=True).start()
        c0, t0, w0 = cpu(procs), time.perf_counter(), time.time()
        todo, running, total = deque(parts), set(), 0
        while todo or running:
            while todo and len(running) < cfg.run.concurrent_partitions:
                running.add(unit.remote(name, todo.popleft(), turns))
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in ready:
                running.discard(ref)
                n, seconds = ray.get(ref)
                total += n
                units_cpu[0] += seconds
        wall, c1 = time.perf_counter() - t0, cpu(procs)
        stop.set()
        pools = ray.get(service.report.remote())["pools"]
        busy_s = sum(v["busy_s"] for k, v in pools.items() if k.startswith("editor/"))
        # simulated devices: their busy share over the middle 60% of the run, by the clock
        # (rollouts admitted together finish in waves: counts at turn marks would alias them)
        window = (w0 + 0.2 * wall, w0 + 0.8 * wall)
        occupied = occupancy(cfg, *window)
    finally:
        stop_service(service)
    spent = {k: c1[k] - c0[k] for k in c0}
    spent["units"] = units_cpu[0]
    actors = sum(e.num_actors for e in cfg.editors)
    out = {"turns": total, "wall": wall, "spent": spent, "expected": expected, "middle": total / wall,
           "busy": busy_s / (actors * wall)}  # fmt: skip
    if occupied:
        seconds = cfg.editors[0].params["latency_s"]
        out["fleet_rate"] = occupied / seconds / (window[1] - window[0])
        out["fleet_busy"] = occupied / (actors * (window[1] - window[0]))
    if "lo" in marks and "hi" in marks and marks["hi"][3] > marks["lo"][3]:
        (ta, ca, ba, da), (tb, cb, bb, db) = marks["lo"], marks["hi"]
        out["middle"] = (db - da) / (tb - ta)
        out["busy"] = (bb - ba) / (actors * (tb - ta))
        # units' CPU is known per finished unit: their share over the whole run stands in
        out["middle_spent"] = {k: (cb[k] - ca[k]) / (db - da) for k in ca}
    return out


def run(cfg: BuildConfig, pairs: int, turns: int, size: int) -> dict:
    image = Image.new("RGB", (size, size), (200, 40, 40))
    names = [e.name for e in cfg.editors]
    items = [
        SourcePair(f"p{i}", "Turn it blue.", image, "other", "sha", editor=names[i % len(names)])
        for i in range(pairs)
    ]
    r = measure(cfg, items, turns, ray_temp_dir(STATE))
    assert r["turns"] == r["expected"], f"{r['turns']} turns, expected {r['expected']}"
    return r


def print_ceiling(r: dict) -> None:
    turns, spent = r["turns"], r["spent"]
    rate = turns / r["wall"]
    middle = r["middle"]
    print(f"turns/s: {rate:.1f} over the run ({r['wall']:.1f} s), {middle:.1f} in its middle")
    order = ("dispatcher", "units", "backends", "driver", "ray")
    print("CPU ms per turn: " + ", ".join(f"{k} {spent[k] / turns * 1000:.3f}" for k in order))
    print(f"dispatcher + units: {(spent['dispatcher'] + spent['units']) / turns * 1000:.3f} ms CPU per turn")
    print("GPUs kept busy at the middle rate: "
          + ", ".join(f"{middle * s:.0f} at {s:g} s per edit" for s in SECONDS_PER_EDIT))  # fmt: skip
    gpus, s = TARGET
    need = gpus / s
    alone = 1 / (spent["dispatcher"] / turns)  # turns/s with a core of its own
    print(f"{gpus} GPUs at {s:g} s per edit need {need:.0f} turns/s: measured {middle / need:.2f}x that; "
          f"the dispatcher alone on a core, at its CPU per turn: {alone:.0f} turns/s ({alone / need:.2f}x)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3000)
    ap.add_argument("--turns", type=int, default=3, help="turns of every rollout (loop.max_turns)")
    ap.add_argument("--units", type=int, default=8, help="generate units feeding the dispatcher at once")
    ap.add_argument("--partition", type=int, default=125, help="pairs per unit")
    ap.add_argument("--in-flight", type=int, default=512, help="run.max_in_flight")
    ap.add_argument("--editors", type=int, default=4, help="editor actors")
    ap.add_argument("--edit-batch", type=int, default=4, help="editor batch size")
    ap.add_argument("--batch", type=int, default=16, help="expert and scorer batch size")
    ap.add_argument("--others", type=int, default=2, help="expert and scorer actors each")
    ap.add_argument("--size", type=int, default=8, help="source image side, px")
    ap.add_argument("--gpus", type=int, default=2000, help="simulated editor devices (0: skip that run)")
    ap.add_argument("--edit-s", type=float, default=5.0, help="their seconds per edit (batch of 1)")
    ap.add_argument("--gpu-pairs", type=int, default=12000)
    ap.add_argument("--gpu-turns", type=int, default=2)
    ap.add_argument("--gpu-units", type=int, default=24)
    ap.add_argument("--gpu-partition", type=int, default=250)
    ap.add_argument("--gpu-procs", type=int, default=8, help="processes that hold the simulated devices")
    ap.add_argument("--smoke", action="store_true", help="tiny runs: checks it runs")
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(pairs=96, units=2, partition=48, in_flight=64, editors=1, others=1,
                        gpus=40, edit_s=0.2, gpu_pairs=240, gpu_units=2, gpu_partition=30, gpu_procs=1)  # fmt: skip
    args = ap.parse_args()

    instant = config([{"batch_size": args.edit_batch, "num_actors": args.editors}], args.turns,
                     args.partition, args.in_flight, args.units, args.batch, args.others)  # fmt: skip
    pools = -(-args.gpus // MAX_POOL)  # a pool holds at most MAX_POOL actors: more pools
    devices = config(
        [{"batch_size": 1, "num_actors": n, "resources": {"num_cpus": 0},
          "params": {"slots_per_process": -(-args.gpus // args.gpu_procs), "latency_s": args.edit_s}}
         for n in (args.gpus // pools + (i < args.gpus % pools) for i in range(pools))],
        args.gpu_turns, args.gpu_partition, "auto", args.gpu_units, args.batch, args.others,
    )  # fmt: skip
    temp = ray_temp_dir(STATE)
    temp.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False, _temp_dir=str(temp),
        runtime_env={"worker_process_setup_hook": instant_backends},
    )  # fmt: skip
    try:
        ceiling = run(instant, args.pairs, args.turns, args.size)
        fleet = run(devices, args.gpu_pairs, args.gpu_turns, args.size) if args.gpus else None
    finally:
        ray.shutdown()
        shutil.rmtree(STATE, ignore_errors=True)

    print(f"instant backends: {args.pairs} pairs x {args.turns} turns through one dispatcher, {args.units} units "
          f"of {args.partition} pairs, max_in_flight {args.in_flight}, {args.editors} editor actors (batch "
          f"{args.edit_batch}), expert and scorer {args.others} actors each (batch {args.batch}); cpus {os.cpu_count()}")  # fmt: skip
    print_ceiling(ceiling)
    if fleet is not None:
        need = args.gpus / args.edit_s
        print(f"simulated fleet: {args.gpus} editor devices at {args.edit_s:g} s per edit (batch 1), "
              f"{args.gpu_pairs} pairs x {args.gpu_turns} turns, {args.gpu_units} units of {args.gpu_partition} pairs, "
              "max_in_flight auto")  # fmt: skip
        print(f"fleet: {fleet['fleet_rate']:.1f} turns/s in the middle of {need:.0f} possible; "
              f"editors busy {fleet['fleet_busy']:.1%}; dispatcher "
              f"{fleet['spent']['dispatcher'] / fleet['turns'] * 1000:.3f} ms CPU per turn, units "
              f"{fleet['spent']['units'] / fleet['turns'] * 1000:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
