"""Where a build stands, read from its storage alone: the output lease (is a build writing
it, and which), the units' markers, the progress records and usage logs of unfinished
generate units (io/unit_progress.py), stats.json once finished. Nothing here talks to Ray,
Prefect or the build's processes, so `status` works from any machine that can read the
output (a laptop on s3:// while the build runs on a cluster) and on a build that died.

`read_status` returns one JSON-able document (FORMAT is its version); `StatusReader` keeps
the finished units' markers between reads, so `status --watch` on a build of thousands of
units reads only what changed.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from editthinker_data.core.layout import (
    BREAKERS_FILE,
    JOURNALS,
    LEASE_FILE,
    MANIFEST_FILE,
    MARKERS,
    POOL_UNIT,
    STATS_FILE,
    STEPS_FILE,
    VERSION_FILE,
    marker_name,
    part_name,
    progress_record,
    usage_prefix,
    version_name,
    version_number,
)
from editthinker_data.core.outcome import verdict
from editthinker_data.core.stats import merge_usage, priced_usage
from editthinker_data.io.storage import Storage, join_url, open_storage
from editthinker_data.stages.versions import read_latest

FORMAT = 1
WINDOW_S = 300.0  # edits per second over the last five minutes
# Exit codes of `status`: the build finished or is running; it stopped unfinished or finished
# unusable; nothing was ever built at OUTPUT.
EXIT = {"running": 0, "finished": 0, "stopped": 1, "unusable": 1, "not_started": 3}
BREAKERS_NOTE = "none open"


class StatusReader:
    """Reads one output again and again; finished generate units' markers are read once."""

    def __init__(self, url: str, endpoint_url: str | None = None, window_s: float = WINDOW_S):
        self.url, self.endpoint_url, self.window_s = url.rstrip("/"), endpoint_url, window_s
        self.root = open_storage(url, endpoint_url=endpoint_url)
        self.markers: dict[str, dict[str, Any]] = {}  # marker name -> report (immutable once written)
        self.pool = ThreadPoolExecutor(16, thread_name_prefix="status-read")

    def close(self) -> None:
        self.pool.shutdown()

    def read(self, clock=time.time) -> dict[str, Any]:
        version = _version(self.root)
        storage = self.root
        if version is not None:
            storage = open_storage(join_url(self.url, version["name"]), endpoint_url=self.endpoint_url)
        doc: dict[str, Any] = {"format": FORMAT, "output": storage.url, "version": version}
        writer = _writer(storage)
        doc["writer"] = writer
        now = writer["host_now"] if writer and writer["live"] else clock()
        pool = _read_json(storage, marker_name("pool", POOL_UNIT))  # read anew: --overwrite replaces it
        stats = storage.read_json(STATS_FILE) if storage.exists(STATS_FILE) else None
        if pool is None and stats is None:
            started = writer is not None or storage.exists(VERSION_FILE) or bool(storage.list(MARKERS))
            state = ("running" if writer and writer["live"] else "stopped") if started else "not_started"
            return {**doc, **_empty(state, "pooling" if started else None)}
        return {**doc, **self._progress(storage, pool or {}, stats, writer, now)}

    def _marker(self, storage: Storage, name: str) -> dict[str, Any] | None:
        key = f"{storage.url}/{name}"
        if key not in self.markers:
            report = _read_json(storage, name)
            if report is None:
                return None
            self.markers[key] = report
        return self.markers[key]

    def _read_all(self, storage: Storage, names: list[str]) -> list[Any]:
        return list(self.pool.map(lambda n: _read_json(storage, n), names))

    def _progress(self, storage, pool, stats, writer, now) -> dict[str, Any]:
        live = bool(writer and writer["live"])
        partitions = [part_name(p) for p in pool.get("partitions", [])]
        fingerprint = pool.get("fingerprint")
        names = set(storage.list(f"{MARKERS}/generate"))
        wanted = [marker_name("generate", u) for u in partitions if marker_name("generate", u) in names]
        reports = dict(zip(wanted, self.pool.map(lambda n: self._marker(storage, n), wanted), strict=True))
        finished = {
            u: r for u in partitions if (r := reports.get(marker_name("generate", u))) and r.get("fingerprint") == fingerprint
        }  # fmt: skip
        for name, report in reports.items():  # another config's marker: about to be cleared, read again
            if report and report.get("fingerprint") != fingerprint:
                self.markers.pop(f"{storage.url}/{name}", None)
        # Only the unfinished units that ever ran have a record and a usage log: list, then read those.
        listed = {*storage.list(f"{JOURNALS}/progress"), *storage.list(f"{JOURNALS}/usage")}
        open_units = [u for u in partitions if u not in finished]
        with_record = [u for u in open_units if progress_record(u) in listed]
        records = dict(
            zip(with_record, self._read_all(storage, [progress_record(u) for u in with_record]), strict=True)
        )
        usage_logs = [n for u in open_units if (n := f"{usage_prefix(u)}/usage.json") in listed]
        usages = self._read_all(storage, usage_logs)
        since = writer["started_ts"] if live else None
        running = [u for u, r in records.items() if r and r.get("outcome") == "running" and since is not None
                   and r.get("started", 0) >= since - 1]  # fmt: skip
        progress = [r["progress"] for r in finished.values() if r.get("progress")] + [
            r for r in records.values() if r
        ]
        pairs_done = sum(r["stats"]["input"] for r in finished.values()) + sum(
            r["done"] for r in records.values() if r
        )
        turns = sum(r.get("turns", 0) for r in finished.values()) + sum(
            r["turns"] for r in records.values() if r
        )
        stage = _stage(stats, live, len(finished), len(partitions), storage)
        done = stats is not None and not live
        problem = (
            verdict(stats["generate_failures"], _totals(storage))
            if done and "generate_failures" in stats
            else None
        )
        state = "running" if live else ("unusable" if problem else "finished") if done else "stopped"
        rate = _rate(progress, now, self.window_s, since) if live else None
        total_pairs = pool.get("pairs", 0)
        if rate and stage == "generating" and rate["pairs_per_s"] > 0:
            rate["eta_s"] = round((total_pairs - pairs_done) / rate["pairs_per_s"], 1)
        usage = merge_usage(*(r.get("usage", {}) for r in finished.values()), *(u for u in usages if u))
        prices = {k: v for p in progress for k, v in p.get("prices", {}).items()}
        stopped = [
            {"unit": u, "outcome": r["outcome"], **{k: r[k] for k in ("transient", "error") if k in r}}
            for u, r in records.items() if r and u not in running and r.get("outcome") != "running"
        ]  # fmt: skip
        return {
            "state": state,
            "stage": stage,
            "problem": problem,
            "units": {  # the generate stage's; the later stages' units are unmarked and quick
                "generate": {
                    "total": len(partitions),
                    "finished": len(finished),
                    "running": len(running),
                    "unfinished": len(partitions) - len(finished) - len(running),
                },
            },  # fmt: skip
            "running_units": sorted(running),
            "stopped_units": stopped,
            "pairs": {"total": total_pairs, "done": pairs_done},
            "turns": turns,
            "rate": rate,
            "failures": _failures(pool, finished, records),
            "usage": stats["llm_usage"] if done and "llm_usage" in stats else _priced(usage, prices),
            "elapsed_s": stats.get("elapsed_s") if stats else None,
            **_breakers(storage, live),
        }


