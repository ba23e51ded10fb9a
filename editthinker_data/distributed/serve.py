"""The config's editors (and its scorer) served over HTTP on Ray Serve, for an RL trainer's
reward or for another build's `http` editor.

A replica holds the same `BackendActor` a build's pool starts, so the model loads once per
replica through the same backend class and a request's seed decides the image exactly as in
a build. Requests are grouped into the editor's `batch_size` by `@serve.batch`; the HTTP
routes are in `serve_api`.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

from ray import serve

from editthinker_data.backends import BackendContext, EditRequest
from editthinker_data.config import BackendSpec, BuildConfig
from editthinker_data.core.schema import encode_png
from editthinker_data.distributed.serve_api import APP_NAME, BadImage, Ingress, decode_b64

# Names the ingress routes use itself: an editor cannot take them as its prefix.
RESERVED = frozenset({"edit", "v1", "health", "status", "score", "docs", "openapi.json"})
BATCH_WAIT_S = 0.02  # how long a partial batch waits for more requests before it runs


def max_ongoing(batch_size: int) -> int:
    """Requests a replica holds at once: the running batch and several full ones queued
    behind it. Serve's default (5) would starve any batch above 5; and a router that finds
    every replica full waits with backoff, so a limit of two batches left the next batch a
    third full under 64 clients (bench/serve.py). Queued requests cost a replica nothing."""
    return max(8 * batch_size, 32)


class EditorReplica:
    """One copy of an editor's model. `run` is batched by Serve; the batch runs in a thread
    so the replica keeps taking requests meanwhile.

    Requests wait at a gate while the model is busy, and go to `@serve.batch` together when
    it is free. Serve forms a batch as soon as its wait ends, even while the previous one
    runs, so without the gate the requests that arrive during a batch were cut into several
    partial batches queued behind it: half-full batches under 64 clients (bench/serve.py)."""

    def __init__(self, role: str, spec: BackendSpec, seed: int, context: BackendContext | None = None):
        import os

        from editthinker_data.distributed.pools import BackendActor

        self.actor = BackendActor(role, spec, seed, context)
        self.replica = f"{os.getpid()}-{random.getrandbits(32):08x}"
        self.batches = 0
        self.inside = 0  # requests handed to the batcher and not yet answered
        self.window: asyncio.Event | None = None  # set: requests may go to the batcher now
        # serve.batch adds these setters at run time; its type hints leave them out.
        self.run.set_max_batch_size(spec.batch_size)  # type: ignore[attr-defined]
        self.run.set_batch_wait_timeout_s(BATCH_WAIT_S)  # type: ignore[attr-defined]

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=BATCH_WAIT_S)
    async def run(self, requests: list[Any]) -> list[tuple[Any, int, str]]:
        """Each result with the size of its batch and the batch's key, for /status."""
        self.batches += 1
        key = f"{self.replica}:{self.batches}"
        if self.window is not None and self.window.is_set():
            self.window = asyncio.Event()  # closed until what was handed over is answered
        # As a build's actor runs a batch (`run_counted`: its edit store, then the device):
        # a request's failure becomes a BackendError value, and BackendFatal exits the
        # process (Serve replaces the replica; the client retries).
        results, _, _ = await asyncio.to_thread(self.actor.run_counted, list(requests))
        return [(r, len(requests), key) for r in results]

    async def __call__(self, request: Any) -> tuple[Any, int, str]:
        """An edit arrives as (base64 image, instruction, seed) and leaves as PNG bytes. The
        image is decoded before the gate and encoded after the batch, in threads beside the
        running batch: only the model's own work is on the batch's path, and the one
        ingress stays light."""
        if self.actor.role == "editor":
            encoded, instruction, seed = request
            try:
                image = await asyncio.to_thread(decode_b64, encoded, "image")
            except BadImage as err:
                return err, 0, ""
            request = EditRequest(image, instruction, seed)
        if self.window is None:  # made here: an Event belongs to the replica's event loop
            self.window = asyncio.Event()
            self.window.set()
        await self.window.wait()
        self.inside += 1
        try:
            result, size, key = await self.run(request)
        finally:
            self.inside -= 1
            if self.inside == 0 and not self.window.is_set():
                self.window.set()  # everyone waiting goes to the batcher at once
        if hasattr(result, "save"):
            result = await asyncio.to_thread(encode_png, result)
        return result, size, key


