"""Edits per second: a diffusers editor served by the Ray actor pool and the build's
scheduler vs. a plain in-process loop over the same pipeline, same batch size, printed
side by side as a ratio (model loading excluded from both).

    python bench/editor_pool.py                       # CPU: tiny random pipelines, 64 px
    python bench/editor_pool.py --family flux-kontext --actors 1 --actor-cpus 2
    python bench/editor_pool.py --mode gpu            # CUDA: SD-size InstructPix2Pix, 512 px
    python bench/editor_pool.py --mode gpu --model /ckpt/flux-kontext --kind flux_kontext

The pool must not cost throughput (target: ratio >= 0.9 on CPU, where the loop already
uses every core); on a multi-GPU node, more actors give more edits/s.
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

STATE = Path(tempfile.mkdtemp(prefix="etd-bench-"))
runenv.prepare(STATE)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from editthinker_data.backends import BackendError, EditRequest, create_backend  # noqa: E402
from editthinker_data.backends.editors import tiny_models  # noqa: E402
from editthinker_data.config import parse_config  # noqa: E402
from editthinker_data.core.schema import Scores, Trajectory, Turn  # noqa: E402
from editthinker_data.distributed.drive import run_rollouts  # noqa: E402
from editthinker_data.distributed.pools import Workers  # noqa: E402
from editthinker_data.distributed.runtime import ensure_ray, shutdown  # noqa: E402
from editthinker_data.pipeline.loop import Call  # noqa: E402

# tiny family -> editor kind: every registered diffusers family (each builds its own tiny pipeline)
KINDS = {tiny_models.tiny_name(kind): kind for kind in tiny_models.tiny_families()}


def requests(n: int, size: int) -> list[EditRequest]:
    rng = np.random.default_rng(0)
    words = ["make the sky red", "add a hat", "turn it into a sketch", "remove the car"]
    return [
        EditRequest(Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8")), words[i % 4], i)
        for i in range(n)
    ]


def edit_rollout(req: EditRequest, editor: str):
    """A one-call rollout, so the pool side goes through the build's real scheduler. The edit
    comes back as an object reference (or a BackendError); as in a build, it rides in the
    trajectory's turn and the unit's thread fetches it (`refs.materialize`) before `on_done`."""
    result = yield Call("editor", editor, req)
    if isinstance(result, BackendError):
        raise RuntimeError(f"edit failed: {result}")
    turn = Turn(1, req.instruction, result, Scores(0.0, 0.0), req.seed)
    return Trajectory(pair=None, turns=[turn], stop_reason="max_turns")  # type: ignore[arg-type]


def check_edit(i: int, traj: Trajectory) -> None:
    image = traj.turns[0].image
    if not isinstance(image, Image.Image):
        raise RuntimeError(f"edit {i} came back as {type(image).__name__}, not an image")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--family", choices=sorted(KINDS), default="instruct-pix2pix", help="tiny model to build")
    ap.add_argument("--model", help="a saved pipeline folder instead of a built one")
    ap.add_argument("--kind", help="editor kind of --model (default from --family)")
    ap.add_argument("--edits", type=int, default=None)
    ap.add_argument("--size", type=int, default=None, help="source image side, px")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--actors", type=int, default=None)
    ap.add_argument("--actor-cpus", type=float, default=None)
    ap.add_argument("--smoke", action="store_true", help="8 edits at 32 px on one actor: checks it runs")
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(edits=8, size=32, steps=1, actors=1)
    args = ap.parse_args()

    gpu = args.mode == "gpu"
    n = args.edits or (64 if gpu else 96)
    size = args.size or (512 if gpu else 64)
    steps = args.steps or (20 if gpu else 2)
    cpus = os.cpu_count() or 1
    actors = args.actors or (1 if gpu else cpus)
    actor_cpus = args.actor_cpus if args.actor_cpus is not None else (1.0 if gpu else cpus / actors)
    kind = args.kind or KINDS[args.family]
    model_dir = Path(tempfile.mkdtemp(prefix="etd-bench-model-"))
    try:
        if args.model:
            model = args.model
        elif gpu:
            model = str(
                tiny_models.tiny_families()["instruct_pix2pix"].save_tiny(model_dir / "ip2p-sd", size="sd")
            )
            kind = "instruct_pix2pix"
        else:
            model = str(tiny_models.save_tiny_editors(model_dir, [args.family])[args.family])
        params = {"steps": steps, "pixels": size * size, "resize": "max_pixels"}
        if kind in tiny_models.tiny_families() and not gpu:  # what a tiny CPU run of the family needs
            params.update(tiny_models.tiny_families()[kind].tiny_params(size * size))
        spec = {
            "name": "bench",
            "kind": kind,
            "model": model,
            "params": params,
            "batch_size": args.batch,
            "num_actors": actors,
            "resources": {"num_cpus": actor_cpus, "num_gpus": 1 if gpu else 0},
        }
        idle = {"resources": {"num_cpus": 0}}  # the build's expert and scorer pools, unused here
        cfg = parse_config(
            {"source": {"manifest": "unused.jsonl"}, "editors": [spec], "expert": idle, "scorer": idle},
            environ={},
        )
        reqs = requests(n, size)

        backend = create_backend("editor", cfg.editors[0], cfg.seed)
        backend.setup()
        backend.run_batch(reqs[: args.batch])  # warm-up (kernels, allocator), both sides
        started = time.perf_counter()
        for i in range(0, n, args.batch):
            out = backend.run_batch(reqs[i : i + args.batch])
            assert all(isinstance(o, Image.Image) for o in out), out
        loop_s = time.perf_counter() - started
        del backend

        ensure_ray(None, cpus, STATE)
        workers = Workers(cfg)
        workers.start()
        try:
            warm = reqs[: args.batch * actors]
            run_rollouts(
                workers,
                warm,
                lambda r: edit_rollout(r, "bench"),
                check_edit,
                max_in_flight=len(warm),
                retries=0,
            )
            started = time.perf_counter()
            run_rollouts(
                workers, reqs, lambda r: edit_rollout(r, "bench"), check_edit,
                max_in_flight=args.batch * actors * 2, retries=0,
            )  # fmt: skip
            pool_s = time.perf_counter() - started
        finally:
            workers.stop()
            shutdown()
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)
        shutil.rmtree(STATE, ignore_errors=True)

    device = "cuda" if gpu else f"cpu x{cpus}"
    print(f"editor: {kind} ({'given model' if args.model else ('SD-size random' if gpu else 'tiny random')})  "
          f"edits: {n} at {size}px, {steps} steps, batch {args.batch}  device: {device}")  # fmt: skip
    print(f"plain loop : {n / loop_s:8.2f} edits/s  (in-process, all cores)")
    print(
        f"actor pool : {n / pool_s:8.2f} edits/s  ({actors} actor(s) x {actor_cpus:g} CPU{', 1 GPU' if gpu else ''})"
    )
    print(f"ratio pool/loop: {loop_s / pool_s:.2f}x")


if __name__ == "__main__":
    main()
