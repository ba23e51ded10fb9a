"""Expert and scorer over any OpenAI-compatible chat completions endpoint (hosted APIs,
self-hosted vLLM or SGLang), images sent as base64 PNG data URLs.

A batch runs concurrently (asyncio + httpx, on the backend's kept-alive `session`) under a
per-backend concurrency cap; 429, 5xx, timeouts and dropped connections are retried with
exponential backoff and jitter, honouring Retry-After (`http_retry`, shared with the HTTP
editor), under request and token rate limits (`ratelimit`). A malformed answer is asked
again a bounded number of times, then the request fails with the parser's reason; each
re-ask is a new request (the conversation goes on with the model's own answer and a short
correction saying what was wrong, under another seed), since a deterministic endpoint
answers a repeated request the same way. Answers are cached by content
(`answer_cache`: model, template version, messages with image bytes, sampling
parameters), so a rerun never pays twice: it replays the same answers, so it asks the
same re-asks, under the same keys. The API key is read from the environment
variable the config names, kept in memory only, never logged or stored.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
from typing import Any, TypedDict

from editthinker_data.backends import (
    BackendContext,
    BackendError,
    RefineRequest,
    ScoreRequest,
    UnusableAnswer,
)
from editthinker_data.backends.experts.parsing import ParseError
from editthinker_data.backends.experts.prompting import (
    ExpertRole,
    ThinkerRole,
    expert_job,
    load_template,
    new_counters,
    thinker_job,
)
from editthinker_data.backends.scoring.protocols import ProtocolScorer, combine_answers
from editthinker_data.backends.transport.answer_cache import AnswerCache, cache_key, open_answer_cache
from editthinker_data.backends.transport.http_retry import Retryable, post_with_retries
from editthinker_data.backends.transport.ratelimit import RateLimiter
from editthinker_data.backends.transport.session import HttpSession
from editthinker_data.core.schema import encode_png


def data_url(image) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode()


def estimate_tokens(text: str, images: list, max_tokens: int) -> int:
    """Before the call, for the tokens-per-minute limit: ~4 characters a token, an image as
    OpenAI's high-detail tiles (85 + 170 per 512 px tile), and the completion as max_tokens,
    as providers count it at admission. The limiter scales it by what the server reported
    so far and settles each call with its usage."""
    tiles = sum(math.ceil(im.width / 512) * math.ceil(im.height / 512) for im in images)
    return len(text) // 4 + 85 * len(images) + 170 * tiles + max_tokens


def completion(resp) -> dict[str, Any]:
    """A 2xx body as JSON; a body cut off in transit is worth another try."""
    try:
        return resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Retryable(f"HTTP {resp.status_code} with a body that is not JSON") from None


def reask_text(error: str, cut_off_at: int | None) -> str:
    """The user turn after an unusable answer: what was wrong, and to answer again."""
    if cut_off_at is not None:
        return (
            f"Your answer was cut off at max_tokens={cut_off_at} ({error}). Answer again, more briefly, "
            "in exactly the format asked for."
        )
    return f"Your answer could not be used: {error}. Answer again in exactly the format asked for."


class Sampling(TypedDict):
    """The request's sampling fields, sent as they are and part of every answer's cache key."""

    temperature: float
    max_tokens: int
    seed: int


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
        tokens_per_minute: float | None = None,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 10.0,
        max_retries: int = 6,
        parse_retries: int = 2,
        backoff_s: float = 0.5,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        cache_dir: str | None = None,
        context: BackendContext | None = None,
    ):
        if not base_url or not model:
            raise ValueError(
                "base_url and model are required (e.g. base_url: http://host:8000/v1, model: Qwen2.5-VL-72B)"
            )
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url {base_url!r} must start with http:// or https://")
        if max_concurrency < 1 or max_retries < 0 or parse_retries < 0:
            raise ValueError("max_concurrency must be >= 1, max_retries and parse_retries >= 0")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self._load_prompts(template)  # a missing template fails at config time
        self.max_concurrency = max_concurrency
        self.limiter = RateLimiter(requests_per_minute, tokens_per_minute)
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_retries = max_retries
        self.parse_retries = parse_retries
        self.backoff_s = backoff_s
        self.sampling: Sampling = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}
        self.cache_dir = cache_dir
        self.context = context
        self.cache: AnswerCache | None = None
        self.counters = new_counters()
        self._headers: dict[str, str] = {}
        self._session: HttpSession | None = None  # started by the first batch

    def _load_prompts(self, template: str | None) -> None:
        self.template_name = template or self.default_template
        self.template = load_template(self.template_name)

    def _api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ValueError(
                f"environment variable {self.api_key_env} is not set; export it "
                f"(the config names the variable, never the key)"
            )
        return key

    def preflight(self) -> None:
        """Before any actor starts (a local cluster inherits this environment)."""
        self._api_key()

    def setup(self) -> None:
        try:
            key = self._api_key()
        except ValueError as err:
            raise ValueError(f"{self.role} {self.name!r}: {err}") from None
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self.cache = open_answer_cache(self.context, self.cache_dir)

    def stats(self) -> dict[str, float]:
        out = dict(self.counters)
        out["rate_wait_s"] = round(out["rate_wait_s"], 3)
        return out

    # -- one request -------------------------------------------------------------------

    def _messages(self, text: str, images: list, text_first: bool = False) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": data_url(im)}} for im in images
        ]
        part = {"type": "text", "text": text}
        content = [part, *content] if text_first else [*content, part]
        return [{"role": "user", "content": content}]

    async def _call(
        self, client, messages: list[dict[str, Any]], estimate: int, sampling: Sampling
    ) -> dict[str, Any]:
        charged = 0.0

        async def pace() -> None:  # before every try: a retry costs a request too
            nonlocal charged
            wait, charged = await self.limiter.acquire(estimate)
            self.counters["rate_wait_s"] += wait

        body = await post_with_retries(
            client,
            f"{self.base_url}/chat/completions",
            max_retries=self.max_retries,
            backoff_s=self.backoff_s,
            counters=self.counters,
            before=pace if self.limiter.active else None,
            accept=completion,
            json={"model": self.model, "messages": messages, **sampling},
            headers=self._headers,
        )
        usage = body.get("usage") or {}
        tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        self.counters["tokens_in"] += tokens_in
        self.counters["tokens_out"] += tokens_out
        self.limiter.settle(charged, estimate, tokens_in + tokens_out if usage else None)
        try:
            choice = body["choices"][0]
            return {
                "answer": choice["message"]["content"] or "",
                "finish_reason": choice.get("finish_reason"),
            }
        except (KeyError, IndexError, TypeError):
            return {"answer": "", "finish_reason": "no choices in the response"}

    async def _ask(self, client, sem: asyncio.Semaphore, text: str, images: list, call=None):
        """One question, asked again while its answer is unusable; `call` (a scorer protocol's
        Call) brings its own template version, parser and message layout."""
        template = call.template if call else self.template_name
        parse = call.parse if call else self.parse
        messages = self._messages(text, images, call.text_first if call else False)
        said = text  # every text the conversation holds, for the token estimate
        last_error = "no answer"
        for attempt in range(self.parse_retries + 1):
            if attempt:
                self.counters["reasks"] += 1
            sampling: Sampling = {**self.sampling, "seed": self.sampling["seed"] + attempt}
            key = cache_key(
                model=self.model, template=template, messages=messages, sampling=sampling, attempt=attempt
            )
            entry = await asyncio.to_thread(self.cache.get, key) if self.cache else None
            if entry is not None:
                self.counters["cache_hits"] += 1
            else:
                estimate = estimate_tokens(said, images, self.sampling["max_tokens"])
                async with sem:
                    entry = await self._call(client, messages, estimate, sampling)
                if self.cache:
                    # Every answer is kept, usable or not: a rerun replays the same attempts
                    # without a single request.
                    await asyncio.to_thread(self.cache.put, key, entry)
            try:
                return parse(entry["answer"])
            except ParseError as err:
                last_error = str(err)
                cut_off_at = self.sampling["max_tokens"] if entry.get("finish_reason") == "length" else None
                correction = reask_text(last_error, cut_off_at)
                if cut_off_at is not None:
                    last_error = f"answer cut off at max_tokens={cut_off_at} ({err})"
            if attempt < self.parse_retries:
                messages = [
                    *messages,
                    {"role": "assistant", "content": entry["answer"]},
                    {"role": "user", "content": correction},
                ]
                said += entry["answer"] + correction
        raise UnusableAnswer(
            f"{self.role} answer unusable after {self.parse_retries + 1} tries: {last_error}"
        )

    def _run(self, jobs: list[tuple]) -> list[Any]:
        """Each job is (text, images) or (text, images, call); run at once on the backend's
        session (its kept-alive connections), each result an answer or a BackendError."""
        if self._session is None:
            self._session = HttpSession(
                f"{self.role}-{self.name}", self.max_concurrency, self.timeout_s, self.connect_timeout_s
            )
        results = self._session.run(lambda client: self._gather(client, jobs))
        out = []
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, BackendError):
                r = BackendError(f"{type(r).__name__}: {r}")
            if isinstance(r, BackendError):
                self.counters["failures"] += 1
            out.append(r)
        return out

    async def _gather(self, client, jobs: list[tuple]) -> list[Any]:
        sem = asyncio.Semaphore(self.max_concurrency)
        return await asyncio.gather(*(self._ask(client, sem, *job) for job in jobs), return_exceptions=True)

    def parse(self, answer: str):
        raise NotImplementedError


class OpenAIExpert(ExpertRole, _ChatRole):
    def run_batch(self, requests: list[RefineRequest]) -> list[Any]:
        return self._run([expert_job(self.template, r) for r in requests])


class OpenAIScorer(ProtocolScorer, _ChatRole):
    """Scores by `params.protocol` (scoring.protocols): `viescore` by default, two calls per
    score, each cached, counted and re-asked on its own; `merged`, one call."""

    def run_batch(self, requests: list[ScoreRequest]) -> list[Any]:
        calls = [self.protocol.calls(r) for r in requests]
        answers = iter(self._run([(c.text, c.images, c) for cs in calls for c in cs]))
        return [combine_answers(self.protocol, cs, [next(answers) for _ in cs]) for cs in calls]


class OpenAIThinker(ThinkerRole, _ChatRole):
    def run_batch(self, requests: list[RefineRequest]) -> list[Any]:
        return self._run([thinker_job(self.template_name, r) for r in requests])
