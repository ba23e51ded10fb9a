"""The build's Prometheus metrics, through Ray's metrics API (`ray.util.metrics`), so they
appear wherever operators already look: each node's metrics agent serves them on its metrics
export port (`ray start --metrics-export-port`), Ray's dashboard and any Prometheus that
scrapes the cluster show them, and `infra/grafana/editthinker.json` charts them.

Ray names a custom metric `ray_<name>` on that port; a counter also gets Prometheus'
`_total`, a histogram `_bucket`, `_sum` and `_count` (`series`).

The dispatcher is hot, and a Ray metric record costs 10-20 us on a loaded core: events only
add to plain dicts here (O(1)), and `flush` hands the sums to Ray and sets the gauges at most
every FLUSH_S, from the dispatcher's own loop. Only the histograms record as they happen, one
observation per batch (not per request). Ray's core worker sends what it holds to the agent
every `metrics_report_interval_ms` (10 s by default), so the last seconds before the
dispatcher stops may not reach it; the build summary has the exact figures.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ray.util.metrics import Counter, Gauge, Histogram

from editthinker_data.backends import BackendError, TransientBackendError, UnusableAnswer
from editthinker_data.config import BackendSpec
from editthinker_data.distributed.refs import InputLost

FLUSH_S = 1.0  # gauges set and counter sums handed to Ray at most this often
RAY_PREFIX = "ray_"  # what Ray puts before a custom metric's name on the metrics port
POOL = ("role", "backend", "pool")  # a pool's tags: role, backend name, "role/backend"
SECONDS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600]

Tags = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # counter | gauge | histogram
    description: str
    tags: tuple[str, ...] = POOL

    def series(self) -> set[str]:
        """The names it has on the metrics port."""
        base = RAY_PREFIX + self.name
        if self.kind == "counter":
            return {f"{base}_total"}
        if self.kind == "histogram":
            return {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
        return {base}


ACTORS = Metric("editthinker_pool_actors", "gauge", "Actors in the pool (num_actors).")
BUSY = Metric(
    "editthinker_pool_busy_fraction",
    "gauge",
    "Share of the pool's actors with a batch sent and not yet answered, sampled every second. "
    "rate(ray_editthinker_pool_busy_seconds_total) / actors is the measured share of time busy.",
)
BUSY_S = Metric(
    "editthinker_pool_busy_seconds",
    "counter",
    "Seconds the pool's actors spent running batches (measured inside the actor).",
)
QUEUE = Metric("editthinker_pool_queue_depth", "gauge", "Requests queued at the dispatcher for the pool.")
IN_FLIGHT = Metric("editthinker_rollouts_in_flight", "gauge", "Rollouts in flight in the build.", ())
TARGET = Metric(
    "editthinker_in_flight_target",
    "gauge",
    "The build's in-flight budget (run.max_in_flight, or auto's).",
    (),
)
BREAKER = Metric(
    "editthinker_breaker_open",
    "gauge",
    "1 while the backend's circuit breaker is open (its requests paused), else 0. "
    "See distributed/breakers.py.",
)
REQUESTS = Metric("editthinker_requests", "counter", "Requests sent to the pool's actors.")
BATCHES = Metric("editthinker_batches", "counter", "Batches sent to the pool's actors.")
FAILURES = Metric(
    "editthinker_failures",
    "counter",
    "Requests that came back without an answer, by kind: transient (retried or left for a rerun), "
    "unusable (unparseable answer), error, input_lost (an image lost with its node), actor_died "
    "(the batch's actor died; its requests are retried), ray_error.",
    (*POOL, "kind"),
)
EDITS = Metric("editthinker_edits", "counter", "Edits made (editor requests answered with an image).")
TOKENS = Metric(
    "editthinker_tokens",
    "counter",
    "Model tokens, by direction: in (prompt) or out (completion).",
    (*POOL, "direction"),
)
COST = Metric(
    "editthinker_cost_usd", "counter", "Estimated cost in USD, from the backend's price per million tokens."
)
REPLACED = Metric("editthinker_actors_replaced", "counter", "Dead actors replaced with fresh ones.")
ROLLOUTS = Metric(
    "editthinker_rollouts_finished",
    "counter",
    "Rollouts that ended, by outcome: done or failed.",
    ("outcome",),
)
TURNS = Metric("editthinker_turns", "counter", "Turns of the rollouts that ended.", ())
BATCH_S = Metric(
    "editthinker_batch_seconds", "histogram", "A batch's service time: how long it ran inside its actor."
)
RESPONSE_S = Metric(
    "editthinker_response_seconds",
    "histogram",
    "A request's time from queued at the dispatcher to answered (one observation per batch: its requests' mean).",
)

METRICS: tuple[Metric, ...] = (
    ACTORS, BUSY, BUSY_S, QUEUE, IN_FLIGHT, TARGET, BREAKER, REQUESTS, BATCHES, FAILURES, EDITS,
    TOKENS, COST, REPLACED, ROLLOUTS, TURNS, BATCH_S, RESPONSE_S,
)  # fmt: skip

_instruments: dict[str, Any] = {}
_instruments_lock = threading.Lock()


def instruments() -> dict[str, Any]:
    """Ray's metric objects, made once per process."""
    with _instruments_lock:
        if not _instruments:
            for m in METRICS:
                if m.kind == "counter":
                    _instruments[m.name] = Counter(m.name, m.description, m.tags)
                elif m.kind == "gauge":
                    _instruments[m.name] = Gauge(m.name, m.description, m.tags)
                else:
                    _instruments[m.name] = Histogram(m.name, m.description, SECONDS, m.tags)
        return _instruments