def read_status(url: str, endpoint_url: str | None = None, window_s: float = WINDOW_S) -> dict[str, Any]:
    reader = StatusReader(url, endpoint_url, window_s)
    try:
        return reader.read()
    finally:
        reader.close()


def _read_json(storage: Storage, name: str) -> Any:
    try:
        return storage.read_json(name)
    except FileNotFoundError:  # gone between listing and reading: the unit just finished
        return None


def _empty(state: str, stage: str | None) -> dict[str, Any]:
    return {
        "state": state, "stage": stage, "problem": None,
        "units": {"generate": {"total": 0, "finished": 0, "running": 0, "unfinished": 0}},
        "running_units": [], "stopped_units": [], "pairs": {"total": 0, "done": 0}, "turns": 0,
        "rate": None, "failures": [], "usage": {}, "elapsed_s": None, "breakers": [],
        "breakers_note": BREAKERS_NOTE,
    }  # fmt: skip


def _breakers(storage: Storage, live: bool) -> dict[str, Any]:
    """The dispatcher's open circuit breakers (distributed/breaker_record.py): each with its
    backend, since when, and the next probe. A stopped build's record says which backend it
    gave up waiting for; a running build's next probe is only as fresh as its last change."""
    record = _read_json(storage, BREAKERS_FILE)
    breakers = (record or {}).get("breakers") or []
    if not breakers:
        return {"breakers": [], "breakers_note": BREAKERS_NOTE}
    if not live:
        for b in breakers:
            b["next_probe"] = None
    when = datetime.fromtimestamp(record.get("written", 0)).isoformat(timespec="seconds")
    note = f"recorded by the dispatcher at {when}" + ("" if live else "; the build is not running")
    return {"breakers": breakers, "breakers_note": note}


