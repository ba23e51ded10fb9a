"""An editor that lives in its own service (OmniGen2, Step1X-Edit, a team's own server, the
EditThinker release's editor servers): image and instruction in, image out, over HTTP.

Two contracts (`protocol`), both `POST {base_url}{path}` with JSON:

- `native` (the default, kept small so any server can speak it): `{"image": <base64 PNG>,
  "instruction": str, "seed": int, "model": str?, ...extra}`; the answer is the edited
  image itself (`Content-Type: image/*`) or JSON holding `"image"` (base64, a data URL is
  fine).
- `editthinker`: the servers the EditThinker release ships (`inference/server/apis/*_edit_api.py`,
  one FastAPI app per editor): `{"image": <base64 PNG>, "prompt": str, "seed": int, ...the
  model's settings}`, answered `{"success": bool, "edited_image": <base64 PNG>, "error": str?,
  ...}`. Those servers report a failed task as HTTP 500 `{"detail": "<model>图像编辑失败:
  <error>"}` (a reverse proxy or a re-implementation may answer 200 with `success: false`
  instead: both are read). Their own busy signals, a full queue (任务队列已满) and a task
  past the server's TASK_TIMEOUT (任务超时), and 503 (model not loaded) are worth a retry;
  a 4xx with a `detail` (422: a setting out of the model's range) and any other error the
  server names are final for that edit, with the server's message as the reason. Their
  `enhance_prompt` rewrites the instruction with an LLM before editing; it is sent off
  unless a config turns it on, since the data must record what the editor was told.

Several servers (`base_url` as a list, or `endpoints_file` in the release's
EDIT_API_ENDPOINT_FILE format) share the work round-robin, a retry going to the next one.
`GET {health_path}` is asked before any work (by default with `editthinker`): servers that
do not answer are skipped and named in the counters (`unreachable <url>`, in the build's
stats and summary); none answering fails the build's preflight. A batch runs concurrently
up to `max_concurrency`; transport failures are retried (see `http_retry`); an answer
without a decodable image fails that request alone, with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import itertools
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from editthinker_data.backends import BackendError, EditRequest
from editthinker_data.backends.transport.http_retry import (
    RETRY_STATUS,
    UNREACHABLE_STATUS,
    Retryable,
    check_status,
    post_with_retries,
    retry_after,
)
from editthinker_data.backends.transport.ratelimit import RateLimiter
from editthinker_data.backends.transport.session import HttpSession
from editthinker_data.core.schema import encode_png

PROTOCOLS = ("native", "editthinker")
# The release's request fields beyond image, prompt and seed (the union of its five editors'
# pydantic models: each server ignores the fields its model does not declare).
RELEASE_SETTINGS = (
    "num_inference_steps",
    "guidance_scale",  # Qwen-Image-Edit's servers pass it on as true_cfg_scale
    "text_guidance_scale",  # OmniGen2
    "image_guidance_scale",  # OmniGen2
    "negative_prompt",
    "enhance_prompt",
)
# The release's busy answers (its GPU manager's queue.Full and its wait past TASK_TIMEOUT),
# and their English spellings for re-implementations: the server is there, try again.
BUSY = re.compile(r"任务队列已满|任务超时|queue (is )?full|timed? ?out", re.IGNORECASE)
ENDPOINTS_PORT = 8007  # what the release's reward adds to a bare address in its endpoint file


def _image_from_base64(encoded: str) -> Image.Image:
    try:
        data = base64.b64decode(encoded.split(",", 1)[-1], validate=True)
    except (binascii.Error, ValueError):
        raise BackendError("service answered an image that is not valid base64") from None
    return _open(data)


def _open(data: bytes) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError):
        raise Retryable("answered image does not decode (truncated?)") from None


def decode_answer(resp) -> Image.Image:
    """The edited image from a `native` answer; a body cut short is worth a retry."""
    if resp.headers.get("content-type", "").startswith("image/"):
        return _open(resp.content)
    try:
        body = resp.json()
    except ValueError:
        raise Retryable("answer is neither an image nor JSON (truncated?)") from None
    encoded = body.get("image") if isinstance(body, dict) else None
    if not isinstance(encoded, str) or not encoded:
        error = body.get("error") if isinstance(body, dict) else None
        raise BackendError(f"service answered without an image{f': {error}' if error else ''}")
    return _image_from_base64(encoded)


def _detail(resp) -> str | None:
    """A FastAPI error's `detail` as one line (a 422 lists the fields it refused)."""
    try:
        body = resp.json()
    except ValueError:
        return None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # [{"loc": ["body", "guidance_scale"], "msg": "..."}, ...]
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(x) for x in item.get("loc", ()) if x != "body")
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        return "; ".join(parts) or None
    return str(detail) if detail else None


