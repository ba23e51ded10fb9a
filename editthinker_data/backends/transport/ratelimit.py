"""Requests-per-minute and tokens-per-minute limits for one client, shared by every
coroutine of that client.

Each limit is a paced bucket with no burst (virtual scheduling, as GCRA): a call reserves
its cost on a timeline that advances at the allowed rate and waits until its reservation
starts, so no window of any length, including the shorter ones providers enforce inside
a minute, ever sees more than the rate. Tokens are estimated before the call and settled
with the usage the server reports, so the long-run rate follows the real token count; the
estimates are scaled by the ratio seen so far (actual / estimated), so that calls in
flight are neither over- nor under-charged for long (a fixed over-estimate left 10% of a
token limit unused in bench/expert_concurrency.py, an under-estimate overshot it).
Reservations happen without an await in between, so no lock is needed within one event
loop; the timeline is monotonic time, so it survives one `asyncio.run` per batch.
"""

from __future__ import annotations

import asyncio
import time


class _Pace:
    def __init__(self, per_minute: float):
        if per_minute <= 0:
            raise ValueError(f"a rate limit must be > 0 per minute, got {per_minute}")
        self.per_second = per_minute / 60.0
        self.next_free = 0.0

    def reserve(self, cost: float, now: float) -> float:
        """Seconds to wait before a call of `cost` may start."""
        start = max(now, self.next_free)
        self.next_free = start + cost / self.per_second
        return start - now

    def adjust(self, delta: float) -> None:
        """The call cost `delta` more (or less, when negative) than reserved."""
        self.next_free += delta / self.per_second


class RateLimiter:
    """`wait, charged = await acquire(estimated_tokens)` before each request;
    `settle(charged, estimated, actual)` once the server says how many tokens it counted.
    Both limits are optional."""

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        clock=time.monotonic,
    ):
        self.requests = _Pace(requests_per_minute) if requests_per_minute else None
        self.tokens = _Pace(tokens_per_minute) if tokens_per_minute else None
        self.clock = clock
        self.scale = 1.0  # actual / estimated tokens, learnt from the settled calls

    @property
    def active(self) -> bool:
        return self.requests is not None or self.tokens is not None

    def reserve(self, tokens: int) -> tuple[float, float]:
        """(seconds to wait, tokens charged) for a call estimated at `tokens`."""
        now = self.clock()
        wait = self.requests.reserve(1, now) if self.requests else 0.0
        charged = tokens * self.scale
        if self.tokens:
            wait = max(wait, self.tokens.reserve(charged, now))
        return wait, charged

    async def acquire(self, tokens: int = 0) -> tuple[float, float]:
        """Wait for a slot; returns (seconds waited, tokens charged)."""
        wait, charged = self.reserve(tokens)
        if wait > 0:
            await asyncio.sleep(wait)
        return wait, charged

    def settle(self, charged: float, estimated: int, actual: int | None) -> None:
        if not self.tokens or actual is None:
            return  # no usage reported: the charge stands
        self.tokens.adjust(actual - charged)
        if estimated > 0:
            self.scale = min(4.0, max(0.05, 0.8 * self.scale + 0.2 * actual / estimated))
