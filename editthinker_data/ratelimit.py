"""Requests-per-minute and tokens-per-minute limits for one client, shared by every
coroutine of that client.

Each limit is a paced bucket with no burst (virtual scheduling, as GCRA): a call reserves
its cost on a timeline that advances at the allowed rate and waits until its reservation
starts, so no window of any length, including the shorter ones providers enforce inside
a minute, ever sees more than the rate. Tokens are estimated before the call and settled
with the usage the server reports, so the long-run rate follows the real token count.
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
    """`await acquire(estimated_tokens)` before each request; `settle(estimated, actual)`
    once the server says how many tokens it counted. Both limits are optional."""

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        clock=time.monotonic,
    ):
        self.requests = _Pace(requests_per_minute) if requests_per_minute else None
        self.tokens = _Pace(tokens_per_minute) if tokens_per_minute else None
        self.clock = clock

    @property
    def active(self) -> bool:
        return self.requests is not None or self.tokens is not None

    def reserve(self, tokens: int) -> float:
        now = self.clock()
        wait = self.requests.reserve(1, now) if self.requests else 0.0
        if self.tokens:
            wait = max(wait, self.tokens.reserve(tokens, now))
        return wait

    async def acquire(self, tokens: int = 0) -> float:
        """Wait for a slot; returns the seconds waited."""
        wait = self.reserve(tokens)
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    def settle(self, estimated: int, actual: int | None) -> None:
        if self.tokens and actual is not None:
            self.tokens.adjust(actual - estimated)