def check_release_status(resp) -> None:
    """The release servers' statuses: busy and loading are transient, a named error final."""
    code = resp.status_code
    if code < 400:
        return
    detail = _detail(resp)
    busy = bool(detail and BUSY.search(detail))
    if busy or (code in RETRY_STATUS and (code != 500 or detail is None)):
        raise Retryable(f"HTTP {code}{f': {detail}' if detail else ''}", retry_after(resp.headers))
    if code in UNREACHABLE_STATUS or detail is None:
        check_status(resp)  # not the editor server's own word (a proxy's page): as for any service
    raise BackendError(f"HTTP {code}: {detail}")


def decode_release_answer(resp) -> Image.Image:
    """`edited_image` from a release answer; `success: false` is busy (retried) or final."""
    try:
        body = resp.json()
    except ValueError:
        raise Retryable("answer is not JSON (truncated?)") from None
    if not isinstance(body, dict):
        raise BackendError("service answered JSON that is not an object")
    if not body.get("success"):
        error = str(body.get("error") or "no error given")
        if BUSY.search(error):
            raise Retryable(f"server busy: {error}")
        raise BackendError(f"service answered success false: {error}")
    encoded = body.get("edited_image")
    if not isinstance(encoded, str) or not encoded:
        raise BackendError("service answered success without an edited_image")
    return _image_from_base64(encoded)


