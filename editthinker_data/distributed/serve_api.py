"""The HTTP face of `serve`: one FastAPI ingress in front of the editors' Serve deployments.

It answers two contracts: the EditThinker release's (`POST /edit`: `prompt` in, `success` /
`edited_image` out; the model's settings are accepted but the config decides them, so the
served editor stays the one the data was built with) and ours (`POST /v1/edit`, what the
`http` editor posts by default). Each editor is under `/<name>`, and at the root when it is
the only one. /status counts what the ingress has seen: in flight, edits, and the distinct
batches they came in (the replica tags each result with its batch).

No `from __future__ import annotations` here: FastAPI reads the routes' annotations as
types through Serve's ingress wrapper, which does not resolve strings.
"""

import base64
import binascii
import hashlib
import hmac
import random
import time
from collections import defaultdict
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from ray import serve
from ray.serve.handle import DeploymentHandle

from editthinker_data.backends import BackendError, ScoreRequest
from editthinker_data.core.schema import Scores, decode_image

APP_NAME = "editthinker-data"
MAX_SEED = 2**31 - 1  # the release draws an unseeded request's seed from [0, int32 max]


# ---- the release's contract (inference/server/apis/*_edit_api.py in appletea233/EditThinker)


class ReleaseEditRequest(BaseModel):
    """The union of the release's request models (Qwen, FLUX Kontext, OmniGen2); unknown keys
    (the reward's `num_inference_step`, `width`, `height`) are ignored, as there."""

    image: str | None = None
    prompt: str
    seed: int | None = None
    negative_prompt: str | None = None
    guidance_scale: float | None = Field(None, ge=0.0, le=10.0)
    text_guidance_scale: float | None = Field(None, ge=0.0, le=10.0)
    image_guidance_scale: float | None = Field(None, ge=0.0, le=10.0)
    num_inference_steps: int | None = Field(None, ge=1, le=100)
    enhance_prompt: bool | None = False


class OwnEditRequest(BaseModel):
    """The `http` editor's default contract; `model` and its extra params are ignored (the
    config decides the model's settings)."""

    image: str
    instruction: str
    seed: int | None = None


class ScoreBody(BaseModel):
    source: str
    edited: str
    instruction: str


class BadImage(BackendError):
    """The request's image does not decode: the client's error (400), not the editor's."""


def decode_b64(encoded: str, what: str):
    try:
        return decode_image(base64.b64decode(encoded.split(",", 1)[-1], validate=True))
    except (binascii.Error, ValueError, OSError) as err:
        raise BadImage(f"{what} is not a base64 image ({type(err).__name__})") from None


def _image(encoded: str, what: str):
    try:
        return decode_b64(encoded, what)
    except BadImage as err:
        raise HTTPException(400, str(err)) from None


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode()


