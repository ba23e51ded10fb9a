"""Circuit breakers: an outage pauses the build instead of churning through every pair.

One per backend pool. After `OPEN_AFTER` transient failures in a row it opens: calls to the
backend are parked (their rollouts wait, with the edits they made), no new rollout starts and
no new edit is sent, and one probe at a time, with a growing backoff, asks whether the backend
is back. The first answer closes it and the parked calls go out again. Past
`run.outage_wait_s` it gives up: parked calls are answered with the outage, edits are refused,
and the build ends unfinished as before (the same command finishes it), having started no edit
after the breaker opened. Pure bookkeeping: the dispatcher's traffic acts on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

OPEN_AFTER = 3  # transient failures in a row (each after the backend's own retries)
FIRST_BACKOFF_S = 2.0
MAX_BACKOFF_S = 60.0


@dataclass
class Breaker:
    role: str
    name: str
    consecutive: int = 0
    opened_at: float | None = None  # monotonic
    opened_wall: float | None = None  # wall clock, for people
    backoff_s: float = FIRST_BACKOFF_S
    next_probe_at: float = 0.0
    probing: bool = False
    gave_up: bool = False
    openings: int = 0
    last_error: str = ""

    @property
    def open(self) -> bool:
        return self.opened_at is not None

    def failed(self, now: float, error: str) -> None:
        """A transient failure; opens the breaker at the `OPEN_AFTER`-th in a row."""
        self.consecutive += 1
        self.last_error = error
        if not self.open and self.consecutive >= OPEN_AFTER:
            self.opened_at, self.opened_wall = now, time.time()
            self.backoff_s, self.next_probe_at = FIRST_BACKOFF_S, now + FIRST_BACKOFF_S
            self.openings += 1

    def answered(self) -> bool:
        """An answer (the backend is there); True when this closed the breaker."""
        self.consecutive = 0
        was_open = self.open and not self.gave_up
        if was_open:
            self.opened_at = self.opened_wall = None
            self.probing = False
        return was_open

    def probe_due(self, now: float) -> bool:
        return self.open and not self.gave_up and not self.probing and now >= self.next_probe_at

    def probe_failed(self, now: float) -> None:
        self.probing = False
        self.backoff_s = min(self.backoff_s * 2, MAX_BACKOFF_S)
        self.next_probe_at = now + self.backoff_s

    def overdue(self, now: float, wait_s: float) -> bool:
        return self.open and not self.gave_up and self.opened_at is not None and now - self.opened_at > wait_s

    def describe(self, now: float) -> str:
        since = time.strftime("%H:%M", time.localtime(self.opened_wall or time.time()))
        who = f"{self.role} {self.name!r}"
        if self.gave_up:
            return f"{who} unreachable since {since}: gave up waiting (run.outage_wait_s)"
        wait = "probing now" if self.probing else f"next probe in {max(0, round(self.next_probe_at - now))} s"
        return f"{who} unreachable since {since}, paused; {wait}"
