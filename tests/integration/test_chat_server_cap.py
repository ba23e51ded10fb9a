"""The test chat server's concurrency cap behaves like a hosted API's: benchmarks that lean
on it (bench/paper_scale.py) measure a client against a limit, so the limit must hold."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.openai_server import ChatServer

BODY = {
    "model": "m",
    "messages": [{"role": "user", "content": [{"type": "text", "text": "Editing instruction: x"}]}],
}


def _post(url: str) -> int:
    request = urllib.request.Request(
        url + "/chat/completions", json.dumps(BODY).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            json.loads(reply.read())["choices"][0]["message"]["content"]
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code


def _burst(server: ChatServer, n: int) -> tuple[list[int], float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        codes = list(pool.map(lambda _: _post(server.base_url), range(n)))
    return codes, time.perf_counter() - started


def test_requests_beyond_the_cap_wait_for_a_slot():
    with ChatServer(canned=True, latency_s=0.2, max_concurrency=2, keep_bodies=False) as server:
        codes, elapsed = _burst(server, 6)
        assert codes == [200] * 6
        assert server.in_flight_peak == 2 and server.rejected == 0
        assert elapsed >= 0.6  # three rounds of two
        assert server.bodies == [] and server.counters()["requests"] == 6


def test_requests_beyond_the_cap_get_429():
    with ChatServer(canned=True, latency_s=0.5, max_concurrency=2, over_capacity="429") as server:
        codes, _ = _burst(server, 6)
        assert sorted(codes) == [200, 200, 429, 429, 429, 429]
        assert server.counters() == {"requests": 2, "rejected": 4, "in_flight_peak": 2}


def test_a_bad_cap_fails_fast():
    with pytest.raises(ValueError, match="over_capacity"):
        ChatServer(max_concurrency=2, over_capacity="drop")
