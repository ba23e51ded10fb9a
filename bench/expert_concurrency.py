"""Trajectories per second with the expert and scorer behind an OpenAI-compatible server
that answers after a fixed latency, at per-actor concurrency 1 vs. N, printed as a ratio.

    python bench/expert_concurrency.py [--pairs 40] [--latency 0.2] [--concurrency 32]
        [--turns 3] [--model canned|procedural] [--tpm 120000] [--skip-pipeline]

The server (tests/support/openai_server.py) runs on loopback in its own process. With `--model
canned` (default) it costs its latency only, and its expert asks for `--turns` turns; with
`--model procedural` its answers are the procedural expert's and scorer's, whose CPU work
(on the same cores as the build) then bounds the ratio. The editors are procedural either
way: their CPU work per turn is real.
"""

from __future__ import annotations

import argparse
import json
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

from editthinker_data.config import load_config, parse_config  # noqa: E402
from editthinker_data.demo.generate import write_demo_source  # noqa: E402
from editthinker_data.distributed.pools import Workers  # noqa: E402
from editthinker_data.distributed.runtime import ensure_ray, shutdown  # noqa: E402
from editthinker_data.distributed.scheduler import Dispatcher  # noqa: E402
from editthinker_data.io.storage import LocalStorage  # noqa: E402
from tests.support.openai_server import ChatServer, ChatServerProcess  # noqa: E402


def source(pairs: int) -> str:
    """The demo scenes, repeated with numbered instructions (distinct pairs, same work)."""
    src = STATE / "source"
    manifest = write_demo_source(src)
    good = [json.loads(x) for x in manifest.read_text().splitlines()[:40]]
    lines = []
    for i in range(pairs):
        rec = dict(good[i % len(good)])
        rec["id"] = f"{rec['id']}-{i}"
        if i >= len(good):
            rec["instruction"] = f"{rec['instruction']} (variant {i // len(good)})"
        lines.append(json.dumps(rec))
    manifest.write_text("\n".join(lines) + "\n")
    return str(manifest)


def run(cfg_data: dict, concurrency: int, server: ChatServerProcess, in_flight: int) -> tuple[float, int]:
    data = json.loads(json.dumps(cfg_data))
    cache = tempfile.mkdtemp(prefix="etd-bench-llm-")
    for role in ("expert", "scorer"):
        data[role] = {"kind": "openai", "name": f"vlm-{role}", "base_url": server.base_url, "model": "bench",
                      "max_concurrency": concurrency, "batch_size": 64, "params": {"cache_dir": cache}}  # fmt: skip
    cfg = parse_config(data, environ={})
    with tempfile.TemporaryDirectory() as out:
        storage = LocalStorage(out)
        report = LocalExecutor().run_one(PoolStage(cfg), storage, POOL_UNIT)
        workers = Workers(cfg)
        workers.start()

        def runner(items, make, on_done, on_usage=None, prepare=None):
            """A generate unit's runner: its rollouts on a dispatcher of their own."""
            with Dispatcher(workers, max_in_flight=in_flight, retries=1) as dispatcher:
                return dispatcher.run(items, make, on_done, on_usage, prepare)

        try:
            started = time.perf_counter()
            n = 0
            for p in report.partitions:
                r = LocalExecutor().run_one(GenerateStage(cfg), storage, part_name(p), runner=runner)
                n += r.stats["input"]
            return time.perf_counter() - started, n
        finally:
            workers.stop()
            shutil.rmtree(cache, ignore_errors=True)


def transport(latency: float, concurrency: int, requests: int) -> tuple[float, float]:
    """Seconds for `requests` scorer calls in one batch, at concurrency 1 and N (canned answers)."""
    from editthinker_data.backends import ScoreRequest
    from editthinker_data.backends.experts.openai_compat import OpenAIScorer
    from editthinker_data.backends.procedural.scene import render_scene

    img = render_scene("sky", [("circle", "red", 0.5, 0.5, 0.15)], 64)
    reqs = [ScoreRequest(img, img, f"Make the circle blue ({i}).") for i in range(requests)]
    times = []
    with ChatServerProcess(latency_s=latency, canned=True) as server:
        for c in (1, concurrency):
            cache = tempfile.mkdtemp(prefix="etd-bench-llm-")
            scorer = OpenAIScorer(  # one call a request: the transport is measured, not the protocol
                name="b",
                base_url=server.base_url,
                model="bench",
                max_concurrency=c,
                cache_dir=cache,
                protocol="merged",
            )
            scorer.setup()
            started = time.perf_counter()
            scorer.run_batch(reqs)
            times.append(time.perf_counter() - started)
            shutil.rmtree(cache, ignore_errors=True)
    return times[0], times[1]