def _version(root: Storage) -> dict[str, Any] | None:
    """The version a versioned root's status is about: the newest one started (a build in
    progress, or one that stopped), else the one `latest` names; None for a plain output."""
    if any(root.exists(n) for n in (VERSION_FILE, LEASE_FILE, STATS_FILE, marker_name("pool", POOL_UNIT))):
        return None
    latest = read_latest(root)
    newest = (version_number(latest) or 0) if latest else 0
    while root.exists(f"{version_name(newest + 1)}/{VERSION_FILE}"):
        newest += 1
    return {"name": version_name(newest), "latest": latest} if newest else None


def _writer(storage: Storage) -> dict[str, Any] | None:
    """Who holds the output lease, and whether it is still beating (by the store's clock)."""
    current = storage.read_versioned(LEASE_FILE)
    if current is None:
        return None
    try:
        holder = json.loads(current.data)
    except ValueError:
        holder = {}
    ttl = float(holder.get("ttl_s") or 120.0)
    beat = _timestamp(holder.get("beat"))
    return {
        "command": holder.get("command"), "config": holder.get("config"), "host": holder.get("host"),
        "pid": holder.get("pid"), "started": holder.get("started"), "beat_age_s": round(current.age_s, 1),
        "ttl_s": ttl, "live": current.age_s < ttl, "started_ts": _timestamp(holder.get("started")) or 0.0,
        # the build host's clock now, so rates compare its times with its times
        "host_now": (beat + current.age_s) if beat else time.time(),
    }  # fmt: skip


def _timestamp(text: str | None) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp() if text else None
    except ValueError:
        return None


def _stage(stats, live: bool, generated: int, units: int, storage: Storage) -> str:
    """The flow's stage (flows/build_dataset.py); select and write steps leave no markers,
    so the selection's table tells them apart, and finalizing counts as writing shards."""
    if stats is not None:
        return "exports and card" if live else "done"
    if generated < units:
        return "generating"
    return "writing shards" if storage.exists(STEPS_FILE) else "selecting"


def _totals(storage: Storage) -> dict[str, int]:
    return storage.read_json(MANIFEST_FILE).get("totals", {}) if storage.exists(MANIFEST_FILE) else {}


def _rate(
    progress: list[dict[str, Any]], now: float, window_s: float, since: float | None
) -> dict[str, Any] | None:
    """Turns (one edit each) and pairs finished per second over the last `window_s` (or since
    this build started, if later), from every unit's timed history. `now` is the build
    host's clock as the lease tells it, to a second; its own records may run slightly ahead."""
    now = max([now, *(r["history"][-1][0] for r in progress if r.get("history"))])
    start = max(now - window_s, since or 0.0)
    span = now - start
    if span < 1.0:
        return None
    turns = pairs = 0
    for record in progress:
        points = record.get("history", [])
        if not points or points[-1][0] < start:
            continue
        before = [p for p in points if p[0] <= start]
        base = before[-1] if before else points[0]
        pairs += points[-1][1] - base[1]
        turns += points[-1][2] - base[2]
    return {"window_s": round(span, 3), "edits_per_s": round(turns / span, 4),
            "pairs_per_s": round(pairs / span, 4), "eta_s": None}  # fmt: skip


def _failures(pool, finished, records) -> list[dict[str, Any]]:
    """Final failures so far by stage, backend and reason; then pairs a backend could not
    answer in a run that stopped (a rerun retries them)."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for reason, n in pool.get("stats", {}).get("failed", {}).items():
        counts["pool", "sources", reason] += n
    for report in finished.values():
        if report.get("progress"):
            by_backend = report["progress"]["failures"]
        else:  # a marker written before units kept progress: reasons only
            by_backend = {"not recorded": Counter(f["reason"] for f in report.get("failures", []))}
        for backend, reasons in by_backend.items():
            for reason, n in reasons.items():
                counts["generate", backend, reason] += n
    for record in records.values():
        for backend, reasons in (record or {}).get("failures", {}).items():
            for reason, n in reasons.items():
                counts["generate", backend, reason] += n
        for backend, reasons in (record or {}).get("transient", {}).items():
            for reason, n in reasons.items():
                counts["generate (unfinished: a rerun retries)", backend, reason] += n
    return [{"stage": s, "backend": b, "reason": r, "count": n} for (s, b, r), n in sorted(counts.items())]


def _priced(usage: dict[str, Any], prices: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Usage so far per model role, with its cost at the build's own prices (as stats.json
    prices it once the build finishes)."""
    return priced_usage(
        (backend.partition("/")[0], entry["counters"], *prices[backend])
        for backend, entry in sorted(usage.items())
        if backend in prices
    )
