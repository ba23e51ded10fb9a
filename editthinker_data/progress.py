"""Live counters that long stages bump and a front end (rich in the CLI) polls.

Thread-safe and import-light; pure code reports through it without knowing who listens."""

from __future__ import annotations

import threading
import time
from collections import Counter


class Progress:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.started = time.monotonic()
        self.total_pairs = 0

    def add(self, **counts: int) -> None:
        with self._lock:
            self._counts.update(counts)

    def set_total(self, pairs: int) -> None:
        with self._lock:
            self.total_pairs = pairs

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            snap: dict[str, float] = dict(self._counts)
            snap["total_pairs"] = self.total_pairs
        snap["elapsed_s"] = time.monotonic() - self.started
        return snap


_current = Progress()


def current() -> Progress:
    return _current


def reset() -> Progress:
    global _current
    _current = Progress()
    return _current
