"""Requests per second and mean batch fill: the procedural editor behind `serve` (Ray Serve,
HTTP, `@serve.batch`) under 64 concurrent clients, against the same editor in the build's
actor pool driven by the build's scheduler with 64 edits in flight; printed as a ratio.

    python bench/serve.py             # 512 edits, batch 8, 0.1 s per batch (a GPU's fixed cost)
    python bench/serve.py --smoke     # a few edits: checks the bench runs (Ray start-up dominates)
    python bench/serve.py --actors 2 --latency 0.5 --edits 1024

Both sides run the same editor class with the same batch size and per-batch latency on one
local Ray cluster; the serve side also pays for HTTP, JSON and base64 on this machine's
CPUs, which the clients share. Figures measured so far: docs/serving.md, "Throughput".
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from editthinker_data.core import runenv  # noqa: E402

STATE = Path(tempfile.mkdtemp(prefix="etd-bench-"))
runenv.prepare(STATE)

from PIL import Image  # noqa: E402

from editthinker_data.backends import BackendError, EditRequest  # noqa: E402
from editthinker_data.config import parse_config  # noqa: E402
from editthinker_data.core.schema import Trajectory, encode_png  # noqa: E402
from editthinker_data.distributed.drive import run_rollouts  # noqa: E402
from editthinker_data.distributed.pools import Workers  # noqa: E402
from editthinker_data.distributed.runtime import ensure_ray, shutdown  # noqa: E402
from editthinker_data.pipeline.loop import Call  # noqa: E402

IMAGES = sorted((ROOT / "editthinker_data" / "demo" / "source" / "images").glob("*.png"))
WORDS = ["make the circle blue", "remove the square", "move the triangle left", "make the sky red"]


def edit_rollout(req: EditRequest, editor: str):
    result = yield Call("editor", editor, req)
    if isinstance(result, BackendError):  # an edit comes back as an object reference
        raise RuntimeError(f"edit failed: {result}")
    return Trajectory(pair=None, turns=[], stop_reason="max_turns")  # type: ignore[arg-type]


def requests_for(n: int) -> list[EditRequest]:
    images = [Image.open(p).convert("RGB") for p in IMAGES]
    return [EditRequest(images[i % len(images)], WORDS[i % len(WORDS)], i) for i in range(n)]


def pool_side(cfg, reqs: list[EditRequest], clients: int) -> tuple[float, float]:
    workers = Workers(cfg)
    workers.start()
    try:
        pool = next(iter(workers.pools.values()))
        warm = reqs[: cfg.editors[0].batch_size]
        run_rollouts(workers, warm, lambda r: edit_rollout(r, "bench"), lambda i, t: None, retries=0)
        before = sum(r.batches for r in pool.history)
        started = time.perf_counter()
        run_rollouts(
            workers, reqs, lambda r: edit_rollout(r, "bench"), lambda i, t: None,
            max_in_flight=clients, retries=0,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        batches = sum(r.batches for r in pool.history) - before
    finally:
        workers.stop()
    return len(reqs) / seconds, len(reqs) / max(batches, 1)


async def _clients(url: str, bodies: list[dict], clients: int) -> None:
    import httpx

    todo = iter(bodies)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one_client():
            for body in todo:  # a shared iterator: each client takes the next request
                resp = await client.post(f"{url}/v1/edit", json=body)
                resp.raise_for_status()
                assert resp.json()["image"]

        await asyncio.gather(*(one_client() for _ in range(clients)))


def serve_side(cfg, reqs: list[EditRequest], clients: int) -> tuple[float, float]:
    import httpx

    from editthinker_data.distributed import serve as served

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = served.start(cfg, "127.0.0.1", port)
    try:
        encoded = {id(r.image): base64.b64encode(encode_png(r.image)).decode() for r in reqs}
        bodies = [{"image": encoded[id(r.image)], "instruction": r.instruction, "seed": r.seed} for r in reqs]
        asyncio.run(_clients(url, bodies[: cfg.editors[0].batch_size], clients))  # warm-up
        before = httpx.get(f"{url}/status", timeout=30).json()["editors"]["bench"]
        started = time.perf_counter()
        asyncio.run(_clients(url, bodies, clients))
        seconds = time.perf_counter() - started
        after = httpx.get(f"{url}/status", timeout=30).json()["editors"]["bench"]
    finally:
        served.stop(shutdown_serve=True)
    batches = after["batches"] - before["batches"]
    return len(reqs) / seconds, (after["edits"] - before["edits"]) / max(batches, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edits", type=int, default=512)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--actors", type=int, default=1)
    ap.add_argument("--latency", type=float, default=0.1, help="seconds per batch (a GPU's fixed cost)")
    ap.add_argument("--smoke", action="store_true", help="a few edits, to check the bench runs")
    args = ap.parse_args()
    if args.smoke:
        args.edits, args.clients, args.latency = 32, 16, 0.02
    spec = {
        "name": "bench",
        "kind": "procedural",
        "params": {"skill": 0.7, "latency_s": args.latency},
        "batch_size": args.batch,
        "num_actors": args.actors,
        "resources": {"num_cpus": 0.25},
    }
    idle = {"resources": {"num_cpus": 0}}
    cfg = parse_config(
        {"source": {"manifest": "unused.jsonl"}, "editors": [spec], "expert": idle, "scorer": idle},
        environ={},
    )
    reqs = requests_for(args.edits)
    cpus = os.cpu_count() or 1
    try:
        ensure_ray(None, cpus, STATE)
        pool_rps, pool_fill = pool_side(cfg, reqs, args.clients)
        serve_rps, serve_fill = serve_side(cfg, reqs, args.clients)
    finally:
        shutdown()
        shutil.rmtree(STATE, ignore_errors=True)
    print(
        f"procedural editor, {args.actors} replica(s), batch {args.batch}, {args.latency:g} s per batch; "
        f"{args.edits} edits of {Image.open(IMAGES[0]).size[0]} px images, {args.clients} concurrent clients, cpu x{cpus}"
    )
    print(f"actor pool : {pool_rps:8.2f} edits/s  mean batch fill {pool_fill:5.2f} / {args.batch}")
    print(f"serve      : {serve_rps:8.2f} edits/s  mean batch fill {serve_fill:5.2f} / {args.batch}")
    print(f"ratio serve/pool: {serve_rps / pool_rps:.2f}x")


if __name__ == "__main__":
    main()
