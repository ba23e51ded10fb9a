"""One writer per output: a lease object (`_lease.json`) at the output root, created before a
build writes anything, renewed by a heartbeat thread and deleted at the end.

Two builds racing for the same output both try to create the lease with a conditional write
(`Storage.write_if`); the store lets exactly one win, so the other is refused at once with a
message naming the winner. A build that crashed stops beating; once its lease is older than
its TTL (judged by the store's clock, so the hosts' clocks need not agree) the next build
replaces it, again conditionally, and resumes from the units already marked; on the host
where it ran, a build whose process is gone is replaced at once. Pure: no
Prefect, no Ray.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from editthinker_data.core.layout import LEASE_FILE
from editthinker_data.io.storage import Storage

TTL_S = 120.0  # a crashed build's output is free again this long after its last beat
EXIT_BUSY = 75  # sysexits EX_TEMPFAIL: the same command works once the other build is done


class OutputBusy(RuntimeError):
    """Another build holds the output's lease."""

    exit_code = EXIT_BUSY


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _pid_namespace() -> str | None:
    """Which pids this process can see: two containers on one host share a host name but
    not their pids, so a pid is only checked within the same namespace."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def holder_info(config_name: str, fingerprint: str, command: str) -> dict[str, Any]:
    """Who a lease names: enough to find the build (host, pid) and to judge it."""
    return {
        "host": socket.gethostname(),
        "pidns": _pid_namespace(),
        "pid": os.getpid(),
        "started": _now(),
        "config": config_name,
        "fingerprint": fingerprint,
        "command": command,
    }


def describe(holder: dict[str, Any], age_s: float) -> str:
    """The running build, in one clause, for a refusal or a take-over notice."""
    return (
        f"{holder.get('command', 'a build')} of config {holder.get('config', '?')} "
        f"(fingerprint {holder.get('fingerprint', '?')}) on host {holder.get('host', '?')}, "
        f"pid {holder.get('pid', '?')}, started {holder.get('started', '?')}, "
        f"last beat {age_s:.0f}s ago"
    )


class OutputLease:
    """A context manager: `with OutputLease(storage, holder_info(...)):` holds the output.

    `ttl_s` is how long the lease outlives its last beat; the heartbeat runs every
    `heartbeat_s` (a quarter of the TTL by default, so three beats can be missed). `took_over`
    names the crashed build whose lease this one replaced; `lost` says why the lease was lost
    while held (another build took it over after a long stall), None while it is ours."""

    def __init__(
        self, storage: Storage, holder: dict[str, Any], ttl_s: float = TTL_S, heartbeat_s: float | None = None
    ):
        if ttl_s <= 0:
            raise ValueError(f"lease ttl_s must be positive (got {ttl_s})")
        self.storage = storage
        self.ttl_s = float(ttl_s)
        self.heartbeat_s = float(heartbeat_s) if heartbeat_s else self.ttl_s / 4
        self.holder = {**holder, "token": uuid.uuid4().hex, "ttl_s": self.ttl_s}
        self.version: str | None = None
        self.took_over: str | None = None
        self.lost: str | None = None
        self.beat_errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({**self.holder, "beat": _now()}, sort_keys=True).encode()

    def acquire(self) -> OutputLease:
        """Take the lease or raise OutputBusy naming the build that holds it."""
        if self.version is not None:
            return self  # held already: one heartbeat thread per lease
        self._stop.clear()
        for _ in range(5):  # each round either wins, is refused, or lost a race and rereads
            current = self.storage.read_versioned(LEASE_FILE)
            if current is None:
                version = self.storage.write_if(LEASE_FILE, self._body(), None)
            else:
                theirs = _parse(current.data)
                if theirs.get("token") == self.holder["token"]:  # our create's reply was lost
                    version = current.version
                else:
                    ttl = float(theirs.get("ttl_s") or self.ttl_s)
                    if current.age_s < ttl and not _died_here(theirs):
                        raise OutputBusy(_refusal(self.storage.url, theirs, current.age_s, ttl))
                    version = self.storage.write_if(LEASE_FILE, self._body(), current.version)
                    if version is not None:
                        self.took_over = describe(theirs, current.age_s)
            if version is not None:
                self.version = version
                self._thread = threading.Thread(target=self._beat, name="output-lease", daemon=True)
                self._thread.start()
                return self
        raise OutputBusy(f"{self.storage.url}: the output lease keeps changing hands; try again")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if not self.renew():
                    return
            except Exception:  # a store hiccup: the next beat tries again within the TTL
                self.beat_errors += 1

    def renew(self) -> bool:
        """One beat: False (and `lost` says who has it now) when the lease is no longer ours."""
        if self.lost is not None:
            return False
        version = self.storage.write_if(LEASE_FILE, self._body(), self.version)
        if version is not None:
            self.version = version
            return True
        current = self.storage.read_versioned(LEASE_FILE)
        who = describe(_parse(current.data), current.age_s) if current else "nobody (it was deleted)"
        self.lost = f"the lease on {self.storage.url} was taken over by {who}"
        return False

    def release(self) -> None:
        """Stop beating and delete the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.version is not None and self.lost is None:
            self.storage.delete_if(LEASE_FILE, self.version)
        self.version = None

    def __enter__(self) -> OutputLease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _died_here(holder: dict[str, Any]) -> bool:
    """The holder ran on this host, in this pid namespace, and its process is gone: a build
    killed here is resumed at once instead of a TTL later (a reused pid only means waiting)."""
    if holder.get("host") != socket.gethostname() or holder.get("pidns") is None:
        return False
    if holder.get("pidns") != _pid_namespace() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _parse(data: bytes) -> dict[str, Any]:
    """A lease's holder; an unreadable lease (a torn write by an older tool) names nobody
    and still counts until its TTL runs out."""
    try:
        holder = json.loads(data)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _refusal(url: str, theirs: dict[str, Any], age_s: float, ttl_s: float) -> str:
    left = max(ttl_s - age_s, 0.0)
    return (
        f"{url} is being written by another build: {describe(theirs, age_s)}. Wait for it to "
        f"finish, or stop it (pid {theirs.get('pid', '?')} on {theirs.get('host', '?')}) and run "
        f"this command again; if it crashed, its lease expires {left:.0f}s from now "
        f"({ttl_s:.0f}s after its last beat) and the next run resumes its build"
    )