def deployment_options(role: str, spec: BackendSpec) -> dict[str, Any]:
    """Serve's options for one backend: its replicas and resources as in a build, scaling
    between `min_replicas` and `num_actors` when the config sets `min_replicas`."""
    min_replicas = spec.min_replicas
    options: dict[str, Any] = {
        "name": spec.name if role == "editor" else f"{role}-{spec.name}",
        "ray_actor_options": {"num_cpus": spec.resources.num_cpus, "num_gpus": spec.resources.num_gpus},
        "max_ongoing_requests": max_ongoing(spec.batch_size),
        "graceful_shutdown_timeout_s": 5,
        # A lost replica is noticed and replaced within seconds, not Serve's default 10 s (the
        # batch runs in a thread, so the replica answers health checks while it edits).
        "health_check_period_s": 2,
    }
    if min_replicas is not None and min_replicas < spec.num_actors:
        options["autoscaling_config"] = {
            "min_replicas": min_replicas,
            "initial_replicas": max(1, min_replicas),
            "max_replicas": spec.num_actors,
            "target_ongoing_requests": spec.batch_size,
        }
        options["num_replicas"] = "auto"
    else:
        options["num_replicas"] = spec.num_actors
    return options


def editor_deployment(role: str, spec: BackendSpec, seed: int, context: BackendContext | None):
    """The bound Serve deployment of one backend (an editor, or the scorer)."""
    # serve.deployment(cls) returns a Deployment; its overloads type it as the decorator factory.
    deployment = serve.deployment(EditorReplica).options(**deployment_options(role, spec))  # type: ignore[attr-defined]
    return deployment.bind(role, spec, seed, context)


def check_names(names) -> None:
    clash = sorted(set(names) & RESERVED)
    if clash:
        raise ValueError(
            f"editor name(s) {clash} clash with the server's own routes; rename them in the config"
        )


def application(
    cfg: BuildConfig,
    editors: list[str] | None = None,
    scorer: bool = False,
    token_sha256: str | None = None,
    context: BackendContext | None = None,
):
    """The Serve application for `cfg`: the named editors (all by default) and, with
    `scorer`, the config's scorer."""
    specs = {e.name: e for e in cfg.editors}
    chosen = editors or list(specs)
    unknown = [n for n in chosen if n not in specs]
    if unknown:
        raise ValueError(f"no editor named {unknown} in the config; it has {sorted(specs)}")
    check_names(chosen)
    handles = {n: editor_deployment("editor", specs[n], cfg.seed, context) for n in chosen}
    info = {
        n: {
            "kind": specs[n].kind,
            "batch_size": specs[n].batch_size,
            "num_actors": specs[n].num_actors,
            "min_replicas": specs[n].min_replicas,
            "num_gpus": specs[n].resources.num_gpus,
        }
        for n in chosen
    }
    score = None
    if scorer:
        if cfg.thinker is not None:
            raise ValueError(
                "the config has a thinker, not a scorer; drop --scorer or serve a config with a scorer"
            )
        score = editor_deployment("scorer", cfg.scorer, cfg.seed, context)
    return Ingress.bind(handles, info, cfg.seed, score, token_sha256)  # type: ignore[attr-defined]  # a Deployment


def token_digest(token_env: str | None) -> str | None:
    """The SHA-256 of the bearer token in `token_env`: only the digest travels to the cluster."""
    import os

    if not token_env:
        return None
    token = os.environ.get(token_env, "")
    if not token:
        raise ValueError(f"environment variable {token_env} is not set; export the bearer token there")
    return hashlib.sha256(token.encode()).hexdigest()


def start(
    cfg: BuildConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    editors: list[str] | None = None,
    scorer: bool = False,
    token_env: str | None = None,
    context: BackendContext | None = None,
) -> str:
    """Deploy on the Ray cluster this process is connected to; returns the URL once every
    replica is up."""
    app = application(cfg, editors, scorer, token_digest(token_env), context)
    serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
    serve.run(app, name=APP_NAME, route_prefix="/")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}"


def stop(shutdown_serve: bool) -> None:
    """Delete the application; `shutdown_serve` also stops Serve itself (a cluster this
    process started; on a shared cluster other applications keep running)."""
    if shutdown_serve:
        serve.shutdown()
    else:
        serve.delete(APP_NAME)


def build_app(args: dict[str, Any]):
    """Application builder for a Serve config file (KubeRay's RayService `serveConfigV2`):
    `args` are `config` (a path or URL on the node), `editors` (optional list), `scorer`
    (bool) and `token_env` (optional)."""
    from editthinker_data.config import load_config

    cfg = load_config(args["config"])
    return application(
        cfg, args.get("editors"), bool(args.get("scorer")), token_digest(args.get("token_env"))
    )
