"""The breaker record: the dispatcher's open circuit breakers in the output, written when
their state changes and never in the dispatcher's way (tests/e2e/test_outage.py reads it
through `status` from another process during a build)."""

from __future__ import annotations

import time

from editthinker_data.core.layout import BREAKERS_FILE
from editthinker_data.distributed.breaker_record import BreakerRecord, open_breakers, signature
from editthinker_data.distributed.breakers import OPEN_AFTER, Breaker
from editthinker_data.io.storage import LocalStorage


def opened(now: float) -> Breaker:
    b = Breaker("expert", "vlm")
    for _ in range(OPEN_AFTER):
        b.failed(now, "gave up after 3 tries")
    return b


def test_the_record_follows_the_breakers_state_and_goes_when_none_is_open(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write_json(BREAKERS_FILE, {"breakers": [{"state": "gave_up"}]})  # a previous run's
    record = BreakerRecord(storage)
    assert not storage.exists(BREAKERS_FILE)  # not this run's

    now = time.monotonic()
    b = opened(now)
    before = signature([b])
    record.publish(open_breakers([b], now))
    record.close()
    [state] = storage.read_json(BREAKERS_FILE)["breakers"]
    assert (state["role"], state["backend"], state["state"]) == ("expert", "vlm", "open")
    assert state["next_probe"] - state["since"] >= 1.9  # the first probe, 2 s after the opening
    assert "unreachable since" in state["text"] and state["error"] == "gave up after 3 tries"

    assert signature([b]) == before  # nothing changed: nothing to write
    b.probe_failed(now + 2)
    assert signature([b]) != before  # the next probe moved
    b.gave_up = True
    assert (
        open_breakers([b], now)[0]["state"] == "gave_up" and open_breakers([b], now)[0]["next_probe"] is None
    )

    record = BreakerRecord(storage)
    record.publish(open_breakers([opened(now)], now))
    b2 = opened(now)
    b2.answered()  # closed: none open
    record.publish(open_breakers([b2], now))
    record.close()
    assert not storage.exists(BREAKERS_FILE) and record.last_written == []


class Unwritable(LocalStorage):
    def write_bytes(self, name, data):
        raise OSError("the bucket is out")


def test_a_store_that_cannot_be_written_never_stops_the_build(tmp_path):
    record = BreakerRecord(Unwritable(tmp_path))
    record.publish(open_breakers([opened(time.monotonic())]))
    record.close()  # logged, not raised
    assert record.last_written == []  # only the start's delete got through