def read_endpoints(path: str, port: int = ENDPOINTS_PORT) -> list[str]:
    """The release's EDIT_API_ENDPOINT_FILE: one server a line, `#` comments; a bare address
    gets http:// and the port, as its reward reads it."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ValueError(f"endpoints_file {path}: {err.strerror or err}") from None
    urls = []
    for line in (raw.strip() for raw in lines):
        if not line or line.startswith("#"):
            continue
        urls.append(line if line.startswith(("http://", "https://")) else f"http://{line}:{port}")
    if not urls:
        raise ValueError(f"endpoints_file {path} lists no server (one address or URL a line)")
    return urls


class HTTPEditor:
    def __init__(
        self,
        name: str = "http",
        seed: int = 0,
        base_url: str | list[str] = "",
        protocol: str = "native",
        path: str = "/edit",
        endpoints_file: str | None = None,
        endpoints_port: int = ENDPOINTS_PORT,
        health_path: str | None = None,
        health_timeout_s: float = 10.0,
        model: str | None = None,
        api_key_env: str | None = None,
        max_concurrency: int = 4,
        requests_per_minute: float | None = None,
        timeout_s: float = 600.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        output_size: str = "source",
        extra: dict[str, Any] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        text_guidance_scale: float | None = None,
        image_guidance_scale: float | None = None,
        negative_prompt: str | None = None,
        enhance_prompt: bool = False,
    ):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol={protocol!r}; use {' or '.join(PROTOCOLS)}")
        settings = {
            "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale,
            "text_guidance_scale": text_guidance_scale,
            "image_guidance_scale": image_guidance_scale,
            "negative_prompt": negative_prompt,
        }
        if protocol == "native":
            given = [k for k, v in settings.items() if v is not None] + (
                ["enhance_prompt"] if enhance_prompt else []
            )
            if given:
                raise ValueError(
                    f"{', '.join(given)}: settings of protocol editthinker (the release's servers); for a "
                    "native service put its settings in extra"
                )
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        urls = [u for u in urls if u]
        if endpoints_file:
            urls += read_endpoints(endpoints_file, endpoints_port)
        if not urls:
            raise ValueError(
                "give the service's address in base_url (or endpoints_file), e.g. http://omnigen2:8000"
            )
        for url in urls:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError(f"base_url={url!r}; give the service's address, e.g. http://omnigen2:8000")
        if max_concurrency < 1 or max_retries < 0 or timeout_s <= 0 or health_timeout_s <= 0:
            raise ValueError(
                "max_concurrency must be >= 1, max_retries >= 0, timeout_s and health_timeout_s > 0"
            )
        if output_size not in ("source", "model"):
            raise ValueError(f"output_size={output_size!r}; use source or model")
        self.name = name
        self.protocol = protocol
        bases = list(dict.fromkeys(u.rstrip("/") for u in urls))  # a server listed twice is one
        self.urls = [f"{base}/{path.lstrip('/')}" for base in bases]
        self.bases = dict(zip(self.urls, bases, strict=True))
        if health_path is None and protocol == "editthinker":
            health_path = "/health"  # every release server has it
        self.health_path = health_path
        self.health_timeout_s = health_timeout_s
        self.model = model
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.limiter = RateLimiter(requests_per_minute)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.output_size = output_size
        self.extra = dict(extra or {})
        if protocol == "editthinker":
            self.extra.update({k: v for k, v in settings.items() if v is not None})
            self.extra["enhance_prompt"] = bool(enhance_prompt)
        self.headers: dict[str, str] = {}
        self.counters: dict[str, int] = {"requests": 0, "retries": 0, "failures": 0, "edits": 0}
        self.down: dict[str, str] = {}  # url -> why it was dropped
        self._unreported: list[str] = []  # dropped servers not yet in the counters
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._session: HttpSession | None = None  # started by the first batch

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_lock=None, _turn=None)  # neither travels; the session leaves itself out
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._turn = itertools.count()

    @property
    def url(self) -> str:
        return self.urls[0]

    def _key(self) -> None:
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueError(f"editor {self.name!r}: environment variable {self.api_key_env} is not set")
            self.headers["Authorization"] = f"Bearer {key}"

    def preflight(self) -> None:
        """Before any actor starts: the key is set and some server answers."""
        self._key()
        self.check_health()

    def setup(self) -> None:
        self._key()
        self.check_health()

    def check_health(self) -> None:
        """`GET {health_path}` on every server at once (one that black-holes costs
        `health_timeout_s`, not that times the list): those that do not answer are skipped
        (and named), none answering is an error naming them all."""
        if not self.health_path:
            return
        path = self.health_path.lstrip("/")
        import httpx

        def ask(client, url: str) -> str | None:
            where = self.bases[url] + "/" + path
            try:
                resp = client.get(where)
            except httpx.HTTPError as err:
                return f"GET {where}: {type(err).__name__}: {err or 'no answer'}"
            if resp.status_code != 200:
                return f"GET {where}: HTTP {resp.status_code}"
            if _not_ready(resp):
                return f"GET {where}: the server's model is not loaded (gpu_manager_ready false)"
            return None

        limits = httpx.Limits(max_connections=len(self.urls))
        with (
            httpx.Client(timeout=self.health_timeout_s, headers=self.headers, limits=limits) as client,
            ThreadPoolExecutor(min(len(self.urls), 32), thread_name_prefix=f"{self.name}-health") as pool,
        ):
            answers = dict(zip(self.urls, pool.map(lambda url: ask(client, url), self.urls), strict=True))
        down = {url: why for url, why in answers.items() if why is not None}
        if len(down) == len(self.urls):
            raise ValueError(
                "no editor server answered: " + "; ".join(down.values()) + ". Start the servers, or fix "
                "base_url / endpoints_file"
            )
        with self._lock:
            for url, why in down.items():
                self._drop(url, why)

    def _drop(self, url: str, why: str) -> None:
        if url not in self.down:
            self.down[url] = why
            self._unreported.append(url)

    def _next_url(self) -> str:
        with self._lock:
            live = [u for u in self.urls if u not in self.down] or self.urls  # all down: try them all again
            return live[next(self._turn) % len(live)]

    def _failed(self, url: str, err: BaseException) -> None:
        import httpx

        if len(self.urls) > 1 and isinstance(err, httpx.ConnectError):  # nothing listens there
            with self._lock:
                self._drop(url, f"{type(err).__name__}: {err}")

    def stats(self) -> dict[str, int]:
        return dict(self.counters)

    async def _pace(self) -> None:
        await self.limiter.acquire()  # requests per minute only: no token count to settle

    def _payload(self, req: EditRequest) -> dict[str, Any]:
        image = base64.b64encode(encode_png(req.image)).decode()
        if self.protocol == "editthinker":
            return {**self.extra, "image": image, "prompt": req.instruction, "seed": int(req.seed)}
        payload = {**self.extra, "image": image, "instruction": req.instruction, "seed": int(req.seed)}
        if self.model:
            payload["model"] = self.model
        return payload

    async def _edit(self, client, sem: asyncio.Semaphore, req: EditRequest) -> Image.Image:
        release = self.protocol == "editthinker"
        async with sem:
            image = await post_with_retries(
                client,
                self._next_url if len(self.urls) > 1 else self.url,
                max_retries=self.max_retries,
                backoff_s=self.backoff_s,
                counters=self.counters,
                before=self._pace,
                accept=decode_release_answer if release else decode_answer,
                check=check_release_status if release else check_status,
                on_error=self._failed,
                json=self._payload(req),
                headers=self.headers,
            )
        if self.output_size == "source" and image.size != req.image.size:
            image = image.resize(req.image.size, Image.Resampling.LANCZOS)
        return image

    async def _gather(self, client, requests: list[EditRequest]) -> list[Any]:
        sem = asyncio.Semaphore(self.max_concurrency)
        return await asyncio.gather(*(self._edit(client, sem, r) for r in requests), return_exceptions=True)

    def run_batch(self, requests: list[EditRequest]) -> list[Image.Image | BackendError]:
        out: list[Image.Image | BackendError] = []
        if self._session is None:  # kept for the editor's life: connections are reused
            self._session = HttpSession(f"editor-{self.name}", self.max_concurrency, self.timeout_s)
        for result in self._session.run(lambda client: self._gather(client, requests)):
            if isinstance(result, BaseException) and not isinstance(result, BackendError):
                result = BackendError(f"{type(result).__name__}: {result}")
            if isinstance(result, BackendError):
                self.counters["failures"] += 1
            else:
                self.counters["edits"] += 1
            out.append(result)
        with self._lock:  # counted inside a batch, so the build's per-batch usage carries it
            for url in self._unreported:
                self.counters[f"unreachable {self.bases[url]}"] = 1
            self._unreported.clear()
        return out


def _not_ready(resp) -> bool:
    try:
        body = resp.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("gpu_manager_ready") is False
