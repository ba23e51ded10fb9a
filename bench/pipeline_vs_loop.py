"""Trajectories per second: the Ray actor pools + scheduler vs. a plain in-process loop,
over the same pooled demo pairs and the same backends, printed side by side as a ratio.

    python bench/pipeline_vs_loop.py [--latency 0.1] [--repeat 3] [--in-flight 32]

--latency gives the expert a fixed answer time per call (a remote MLLM stand-in): the plain
loop pays it once per critique, the scheduler overlaps it across trajectories in flight.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from editthinker_data.core import runenv  # noqa: E402
from editthinker_data.core.layout import POOL_UNIT, part_name  # noqa: E402
from editthinker_data.execution.base import LocalExecutor  # noqa: E402
from editthinker_data.stages.generate import GenerateStage  # noqa: E402
from editthinker_data.stages.pool import PoolStage  # noqa: E402

STATE = Path(tempfile.mkdtemp(prefix="etd-bench-"))
runenv.prepare(STATE)

from editthinker_data.config import load_config  # noqa: E402
from editthinker_data.distributed.pools import Workers  # noqa: E402
from editthinker_data.distributed.runtime import ensure_ray, shutdown  # noqa: E402
from editthinker_data.distributed.scheduler import Dispatcher  # noqa: E402
from editthinker_data.execution.local_rollouts import local_runner  # noqa: E402
from editthinker_data.io.storage import LocalStorage  # noqa: E402


def timed_generate(cfg, executor, repeat: int) -> tuple[float, int]:
    best, pairs = float("inf"), 0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="etd-bench-out-") as out:
            storage = LocalStorage(out)
            report = LocalExecutor().run_one(PoolStage(cfg), storage, POOL_UNIT)
            started = time.perf_counter()
            reports = [
                LocalExecutor().run_one(GenerateStage(cfg), storage, part_name(p), runner=executor)
                for p in report.partitions
            ]
            best = min(best, time.perf_counter() - started)
        pairs = sum(r.stats["input"] for r in reports)
    return best, pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    ap.add_argument("--latency", type=float, default=0.0, help="expert answer time per call, seconds")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--in-flight", type=int, default=32)
    ap.add_argument("--partition-size", type=int, default=64)
    ap.add_argument(
        "--max-pairs", type=int, default=None, help="pool at most this many pairs (source.max_pairs)"
    )
    ap.add_argument("--smoke", action="store_true", help="8 pairs, once: checks it runs")
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(max_pairs=8, repeat=1, in_flight=8, partition_size=4)
    args = ap.parse_args()

    os.environ["EDITTHINKER__EXPERT__PARAMS__LATENCY_S"] = str(args.latency)
    os.environ["EDITTHINKER__RUN__PARTITION_SIZE"] = str(args.partition_size)
    if args.max_pairs:
        os.environ["EDITTHINKER__SOURCE__MAX_PAIRS"] = str(args.max_pairs)
    cfg = load_config(args.config)

    loop_s, pairs = timed_generate(cfg, local_runner(cfg), args.repeat)

    ensure_ray(None, os.cpu_count(), STATE)
    workers = Workers(cfg)
    workers.start()

    def pool_executor(items, make, on_done, on_usage=None, prepare=None):
        """A generate unit's runner: its rollouts on a dispatcher of their own."""
        with Dispatcher(workers, max_in_flight=args.in_flight, retries=1) as dispatcher:
            return dispatcher.run(items, make, on_done, on_usage, prepare)

    try:
        pool_s, _ = timed_generate(cfg, pool_executor, args.repeat)
    finally:
        workers.stop()
        shutdown()
        shutil.rmtree(STATE, ignore_errors=True)

    print(
        f"pairs: {pairs}  expert latency: {args.latency:.3f}s  cpus: {os.cpu_count()}  best of {args.repeat}"
    )
    print(f"{'mode':<12}{'seconds':>10}{'traj/s':>10}")
    print(f"{'plain loop':<12}{loop_s:>10.2f}{pairs / loop_s:>10.2f}")
    print(f"{'actor pool':<12}{pool_s:>10.2f}{pairs / pool_s:>10.2f}")
    print(f"ratio pool/loop: {loop_s / pool_s:.2f}x")


if __name__ == "__main__":
    main()
