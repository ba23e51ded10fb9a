"""Request and token rate limits: paced, never bursting, settled with the real usage."""

import asyncio

import pytest

from editthinker_data.ratelimit import RateLimiter


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_requests_per_minute_spaces_calls_evenly():
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=120, clock=clock)  # one per 0.5 s
    assert [limiter.reserve(0) for _ in range(4)] == [0.0, 0.5, 1.0, 1.5]
    clock.now += 10  # idle time is not banked: no burst afterwards
    assert [limiter.reserve(0) for _ in range(2)] == [0.0, 0.5]


def test_tokens_per_minute_waits_for_the_tokens_and_settles_with_real_usage():
    clock = Clock()
    limiter = RateLimiter(tokens_per_minute=6000, clock=clock)  # 100 tokens/s
    assert limiter.reserve(200) == 0.0
    assert limiter.reserve(200) == pytest.approx(2.0)
    limiter.settle(200, 50)  # the first call used 150 fewer than estimated
    assert limiter.reserve(100) == pytest.approx(2.5)  # 4.0 - 1.5 s
    limiter.settle(100, None)  # no usage reported: the estimate stands
    assert limiter.reserve(0) == pytest.approx(3.5)


def test_the_stricter_limit_decides():
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=60, tokens_per_minute=60_000, clock=clock)
    waits = [limiter.reserve(10) for _ in range(3)]
    assert waits == [0.0, 1.0, 2.0]  # tokens allow 1000/s; requests only 1/s
    limiter = RateLimiter(requests_per_minute=6000, tokens_per_minute=600, clock=clock)
    assert [limiter.reserve(10) for _ in range(3)] == pytest.approx([0.0, 1.0, 2.0])


def test_acquire_sleeps_and_reports_the_wait():
    limiter = RateLimiter(requests_per_minute=1200)  # 0.05 s apart

    async def burst():
        return await asyncio.gather(*(limiter.acquire() for _ in range(5)))

    waits = asyncio.run(burst())
    assert sorted(waits) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2], abs=0.01)
    assert not RateLimiter().active


def test_a_limit_must_be_positive():
    with pytest.raises(ValueError, match="> 0"):
        RateLimiter(tokens_per_minute=-5)