class Tally:
    """What one editor has answered, seen from the ingress: requests in flight, items, and
    the batches they came in (each replica numbers its batches: the highest number seen per
    replica, so the count stays small on a server that runs for weeks)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.items = 0
        self.failures = 0
        self.last_batch: dict[str, int] = {}

    def saw(self, key: str) -> None:
        replica, _, number = key.rpartition(":")
        self.last_batch[replica] = max(self.last_batch.get(replica, 0), int(number))

    def as_dict(self) -> dict[str, Any]:
        n = sum(self.last_batch.values())
        return {
            "in_flight": self.in_flight,
            "edits": self.items,
            "failures": self.failures,
            "batches": n,
            "mean_batch_fill": round(self.items / n, 3) if n else 0.0,
        }


api = FastAPI(title="editthinker-data serve", docs_url=None, redoc_url=None)


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=100_000)
@serve.ingress(api)
class Ingress:
    def __init__(
        self,
        editors: dict[str, DeploymentHandle],
        info: dict[str, dict[str, Any]],
        seed: int,
        scorer: DeploymentHandle | None = None,
        token_sha256: str | None = None,
    ):
        self.editors = editors
        self.info = info  # name -> kind, batch_size, replicas asked, GPUs each
        self.seed = seed
        self.scorer = scorer
        self.token_sha256 = token_sha256
        self.tallies: dict[str, Tally] = defaultdict(Tally)
        self.started = time.time()

    # -- helpers

    def _authorize(self, request: Request) -> None:
        if self.token_sha256 is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        digest = hashlib.sha256(token.encode()).hexdigest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(digest, self.token_sha256):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def _editor(self, name: str | None) -> str:
        if name is None:
            if len(self.editors) == 1:
                return next(iter(self.editors))
            raise HTTPException(
                404, f"several editors are served; post to /<editor>/edit, one of {sorted(self.editors)}"
            )
        if name not in self.editors:
            raise HTTPException(404, f"no editor {name!r} is served; serving {sorted(self.editors)}")
        return name

    async def _edit(
        self, name: str, image: str, instruction: str, seed: int
    ) -> tuple[bytes | None, str | None]:
        """(PNG, None) or (None, the editor's reason); a replica lost mid-request is a 503,
        which clients retry."""
        tally = self.tallies[name]
        tally.in_flight += 1
        try:
            result, _size, key = await self.editors[name].remote((image, instruction, seed))
        except Exception as err:  # the replica died or was being replaced
            raise HTTPException(
                503,
                f"editor {name!r} lost its replica ({type(err).__name__}); retry",
                headers={"Retry-After": "1"},
            ) from None
        finally:
            tally.in_flight -= 1
        if isinstance(result, BadImage):
            raise HTTPException(400, str(result))
        tally.items += 1
        tally.saw(key)
        if isinstance(result, BackendError):
            tally.failures += 1
            return None, str(result)
        return result, None

    def _replicas(self) -> dict[str, dict[str, int]]:
        try:
            app = serve.status().applications[serve.get_replica_context().app_name]
        except Exception:  # noqa: BLE001  the controller is busy: report what the ingress knows
            return {}
        return {
            name: {str(k.value if hasattr(k, "value") else k): v for k, v in d.replica_states.items()}
            for name, d in app.deployments.items()
        }

    def _running(self, replicas: dict[str, dict[str, int]], name: str) -> int:
        return replicas.get(name, {}).get("RUNNING", 0)

    # -- routes

    async def _health(self, name: str | None):
        names = [self._editor(name)] if name is not None else list(self.editors)
        replicas = self._replicas()
        running = {n: self._running(replicas, n) for n in names}
        # An editor that may scale to zero is ready with none: Serve starts one on demand.
        ready = all(running[n] or self.info[n]["min_replicas"] == 0 for n in names)
        body = {
            "status": "healthy" if ready else "loading",
            "ready": ready,
            "gpu_manager_ready": ready,  # the release's key
            "replicas": running,
            "timestamp": time.time(),
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @api.get("/health")
    async def health(self):
        return await self._health(None)

    @api.get("/status")
    async def status(self, request: Request):
        self._authorize(request)
        return self._status(list(self.editors))

    def _status(self, names: list[str]) -> dict[str, Any]:
        replicas = self._replicas()
        editors = {}
        for n in names:
            editors[n] = {
                **self.info[n],
                "replicas": replicas.get(n, {}),
                **self.tallies[n].as_dict(),
            }
        running = sum(self._running(replicas, n) for n in names)
        in_flight = sum(self.tallies[n].in_flight for n in names)
        return {
            "editors": editors,
            "uptime_s": round(time.time() - self.started, 1),
            # the release's SystemStatus keys, so its tooling reads this too
            "active_workers": running,
            "task_queue_size": in_flight,
            "result_queue_size": 0,
            "pending_tasks": in_flight,
            "total_gpus": sum(self._running(replicas, n) * self.info[n]["num_gpus"] for n in names),
            "system_ready": all(self._running(replicas, n) for n in names),
        }

    @api.post("/edit")
    async def release_edit(self, body: ReleaseEditRequest, request: Request):
        return await self._release_edit(None, body, request)

    @api.post("/v1/edit")
    async def own_edit(self, body: OwnEditRequest, request: Request):
        return await self._own_edit(None, body, request)

    @api.post("/score")
    async def score(self, body: ScoreBody, request: Request):
        self._authorize(request)
        if self.scorer is None:
            raise HTTPException(404, "no scorer is served; start serve with --scorer")
        source, edited = _image(body.source, "source"), _image(body.edited, "edited")
        try:
            result, _size, _key = await self.scorer.remote(ScoreRequest(source, edited, body.instruction))
        except Exception as err:
            raise HTTPException(503, f"the scorer lost its replica ({type(err).__name__}); retry",
                                headers={"Retry-After": "1"}) from None  # fmt: skip
        if isinstance(result, BackendError):
            raise HTTPException(422, f"the scorer could not score this edit: {result}")
        assert isinstance(result, Scores)
        return {
            "semantic": result.semantic,
            "quality": result.quality,
            "overall": result.overall,
            "details": result.details,
        }

    @api.get("/{editor}/health")
    async def editor_health(self, editor: str):
        return await self._health(editor)

    @api.get("/{editor}/status")
    async def editor_status(self, editor: str, request: Request):
        self._authorize(request)
        return self._status([self._editor(editor)])

    @api.post("/{editor}/edit")
    async def editor_release_edit(self, editor: str, body: ReleaseEditRequest, request: Request):
        return await self._release_edit(editor, body, request)

    @api.post("/{editor}/v1/edit")
    async def editor_own_edit(self, editor: str, body: OwnEditRequest, request: Request):
        return await self._own_edit(editor, body, request)

    async def _release_edit(self, editor: str | None, body: ReleaseEditRequest, request: Request):
        self._authorize(request)
        name = self._editor(editor)
        if not body.image:
            raise HTTPException(400, "image is required (base64 PNG)")
        started = time.time()
        seed = random.randint(0, MAX_SEED) if body.seed is None else body.seed
        png, error = await self._edit(name, body.image, body.prompt, seed)
        answer = {
            "success": png is not None,
            "task_id": None,
            "original_image": None,
            "edited_image": _b64(png) if png is not None else None,
            "seed": seed,
            "original_prompt": body.prompt,
            "enhanced_prompt": None,  # prompts are never rewritten here: the thinker's words are edited
            "gpu_id": None,
            "processing_time": round(time.time() - started, 4),
            "error": error,
            "editor": name,
        }
        return answer

    async def _own_edit(self, editor: str | None, body: OwnEditRequest, request: Request):
        self._authorize(request)
        name = self._editor(editor)
        seed = self.seed if body.seed is None else body.seed
        png, error = await self._edit(name, body.image, body.instruction, seed)
        if png is None:  # final for this request: the http editor records the reason
            return JSONResponse({"error": error, "detail": error}, status_code=422)
        return {"image": _b64(png), "seed": seed, "editor": name}
