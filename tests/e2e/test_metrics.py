"""The build's Prometheus metrics: the Grafana dashboard charts only metrics the code defines,
the dispatcher hands its counts to Ray at most once a second, and after a build on a Ray
head started with a known metrics export port, the metric names are on that port."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from editthinker_data.config import BackendSpec
from editthinker_data.distributed import metrics
from editthinker_data.distributed.metrics import (
    BUSY,
    EDITS,
    FAILURES,
    FLUSH_S,
    IN_FLIGHT,
    METRICS,
    REQUESTS,
    BuildMetrics,
)
from tests.support.paths import ROOT

DASHBOARD = ROOT / "infra" / "grafana" / "editthinker.json"
BIN = Path(sys.executable).parent
SERIES = {name for m in METRICS for name in m.series()}


def _exprs(dashboard: dict) -> list[str]:
    panels = [p for row in dashboard["panels"] for p in [row, *row.get("panels", [])]]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def test_every_dashboard_expression_names_a_metric_the_code_defines():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _exprs(dashboard)
    assert exprs, "the dashboard has no queries"
    charted: set[str] = set()
    for expr in exprs:
        names = set(re.findall(r"\b(ray_[a-z_]+)", expr))
        assert names, f"query names no ray_ metric: {expr}"
        unknown = names - SERIES
        assert not unknown, f"query {expr!r} names {unknown}, which the code does not define"
        charted |= names
    uncharted = [m.name for m in METRICS if not m.series() & charted]
    assert not uncharted, f"metrics with no panel: {uncharted}"
    # Every label a query filters or groups by is a tag key of the metrics.
    tags = {t for m in METRICS for t in m.tags}
    for expr in exprs:
        for by in re.findall(r"by \(([^)]*)\)", expr):
            assert {t.strip() for t in by.split(",")} <= tags | {"le"}, expr  # le: histogram buckets


class Recorder:
    """Stands in for one of Ray's metric objects: what was handed to it."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, dict]] = []

    def inc(self, value, tags=None):
        self.calls.append((value, tags))

    set = observe = inc


def test_counts_are_summed_here_and_handed_to_ray_once_per_flush():
    now = [100.0]
    key = ("editor", "careful")
    meter = BuildMetrics({key: BackendSpec(kind="procedural")}, clock=lambda: now[0])
    meter._m = {m.name: Recorder() for m in METRICS}
    assert meter.due()
    for _ in range(50):
        meter.pool(REQUESTS, key, 4)
    meter.pool(FAILURES, key, kind="transient")
    meter.pool(EDITS, key, 0)  # nothing to count: nothing handed on (Ray refuses inc(0))
    assert not meter._m[REQUESTS.name].calls  # nothing reaches Ray between flushes
    meter.flush(7, 16, {key: (3, [1, 0, 2, 0], False)})
    tags = {"role": "editor", "backend": "careful", "pool": "editor/careful"}
    assert meter._m[REQUESTS.name].calls == [(200, tags)]
    assert meter._m[FAILURES.name].calls == [(1, {**tags, "kind": "transient"})]
    assert meter._m[EDITS.name].calls == []
    assert meter._m[BUSY.name].calls == [(0.5, tags)]  # 2 of 4 actors have a batch out
    assert meter._m[IN_FLIGHT.name].calls == [(7, None)]
    assert not meter.due()
    now[0] += FLUSH_S
    assert meter.due()
    meter.flush(0, 16, {key: (0, [0, 0, 0, 0], False)})
    assert meter._m[REQUESTS.name].calls == [(200, tags)]  # sums start again after a flush


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def _kill_head(temp_dir: str) -> None:
    from tests.e2e.test_ray_cluster import _kill_tree_under

    _kill_tree_under(temp_dir)
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow(seconds=60)
def test_metric_names_appear_on_the_metrics_export_port_after_a_build(tmp_path):
    port, metrics_port = _free_port(), _free_port()
    temp_dir = tempfile.mkdtemp(prefix="etd-mx-", dir="/tmp")  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_", "EDITTHINKER"))}
    # Workers send their metrics to the agent every second (10 s by default).
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", RAY_metrics_report_interval_ms="1000")
    head = subprocess.run(
        [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
         f"--metrics-export-port={metrics_port}", "--num-cpus=2", "--include-dashboard=false",
         f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    try:
        assert head.returncode == 0, head.stdout + head.stderr
        client = dict(env, EDITTHINKER__RUN__RAY_ADDRESS=f"127.0.0.1:{port}", COLUMNS="100")
        client.update(EDITTHINKER__SOURCE__MAX_PAIRS="12", EDITTHINKER__OUTPUT__REPORT="false")
        build = subprocess.Popen(
            [str(BIN / "editthinker-data"), "build", "configs/demo.yaml", "--output", str(tmp_path / "out")],
            cwd=ROOT, env=client, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        seen: set[str] = set()
        text = ""
        # Gauges leave the port two report intervals after the dispatcher stops; counters
        # and histograms stay. So names are gathered while the build runs, and after.
        deadline = time.monotonic() + 400
        while build.poll() is None and time.monotonic() < deadline:
            text = _scrape(metrics_port) or text
            seen |= set(re.findall(r"^(ray_editthinker_[a-z_]+)", text, re.M))
            time.sleep(0.5)
        out = build.communicate(timeout=30)[0]
        assert build.returncode == 0, out
        # The agent may flush late: poll a little for the counters' last export.
        counters_deadline = time.monotonic() + 20
        while time.monotonic() < counters_deadline:
            text = _scrape(metrics_port) or text
            seen |= set(re.findall(r"^(ray_editthinker_[a-z_]+)", text, re.M))
            if {"ray_editthinker_edits_total", "ray_editthinker_batch_seconds_count"} <= seen:
                break
            time.sleep(0.5)
        # What a healthy procedural build records (it has no tokens, no price, no failures
        # and no dead actors, and Ray shows a counter only once it has counted something).
        recorded = [m for m in METRICS if m.name not in {
            "editthinker_tokens", "editthinker_cost_usd", "editthinker_failures", "editthinker_actors_replaced",
        }]  # fmt: skip
        missing = sorted(name for m in recorded for name in m.series() if name not in seen)
        assert not missing, f"not on the metrics port: {missing}\n{text[-3000:]}"
        assert seen <= SERIES, seen - SERIES  # every name on the port is one the code defines
        edits = [
            float(v)
            for v in re.findall(
                r'^ray_editthinker_edits_total\{[^}]*pool="editor/\w+"[^}]*\} (\S+)', text, re.M
            )
        ]
        assert edits and sum(edits) > 0, text[-3000:]
    finally:
        _kill_head(temp_dir)


def test_instruments_are_made_once_per_process():
    assert metrics.instruments() is metrics.instruments()
    assert set(metrics.instruments()) == {m.name for m in METRICS}
