"""What the build's metrics cost the dispatcher, its hot thread: the share of that thread's
CPU time that the metrics calls take, and its CPU per batch with the metrics on and off.

    python bench/metrics_overhead.py [--pairs 400] [--rounds 3]

Procedural backends with no latency, so the dispatcher's own work is what the runs measure:
the hot case. Each "on" run writes down its metrics calls; they are replayed in a row and
timed on the thread's CPU clock, against the "off" run's dispatcher CPU just before (the
on/off difference of whole runs is noisier on a shared machine). "off" swaps the build's
`BuildMetrics` for one whose methods do nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.support

import ray  # noqa: E402

from editthinker_data.distributed.pools import Workers  # noqa: E402
from editthinker_data.distributed.scheduler import Dispatcher  # noqa: E402
from editthinker_data.pipeline.loop import Names, rollout  # noqa: E402
from tests.support.scheduler_helpers import config, pairs  # noqa: E402


class Off:
    def __getattr__(self, name):
        return (lambda *a, **k: False) if name == "due" else (lambda *a, **k: None)


class Recorded:
    """The build's metrics, each call also written down, to be replayed and timed alone."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return method(*args, **kwargs)

        return record


def replay_s(calls: list, metrics) -> float:
    """CPU seconds the same calls take, in a row, on this thread."""
    started = time.thread_time()
    for name, args, kwargs in calls:
        getattr(metrics, name)(*args, **kwargs)
    return time.thread_time() - started


def thread_cpu_s(tid: int) -> float:
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def one_run(workers: Workers, metrics) -> tuple[float, int]:
    workers.metrics = metrics
    for pool in workers.pools.values():
        pool.metrics = metrics
    names = Names("x", "s")
    with Dispatcher(workers, max_in_flight=64, retries=0) as d:
        counters = d.run(pairs_for_run, lambda p: rollout(p, names, max_turns=3, seed=0), lambda i, t: None)
        cpu = thread_cpu_s(d._thread.native_id)
    return cpu, counters["batches"]


def main() -> None:
    global pairs_for_run
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="24 pairs, one round: the real path in seconds")
    args = ap.parse_args()
    if args.smoke:
        args.pairs, args.rounds = 24, 1
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp = tempfile.mkdtemp(prefix="etd-mo-")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    workers = Workers(config(0.0))
    workers.start()
    metrics = workers.metrics
    per_batch: dict[str, list[float]] = {"off": [], "on": []}
    shares = []
    try:
        pairs_for_run = pairs(args.pairs)
        for _ in range(args.rounds):
            cpu, batches = one_run(workers, Off())
            per_batch["off"].append(cpu / batches * 1e6)
            off_cpu = cpu
            recorded = Recorded(metrics)
            cpu, batches = one_run(workers, recorded)
            per_batch["on"].append(cpu / batches * 1e6)
            spent = replay_s(recorded.calls, metrics)
            shares.append(spent / off_cpu)
            print(
                f"off {per_batch['off'][-1]:.0f} us/batch, on {per_batch['on'][-1]:.0f} us/batch; "
                f"the on run's {len(recorded.calls) / batches:.1f} metrics calls per batch replayed: "
                f"{spent * 1e6 / batches:.1f} us per batch, {shares[-1]:.1%} of the off run's CPU",
                flush=True,
            )
    finally:
        workers.stop()
        ray.shutdown()
    off, on = min(per_batch["off"]), min(per_batch["on"])
    print(
        f"best of {args.rounds}: {off:.0f} us per batch off, {on:.0f} on ({on / off - 1:+.1%}); "
        f"metrics calls {min(shares):.1%}-{max(shares):.1%} of the dispatcher thread's CPU"
    )


pairs_for_run: list = []

if __name__ == "__main__":
    main()
