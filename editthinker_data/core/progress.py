"""Live counters that long stages bump and a front end (rich in the CLI) polls.

Thread-safe and import-light; pure code reports through it without knowing who listens."""

from __future__ import annotations

import threading
import time
from collections import Counter


def calls_counter(role: str) -> str:
    """The counter a batch of `role` calls bumps (the dispatcher's and the table's one name)."""
    return f"{role}_calls"


class Progress:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._elsewhere: dict[str, dict[str, int]] = {}  # counters kept by another process
        self._notes: dict[str, list[str]] = {}  # lines for people, by the process that has them
        self.started = time.monotonic()
        self.total_pairs = 0
        self.stage = "starting"
        self.generate_started: float | None = None
        self.generate_ended: float | None = None

    def add(self, **counts: int) -> None:
        with self._lock:
            self._counts.update(counts)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def mirror(self, source: str, counts: dict[str, int]) -> None:
        """Show `counts`, the latest totals of another process (the dispatcher actor)."""
        with self._lock:
            self._elsewhere[source] = dict(counts)

    def set_notes(self, source: str, notes: list[str]) -> None:
        """Lines the live table shows under it (a backend that is out, and when it is asked again)."""
        with self._lock:
            self._notes[source] = list(notes)

    def notes(self) -> list[str]:
        with self._lock:
            return [n for notes in self._notes.values() for n in notes]

    def set_total(self, pairs: int) -> None:
        with self._lock:
            self.total_pairs = pairs

    def set_stage(self, stage: str) -> None:
        with self._lock:
            now = time.monotonic()
            if stage == "generating" and self.generate_started is None:
                self.generate_started = now
            elif self.stage == "generating" and stage != "generating":
                self.generate_ended = now  # the pairs/s rate covers generation only
            self.stage = stage

    def snapshot(self) -> dict[str, float | str]:
        now = time.monotonic()
        with self._lock:
            total = Counter(self._counts)
            for counts in self._elsewhere.values():
                total.update(counts)
            snap: dict[str, float | str] = dict(total)
            snap["total_pairs"] = self.total_pairs
            snap["stage"] = self.stage
            end = self.generate_ended or now
            snap["generate_s"] = end - self.generate_started if self.generate_started else 0.0
        snap["elapsed_s"] = now - self.started
        return snap


_current = Progress()


def current() -> Progress:
    return _current


def reset() -> Progress:
    global _current
    _current = Progress()
    return _current
