"""An editor that lives in its own service (OmniGen2, Step1X-Edit, a team's own server):
image and instruction in, image out, over HTTP.

The contract, kept small so any server can speak it: `POST {base_url}{path}` with JSON
`{"image": <base64 PNG>, "instruction": str, "seed": int, "model": str?, ...params}`; the
answer is either the edited image itself (`Content-Type: image/*`) or JSON holding
`"image"` (base64, a data URL is fine). A batch runs concurrently up to
`max_concurrency`; transport failures are retried (see `http_retry`); an answer without a
decodable image fails that request alone, with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import os
from typing import Any

from PIL import Image, UnidentifiedImageError

from editthinker_data.backends import BackendError, EditRequest
from editthinker_data.backends.transport.http_retry import Retryable, post_with_retries
from editthinker_data.backends.transport.ratelimit import RateLimiter
from editthinker_data.backends.transport.session import HttpSession
from editthinker_data.core.schema import encode_png


def decode_answer(resp) -> Image.Image:
    """The edited image from a service answer; a body cut short is worth a retry."""
    if resp.headers.get("content-type", "").startswith("image/"):
        data = resp.content
    else:
        try:
            body = resp.json()
        except ValueError:
            raise Retryable("answer is neither an image nor JSON (truncated?)") from None
        encoded = body.get("image") if isinstance(body, dict) else None
        if not isinstance(encoded, str) or not encoded:
            error = body.get("error") if isinstance(body, dict) else None
            raise BackendError(f"service answered without an image{f': {error}' if error else ''}")
        try:
            data = base64.b64decode(encoded.split(",", 1)[-1], validate=True)
        except (binascii.Error, ValueError):
            raise BackendError("service answered an image that is not valid base64") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError):
        raise Retryable("answered image does not decode (truncated?)") from None


class HTTPEditor:
    def __init__(
        self,
        name: str = "http",
        seed: int = 0,
        base_url: str = "",
        path: str = "/edit",
        model: str | None = None,
        api_key_env: str | None = None,
        max_concurrency: int = 4,
        requests_per_minute: float | None = None,
        timeout_s: float = 600.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        output_size: str = "source",
        extra: dict[str, Any] | None = None,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url={base_url!r}; give the service's address, e.g. http://omnigen2:8000")
        if max_concurrency < 1 or max_retries < 0 or timeout_s <= 0:
            raise ValueError("max_concurrency must be >= 1, max_retries >= 0 and timeout_s > 0")
        if output_size not in ("source", "model"):
            raise ValueError(f"output_size={output_size!r}; use source or model")
        self.name = name
        self.url = base_url.rstrip("/") + "/" + path.lstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.limiter = RateLimiter(requests_per_minute)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.output_size = output_size
        self.extra = dict(extra or {})
        self.headers: dict[str, str] = {}
        self.counters = {"requests": 0, "retries": 0, "failures": 0, "edits": 0}
        self._session: HttpSession | None = None  # started by the first batch

    def setup(self) -> None:
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueError(f"editor {self.name!r}: environment variable {self.api_key_env} is not set")
            self.headers["Authorization"] = f"Bearer {key}"

    def stats(self) -> dict[str, int]:
        return dict(self.counters)

    async def _pace(self) -> None:
        await self.limiter.acquire()  # requests per minute only: no token count to settle

    async def _edit(self, client, sem: asyncio.Semaphore, req: EditRequest) -> Image.Image:
        payload = {
            **self.extra,
            "image": base64.b64encode(encode_png(req.image)).decode(),
            "instruction": req.instruction,
            "seed": int(req.seed),
        }
        if self.model:
            payload["model"] = self.model
        async with sem:
            image = await post_with_retries(
                client,
                self.url,
                max_retries=self.max_retries,
                backoff_s=self.backoff_s,
                counters=self.counters,
                before=self._pace,
                accept=decode_answer,
                json=payload,
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
        return out
