"""One writer per output: the lease on local disk and on a real S3 API (moto's server), held
by a real second process that beats, then is killed as a crash would kill it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from editthinker_data.core.layout import LEASE_FILE
from editthinker_data.io.lease import OutputBusy, OutputLease, holder_info
from editthinker_data.io.storage import open_storage
from tests.support.paths import BUCKET, ROOT

HOLDER = """
import sys, time
from editthinker_data.io.lease import OutputLease, holder_info
from editthinker_data.io.storage import open_storage
holder = holder_info("nightly", "abc123", "build")
if sys.argv[3] == "elsewhere":  # a build on another node: only its TTL can free the output
    holder["host"] = "build-node-7"
lease = OutputLease(open_storage(sys.argv[1]), holder, ttl_s=float(sys.argv[2]), heartbeat_s=0.3).acquire()
print("held", flush=True)
time.sleep(120)
"""


def _output(kind: str, tmp_path, request) -> str:
    if kind == "local":
        return str(tmp_path / "out")
    request.getfixturevalue("s3_endpoint")
    return f"s3://{BUCKET}/lease-{tmp_path.name}"


def _holder(url: str, ttl: float, where: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, str(ttl), where], stdout=subprocess.PIPE, text=True, env=env
    )


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_second_writer_is_refused_while_the_first_beats_and_takes_over_after_a_crash(kind, tmp_path, request):
    url = _output(kind, tmp_path, request)
    ttl = 2.0
    first = _holder(url, ttl, "elsewhere")
    try:
        assert first.stdout.readline().strip() == "held"
        storage = open_storage(url)
        second = OutputLease(storage, holder_info("nightly", "abc123", "build"), ttl_s=ttl)

        started = time.monotonic()
        with pytest.raises(OutputBusy) as refused:
            second.acquire()
        assert time.monotonic() - started < 2  # at once, not after a wait
        message = str(refused.value)
        for part in (
            url,
            f"pid {first.pid}",
            "config nightly",
            "on host build-node-7",
            "started",
            "last beat",
        ):
            assert part in message

        time.sleep(ttl + 0.3)  # longer than the TTL: only the heartbeat keeps the lease
        with pytest.raises(OutputBusy):
            second.acquire()

        first.send_signal(signal.SIGKILL)  # a crash: no release, no more beats
        first.wait()
        killed = time.monotonic()
        with pytest.raises(OutputBusy, match="expires"):
            second.acquire()
        while True:
            try:
                second.acquire()
                break
            except OutputBusy:
                assert time.monotonic() - killed < ttl + 3, "a crashed build's lease never expired"
                time.sleep(0.2)
        assert time.monotonic() - killed >= ttl - 1.2  # the store's clock ticks in whole seconds on S3
        assert f"pid {first.pid}" in second.took_over
        assert json.loads(storage.read_bytes(LEASE_FILE))["pid"] == os.getpid()
        second.release()
        assert not storage.exists(LEASE_FILE)
    finally:
        first.kill()
        first.wait()


def test_a_build_killed_on_this_host_is_taken_over_at_once(tmp_path):
    url = str(tmp_path / "out")
    first = _holder(url, 120, "here")
    try:
        assert first.stdout.readline().strip() == "held"
        second = OutputLease(open_storage(url), holder_info("nightly", "abc123", "build"), ttl_s=120)
        with pytest.raises(OutputBusy):
            second.acquire()  # alive: refused, however old its lease
        first.send_signal(signal.SIGKILL)
        first.wait()
        second.acquire()  # dead, on this host: no need to wait out its 120 s
        assert f"pid {first.pid}" in second.took_over
        second.release()
    finally:
        first.kill()
        first.wait()


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_lease_taken_over_during_a_stall_is_reported_lost_and_not_deleted(kind, tmp_path, request):
    storage = open_storage(_output(kind, tmp_path, request))
    stalled = OutputLease(storage, holder_info("a", "f1", "build"), ttl_s=1.0, heartbeat_s=60)
    stalled.acquire()  # its first beat is a minute away: a stall longer than the TTL
    time.sleep(1.3)  # > the TTL, also on S3's whole-second clock
    usurper = OutputLease(storage, holder_info("b", "f2", "pool"), ttl_s=30).acquire()
    assert "config a" in usurper.took_over
    assert stalled.renew() is False
    assert "config b" in stalled.lost
    stalled.release()  # must not delete the usurper's lease
    assert json.loads(storage.read_bytes(LEASE_FILE))["config"] == "b"
    usurper.release()
    assert not storage.exists(LEASE_FILE)


def test_racing_writers_on_local_disk_get_exactly_one_lease(tmp_path):
    storage = open_storage(tmp_path / "out")
    barrier = threading.Barrier(8)
    won, refused = [], []

    def contend(i: int) -> None:
        lease = OutputLease(storage, holder_info(f"c{i}", "f", "build"), ttl_s=30)
        barrier.wait()
        try:
            won.append(lease.acquire())
        except OutputBusy as err:
            refused.append(str(err))

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 7
    winner = won[0].holder["config"]
    assert all(f"config {winner}" in r for r in refused)
    won[0].release()
