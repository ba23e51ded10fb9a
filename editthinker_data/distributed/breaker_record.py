"""The open circuit breakers, written to the build's output so that `status` sees an outage
from any machine (a laptop on s3://), not only the build's terminal.

The breakers live in the dispatcher actor (`breakers.Breaker`, acted on by
`batches.PoolTraffic`). It hands each change of their state here (a breaker opens, a probe
fails and the next is scheduled, one closes or gives up), never a tick: one small PUT per
change, made on a thread of its own so the dispatcher's loop never waits on storage. Only
the newest state is written: changes that come while a write is out are folded into the
next. The record goes when the build ends with none open; a build that gave up waiting
leaves it, so `status` of the stopped build names the backend that was out.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from editthinker_data.backends import BackendContext
from editthinker_data.core.layout import BREAKERS_FILE
from editthinker_data.distributed.breakers import Breaker
from editthinker_data.io.storage import Storage, open_storage

log = logging.getLogger(__name__)
FORMAT = 1


def breaker_state(b: Breaker, now: float, wall: float) -> dict[str, Any]:
    """One open breaker, in wall-clock seconds (the dispatcher's host clock)."""
    state = "gave_up" if b.gave_up else "probing" if b.probing else "open"
    return {
        "role": b.role,
        "backend": b.name,
        "state": state,
        "since": round(b.opened_wall or wall, 3),
        "next_probe": None if b.gave_up or b.probing else round(wall + max(0.0, b.next_probe_at - now), 3),
        "error": b.last_error,
        "text": b.describe(now),
    }


def open_breakers(breakers: list[Breaker], now: float | None = None) -> list[dict[str, Any]]:
    now = time.monotonic() if now is None else now
    wall = time.time()
    return [breaker_state(b, now, wall) for b in breakers if b.open]


def signature(breakers: list[Breaker]) -> tuple[Any, ...]:
    """What changes when the record should: which are open, probing, given up, and when the
    next probe is due (it moves only when a probe fails)."""
    return tuple(
        (b.role, b.name, b.probing, b.gave_up, b.opened_at, b.next_probe_at) for b in breakers if b.open
    )


class BreakerRecord:
    """Writes `BREAKERS_FILE` on a thread of its own; `publish` never blocks."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self._latest: list[dict[str, Any]] | None = None
        self._cond = threading.Condition()
        self._closed = False
        self.writes = 0
        self.last_written: list[dict[str, Any]] | None = None
        self._thread = threading.Thread(target=self._run, name="breaker-record", daemon=True)
        self._thread.start()
        self._write([])  # a record a previous run left (it gave up waiting) is not this run's

    def publish(self, breakers: list[dict[str, Any]]) -> None:
        with self._cond:
            self._latest = breakers
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._latest is None and not self._closed:
                    self._cond.wait()
                if self._latest is None:
                    return
                latest, self._latest = self._latest, None
            self._write(latest)

    def _write(self, breakers: list[dict[str, Any]]) -> None:
        try:
            if breakers:
                self.storage.write_json(
                    BREAKERS_FILE, {"format": FORMAT, "written": round(time.time(), 3), "breakers": breakers}
                )
            else:
                self.storage.delete(BREAKERS_FILE)
            self.writes += 1
            self.last_written = breakers
        except Exception as err:  # storage out too: the build goes on, status just lags
            log.warning("could not record the circuit breakers' state in %s: %s", self.storage.url, err)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is pending, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout_s)


def open_record(context: BackendContext | None) -> BreakerRecord | None:
    """The build's breaker record, in its output; None outside a build."""
    if context is None or not context.output_url:
        return None
    return BreakerRecord(
        open_storage(context.output_url, endpoint_url=context.s3_endpoint_url, region=context.s3_region)
    )
