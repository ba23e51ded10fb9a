"""POST with the retry policy every remote backend needs: 429, 5xx, timeouts and dropped
connections are retried with exponential backoff and full jitter, honouring Retry-After;
other 4xx answers fail at once (retrying a bad request only costs money).

Giving up is classified here, where the cause is known: retries exhausted, or a service that
refuses us as configured (401/403/404/407: wrong address or key), raise
`TransientBackendError` (a rerun tries again); a bad request (400, 413, 422, ...) raises a
final `BackendError`."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from editthinker_data.backends import BackendError, TransientBackendError

# A backend's counters: whole counts, or counts beside seconds waited (the chat roles').
Count = TypeVar("Count", int, float)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# The service is there but not as configured: not worth a retry now, nor final for the data.
UNREACHABLE_STATUS = frozenset({401, 403, 404, 407})


class Retryable(Exception):
    """A failure worth another try."""

    def __init__(self, message: str, wait_s: float | None = None):
        super().__init__(message)
        self.wait_s = wait_s


def retry_after(headers) -> float | None:
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def check_status(resp) -> None:
    if resp.status_code in RETRY_STATUS:
        raise Retryable(f"HTTP {resp.status_code}", retry_after(resp.headers))
    if resp.status_code in UNREACHABLE_STATUS:
        raise TransientBackendError(
            f"HTTP {resp.status_code} (check the address and the key): {resp.text[:200]}"
        )
    if resp.status_code >= 400:
        raise BackendError(f"HTTP {resp.status_code}: {resp.text[:200]}")


async def post_with_retries(
    client,
    url: str | Callable[[], str],
    *,
    max_retries: int,
    backoff_s: float,
    counters: dict[str, Count],
    before: Callable[[], Awaitable[None]] | None = None,
    accept: Callable[[Any], Any] = lambda resp: resp,
    check: Callable[[Any], None] = check_status,
    on_error: Callable[[str, BaseException], None] | None = None,
    **request: Any,
) -> Any:
    """`accept(resp)` turns a 2xx response into the result; it may raise `Retryable` (a
    truncated body) or `BackendError` (a final answer that is wrong). `check(resp)` sorts
    the statuses (a service with its own error conventions brings its own). `url` may be a
    callable, asked again at every try: a client spreading work over several servers
    sends each retry to the next one; `on_error(url, err)` hears of each failed try."""
    import httpx

    for attempt in range(max_retries + 1):
        where = url() if callable(url) else url
        try:
            if before is not None:
                await before()
            counters["requests"] = counters.get("requests", 0) + 1
            resp = await client.post(where, **request)
            check(resp)
            return accept(resp)
        except (Retryable, httpx.TransportError) as err:
            if on_error is not None:
                on_error(where, err)
            if attempt == max_retries:
                raise TransientBackendError(
                    f"{where}: gave up after {attempt + 1} tries ({err or type(err).__name__})"
                ) from None
            counters["retries"] = counters.get("retries", 0) + 1
            wait = getattr(err, "wait_s", None)
            await asyncio.sleep(wait if wait is not None else backoff_s * 2**attempt * random.random())
    raise AssertionError("unreachable")
