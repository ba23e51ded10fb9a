"""Request and token rate limits: paced, never bursting, settled with the real usage."""

import asyncio

import pytest

from editthinker_data.backends.transport.ratelimit import RateLimiter


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_requests_per_minute_spaces_calls_evenly():
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=120, clock=clock)  # one per 0.5 s
    assert [limiter.reserve(0)[0] for _ in range(4)] == [0.0, 0.5, 1.0, 1.5]
    clock.now += 10  # idle time is not banked: no burst afterwards
    assert [limiter.reserve(0)[0] for _ in range(2)] == [0.0, 0.5]


def test_tokens_per_minute_waits_for_the_tokens_and_settles_with_real_usage():
    clock = Clock()
    limiter = RateLimiter(tokens_per_minute=6000, clock=clock)  # 100 tokens/s
    assert limiter.reserve(200) == (0.0, 200)
    assert limiter.reserve(200) == (pytest.approx(2.0), 200)
    limiter.settle(200, 200, 50)  # the first call used 150 fewer than charged
    wait, charged = limiter.reserve(100)
    assert wait == pytest.approx(2.5)  # 4.0 - 1.5 s
    assert charged == pytest.approx(100 * (0.8 + 0.2 * 50 / 200))  # estimates shrink towards the usage
    limiter.settle(charged, 100, None)  # no usage reported: the charge stands
    assert limiter.reserve(0)[0] == pytest.approx(2.5 + charged / 100)


def test_estimates_learn_the_real_usage_so_the_long_run_rate_is_the_limit():
    clock = Clock()
    limiter = RateLimiter(tokens_per_minute=60_000, clock=clock)  # 1000 tokens/s
    for _ in range(50):  # estimated 2000, always used 500: a call every 0.5 s once learnt
        wait, charged = limiter.reserve(2000)
        clock.now += wait
        limiter.settle(charged, 2000, 500)
    assert limiter.scale == pytest.approx(0.25, rel=0.01)
    start = clock.now
    for _ in range(10):
        wait, charged = limiter.reserve(2000)
        clock.now += wait
        limiter.settle(charged, 2000, 500)
    assert clock.now - start == pytest.approx(10 * 0.5, rel=0.05)


def test_the_stricter_limit_decides():
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=60, tokens_per_minute=60_000, clock=clock)
    waits = [limiter.reserve(10)[0] for _ in range(3)]
    assert waits == [0.0, 1.0, 2.0]  # tokens allow 1000/s; requests only 1/s
    limiter = RateLimiter(requests_per_minute=6000, tokens_per_minute=600, clock=clock)
    assert [limiter.reserve(10)[0] for _ in range(3)] == pytest.approx([0.0, 1.0, 2.0])


def test_acquire_sleeps_and_reports_the_wait():
    limiter = RateLimiter(requests_per_minute=1200)  # 0.05 s apart

    async def burst():
        return await asyncio.gather(*(limiter.acquire() for _ in range(5)))

    waits = [wait for wait, _ in asyncio.run(burst())]
    assert sorted(waits) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2], abs=0.01)
    assert not RateLimiter().active


def test_a_limit_must_be_positive():
    with pytest.raises(ValueError, match="> 0"):
        RateLimiter(tokens_per_minute=-5)