def failure_kind(result: Any) -> str | None:
    """What kind of failure a request's result is; None for an answer."""
    if isinstance(result, InputLost):
        return "input_lost"
    if isinstance(result, TransientBackendError):
        return "transient"
    if isinstance(result, UnusableAnswer):
        return "unusable"
    if isinstance(result, BackendError):
        return "error"
    return None


Key = tuple[str, str]


class BuildMetrics:
    """One process's share of the build's metrics: counters summed here, handed to Ray by
    `flush` (see the module docstring). Thread-safe: units' threads and the dispatcher's."""

    def __init__(self, specs: Mapping[Key, BackendSpec], clock=time.monotonic):
        self.specs = dict(specs)
        self.clock = clock
        self.tags: dict[Key, Tags] = {
            (r, n): (("role", r), ("backend", n), ("pool", f"{r}/{n}")) for r, n in specs
        }
        self._sums: dict[tuple[str, Tags], float] = defaultdict(float)
        self._lock = threading.Lock()
        self._next_flush = 0.0
        self._m = instruments()

    def count(self, metric: Metric, value: float = 1, tags: Tags = ()) -> None:
        if value:
            with self._lock:
                self._sums[metric.name, tags] += value

    def pool(self, metric: Metric, key: Key, value: float = 1, **extra: str) -> None:
        self.count(metric, value, self.tags[key] + tuple(extra.items()))

    def observe(self, metric: Metric, key: Key, seconds: float) -> None:
        self._m[metric.name].observe(seconds, dict(self.tags[key]))

    def usage(self, key: Key, cost: Mapping[str, float]) -> None:
        """One batch's counter deltas: its tokens and their price."""
        tokens_in, tokens_out = cost.get("tokens_in", 0), cost.get("tokens_out", 0)
        if not (tokens_in or tokens_out):  # editors, procedural and cached answers: nothing to count
            return
        self.pool(TOKENS, key, tokens_in, direction="in")
        self.pool(TOKENS, key, tokens_out, direction="out")
        price = self.specs[key].price
        self.pool(
            COST, key, tokens_in / 1e6 * price.input_per_mtok + tokens_out / 1e6 * price.output_per_mtok
        )

    def due(self) -> bool:
        return self.clock() >= self._next_flush

    def flush(self, in_flight: int, target: int, pools: Mapping[Key, tuple[int, list[int], bool]]) -> None:
        """The gauges (`pools`: each pool's queued and parked requests, batches out per actor,
        and whether its breaker is open) and the counter sums since the last flush, to Ray."""
        self._next_flush = self.clock() + FLUSH_S
        m = self._m
        m[IN_FLIGHT.name].set(in_flight)
        m[TARGET.name].set(target)
        for key, (queued, outstanding, breaker_open) in pools.items():
            pool_tags = dict(self.tags[key])
            m[ACTORS.name].set(len(outstanding), pool_tags)
            m[BUSY.name].set(sum(1 for n in outstanding if n) / max(1, len(outstanding)), pool_tags)
            m[QUEUE.name].set(queued, pool_tags)
            m[BREAKER.name].set(int(breaker_open), pool_tags)
        with self._lock:
            sums, self._sums = self._sums, defaultdict(float)
        for (name, tags), value in sums.items():
            m[name].inc(value, dict(tags))