def token_limited(tpm: float, requests: int, concurrency: int) -> tuple[float, int, float]:
    """Seconds for `requests` canned scorer calls under a tokens-per-minute limit, the tokens
    the server counted, and the bound: every token but the first call's at the limit's rate."""
    from editthinker_data.backends import ScoreRequest
    from editthinker_data.backends.experts.openai_compat import OpenAIScorer
    from editthinker_data.backends.procedural.scene import render_scene

    img = render_scene("sky", [("circle", "red", 0.5, 0.5, 0.15)], 64)
    reqs = [ScoreRequest(img, img, f"Make the circle blue ({i}).") for i in range(requests)]
    with ChatServer(canned=True) as server:
        cache = tempfile.mkdtemp(prefix="etd-bench-llm-")
        scorer = OpenAIScorer(name="b", base_url=server.base_url, model="bench", max_concurrency=concurrency,
                              tokens_per_minute=tpm, cache_dir=cache, protocol="merged")  # fmt: skip
        scorer.setup()
        started = time.perf_counter()
        scorer.run_batch(reqs)
        elapsed = time.perf_counter() - started
        shutil.rmtree(cache, ignore_errors=True)
    stats = scorer.stats()
    tokens = stats["tokens_in"] + stats["tokens_out"]
    return elapsed, tokens, (tokens - tokens / requests) / (tpm / 60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--turns", type=int, default=3, help="turns the canned expert asks for")
    ap.add_argument("--model", choices=["canned", "procedural"], default="canned")
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests", type=int, default=128, help="calls in the transport measurement")
    ap.add_argument(
        "--tpm", type=float, default=0, help="also time --requests calls under this tokens/minute limit"
    )
    ap.add_argument("--skip-pipeline", action="store_true", help="transport measurements only")
    ap.add_argument("--smoke", action="store_true", help="4 pairs, 8 calls, 20 ms latency: checks it runs")
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(pairs=4, turns=2, latency=0.02, concurrency=4, requests=8)
    args = ap.parse_args()
    if args.tpm:
        took, tokens, bound = token_limited(args.tpm, args.requests, args.concurrency)
        print(f"tokens/minute limit {args.tpm:.0f}: {args.requests} calls, {tokens} tokens in {took:.1f}s "
              f"(the limit allows it in {bound:.1f}s; ratio {took / bound:.2f})")  # fmt: skip
    serial_t, fast_t = transport(args.latency, args.concurrency, args.requests)
    print(f"transport: {args.requests} scorer calls, server latency {args.latency:.2f}s, canned answers")
    print(f"  concurrency 1: {args.requests / serial_t:6.1f} calls/s   concurrency {args.concurrency}: "
          f"{args.requests / fast_t:6.1f} calls/s   ratio {serial_t / fast_t:.1f}x")  # fmt: skip
    if args.skip_pipeline:
        return
    base = load_config(ROOT / "configs" / "demo.yaml").model_dump()
    base["source"]["manifest"] = source(args.pairs)
    base["source"]["per_type_quota"] = None
    base["run"]["partition_size"] = args.pairs
    ensure_ray(None, os.cpu_count(), STATE)
    try:
        server_args = {
            "latency_s": args.latency,
            "canned": args.model == "canned",
            "canned_turns": args.turns,
        }
        with ChatServerProcess(**server_args) as server:
            serial_s, n = run(base, 1, server, in_flight=args.concurrency * 2)
            fast_s, _ = run(base, args.concurrency, server, in_flight=args.concurrency * 2)
    finally:
        shutdown()
        shutil.rmtree(STATE, ignore_errors=True)
    print(
        f"pipeline: {n} pairs, server latency {args.latency:.2f}s, {args.model} answers"
        f"{f' ({args.turns} turns)' if args.model == 'canned' else ''}, cpus {os.cpu_count()}"
    )
    print(f"{'concurrency':<12}{'seconds':>10}{'traj/s':>10}")
    print(f"{1:<12}{serial_s:>10.1f}{n / serial_s:>10.2f}")
    print(f"{args.concurrency:<12}{fast_s:>10.1f}{n / fast_s:>10.2f}")
    print(f"ratio: {serial_s / fast_s:.1f}x")


if __name__ == "__main__":
    main()
