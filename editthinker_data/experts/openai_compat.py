"""Expert and scorer over any OpenAI-compatible chat completions endpoint (hosted APIs,
self-hosted vLLM or SGLang), images sent as base64 PNG data URLs.

A batch runs concurrently (asyncio + httpx) under a per-backend concurrency cap; 429, 5xx,
timeouts and dropped connections are retried with exponential backoff and jitter,
honouring Retry-After; a malformed answer is asked again a bounded number of times, then
the request fails with the parser's reason. Answers are cached on disk by content (model,
template version, messages with image bytes, sampling parameters), so a rerun never pays
twice. The API key is read from the environment variable the config names, never logged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

from editthinker_data.backends import BackendError, RefineRequest, ScoreRequest
from editthinker_data.experts.parsing import ParseError, parse_expert, parse_scorer, parse_thinker
from editthinker_data.experts.prompting import (
    expert_job,
    load_template,
    new_counters,
    scorer_job,
    thinker_job,
)
from editthinker_data.schema import encode_png

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def data_url(image) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode()


class _ChatRole:
    role = ""
    default_template = ""

    def __init__(
        self,
        name: str = "openai",
        seed: int = 0,
        base_url: str = "",
        model: str = "",
        api_key_env: str | None = None,
        template: str | None = None,
        max_concurrency: int = 16,
        requests_per_minute: float | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 6,
        parse_retries: int = 2,
        backoff_s: float = 0.5,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        cache_dir: str | None = None,
    ):
        if not base_url or not model:
            raise ValueError(
                "base_url and model are required (e.g. base_url: http://host:8000/v1, model: Qwen2.5-VL-72B)"
            )
        if max_concurrency < 1 or max_retries < 0 or parse_retries < 0:
            raise ValueError("max_concurrency must be >= 1, max_retries and parse_retries >= 0")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.template_name = template or self.default_template
        self.template = load_template(self.template_name)  # a missing template fails at config time
        self.max_concurrency = max_concurrency
        self.min_interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._next_slot = 0.0
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.parse_retries = parse_retries
        self.backoff_s = backoff_s
        self.sampling = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}
        self.cache_dir = (
            Path(cache_dir or os.environ.get("EDITTHINKER_CACHE_DIR") or ".editthinker/cache") / "llm"
        )
        self.counters = new_counters()
        self._headers: dict[str, str] = {}

    def setup(self) -> None:
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueError(
                    f"{self.role} {self.name!r}: environment variable {self.api_key_env} is not set"
                )
            self._headers["Authorization"] = f"Bearer {key}"
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def stats(self) -> dict[str, int]:
        return dict(self.counters)

    # -- one request -------------------------------------------------------------------

    def _messages(self, text: str, images: list) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": data_url(im)}} for im in images
        ]
        content.append({"type": "text", "text": text})
        return [{"role": "user", "content": content}]

    def _cache_key(self, messages: list[dict[str, Any]], attempt: int) -> str:
        blob = json.dumps(
            {
                "model": self.model,
                "template": self.template_name,
                "messages": messages,
                "sampling": self.sampling,
                "attempt": attempt,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    async def _post(self, client, payload: dict[str, Any]) -> dict[str, Any]:
        import httpx

        for attempt in range(self.max_retries + 1):
            wait = self.backoff_s * 2**attempt * (0.5 + random.random())
            try:
                await self._pace()
                self.counters["requests"] += 1
                resp = await client.post(
                    f"{self.base_url}/chat/completions", json=payload, headers=self._headers
                )
                if resp.status_code in RETRY_STATUS:
                    retry_after = resp.headers.get("retry-after")
                    if retry_after and retry_after.replace(".", "", 1).isdigit():
                        wait = float(retry_after)
                    raise _Retryable(f"HTTP {resp.status_code}")
                if resp.status_code >= 400:
                    raise BackendError(f"HTTP {resp.status_code}: {resp.text[:200]}")
                return resp.json()
            except (_Retryable, httpx.TransportError, json.JSONDecodeError) as err:
                if attempt == self.max_retries:
                    raise BackendError(
                        f"{self.base_url}: gave up after {attempt + 1} tries ({err})"
                    ) from None
                self.counters["retries"] += 1
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def _pace(self) -> None:
        """Requests per minute: each request takes the next free slot on a fixed grid."""
        if not self.min_interval:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self.min_interval
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _ask(self, client, sem: asyncio.Semaphore, text: str, images: list):
        messages = self._messages(text, images)
        last_error = "no answer"
        for attempt in range(self.parse_retries + 1):
            key = self._cache_key(messages, attempt)
            cached = self.cache_dir / key[:2] / f"{key}.json"
            if cached.exists():
                self.counters["cache_hits"] += 1
                answer = json.loads(cached.read_text())["answer"]
            else:
                payload = {"model": self.model, "messages": messages, **self.sampling}
                async with sem:
                    body = await self._post(client, payload)
                try:
                    answer = body["choices"][0]["message"]["content"]
                except (KeyError, IndexError, TypeError):
                    answer = ""
                usage = body.get("usage") or {}
                self.counters["tokens_in"] += int(usage.get("prompt_tokens", 0))
                self.counters["tokens_out"] += int(usage.get("completion_tokens", 0))
                # Every answer is kept, usable or not: a rerun replays the same attempts
                # without a single request.
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(f".{os.getpid()}.{id(messages)}.tmp")
                tmp.write_text(json.dumps({"answer": answer}))
                os.replace(tmp, cached)
            try:
                return self.parse(answer)
            except ParseError as err:
                last_error = str(err)
        raise BackendError(f"{self.role} answer unusable after {self.parse_retries + 1} tries: {last_error}")

    async def _run(self, jobs: list[tuple[str, list]]) -> list[Any]:
        import httpx

        sem = asyncio.Semaphore(self.max_concurrency)
        limits = httpx.Limits(max_connections=self.max_concurrency)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits) as client:
            results = await asyncio.gather(
                *(self._ask(client, sem, t, ims) for t, ims in jobs), return_exceptions=True
            )
        out = []
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, BackendError):
                r = BackendError(f"{type(r).__name__}: {r}")
            if isinstance(r, BackendError):
                self.counters["failures"] += 1
            out.append(r)
        return out

    def parse(self, answer: str):
        raise NotImplementedError


class _Retryable(Exception):
    pass


class OpenAIExpert(_ChatRole):
    role = "expert"
    default_template = "expert_v1"

    def parse(self, answer: str):
        return parse_expert(answer)

    def run_batch(self, requests: list[RefineRequest]) -> list[Any]:
        return asyncio.run(self._run([expert_job(self.template, r) for r in requests]))


class OpenAIScorer(_ChatRole):
    role = "scorer"
    default_template = "scorer_v1"

    def parse(self, answer: str):
        return parse_scorer(answer)

    def run_batch(self, requests: list[ScoreRequest]) -> list[Any]:
        return asyncio.run(self._run([scorer_job(self.template, r) for r in requests]))


class OpenAIThinker(_ChatRole):
    """A trained thinker (or any MLLM prompted like one): asked with the same user turn the
    SFT export trains on, it answers <think>..</think><score>{..}</score><answer>..</answer>."""

    role = "thinker"
    default_template = "thinker_user_v1"

    def parse(self, answer: str):
        return parse_thinker(answer)

    def run_batch(self, requests: list[RefineRequest]) -> list[Any]:
        return asyncio.run(self._run([thinker_job(self.template_name, r) for r in requests]))
