"""Long-lived Ray actors for every backend: the model is set up once per actor, then the
actor serves batches. A pool is the actors of one backend (one editor, the expert, the
scorer) with the resources its config asks for."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from editthinker_data.backends import BackendContext, BackendError, BackendFatal, create_backend
from editthinker_data.backends.transport.edit_store import StoredEdits, with_edit_store
from editthinker_data.config import BackendSpec, BuildConfig
from editthinker_data.core.schema import Role
from editthinker_data.distributed.load import PER_ACTOR_OUTSTANDING
from editthinker_data.distributed.metrics import REPLACED, BuildMetrics
from editthinker_data.distributed.refs import InputLost, resolve

# What a call meets when its actor is gone: the process crashed or was killed, the actor is
# unreachable (its node is going), or its node died after the actor answered and took the
# result with it (a result lives in the object store of the node that made it).
DEATHS = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError)
# A replacement that dies before it comes up is replaced again, this many times in a row at
# most: a lost node may take the first replacements with it (Ray places them before it
# knows the node is gone), but a set-up that always crashes must stop the unit.
MAX_START_FAILURES = 5
START_TIMEOUT_S = 600.0  # a replacement Ray cannot place: the cluster lost what it asks for


class BackendActor:
    """Serves batches one at a time on its device. An editor takes PER_ACTOR_OUTSTANDING
    calls at once (a threaded actor): the next batch's images are fetched, and the last
    batch's results stored, while the device runs the current one, so the device never
    waits on the object store between batches."""

    def __init__(self, role: str, spec: BackendSpec, seed: int, context: BackendContext | None = None):
        self.role = role
        self.device = threading.Lock()  # one batch on the model at a time
        self.backend = with_edit_store(role, spec, create_backend(role, spec, seed, context), context)
        started = time.perf_counter()
        self.backend.setup()
        self.setup_seconds = time.perf_counter() - started
        self.setups = 1
        self.calls = 0

    def info(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "name": self.backend.name,
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "setups": self.setups,
            "setup_seconds": self.setup_seconds,
            "calls": self.calls,
            "counters": self._counters(),
        }

    def _counters(self) -> dict[str, Any]:
        return self.backend.stats() if hasattr(self.backend, "stats") else {}

    def run_counted(self, requests: list[Any]) -> tuple[list[Any], dict[str, float], float]:
        """Results with what this batch cost (the backend's counters before and after) and how
        long it ran here: the caller keeps usage per unit, so it survives reruns and replaced
        actors, and measures busy time without the queueing in front of the actor. Image
        fields that are object references are fetched here; a request whose image was lost
        gets an `InputLost` in place of its result. An editor's edit store is read before the
        device lock is taken and written after it is let go (each new edit before its answer
        leaves here), so the device never waits on storage and no edit is made twice."""
        requests, lost = resolve(requests)  # outside the lock: overlaps the running batch
        live = [r for i, r in enumerate(requests) if i not in lost]
        stored = self.backend if isinstance(self.backend, StoredEdits) else None
        lookup = stored.lookup(live) if stored is not None and live else None
        todo = live if lookup is None else [live[i] for i in lookup.todo]
        made: list[Any] = []
        cost: dict[str, float] = {}
        seconds = 0.0
        if todo:  # a batch the store answered whole never waits for the device
            with self.device:
                before = self._device_counters()
                started = time.perf_counter()
                made = self.run_on_device(todo)
                seconds = time.perf_counter() - started
                after = self._device_counters()
            cost = {k: v - before.get(k, 0) for k, v in after.items() if isinstance(v, int | float)}
        if stored is not None and lookup is not None:
            made, counts = stored.keep(lookup, made)
            cost.update(counts)
        answers = iter(made)
        results = [lost[i] if i in lost else next(answers) for i in range(len(requests))]
        return results, cost, seconds

    def _device_counters(self) -> dict[str, Any]:
        """The counters the device's work moves (an edit store's own are counted per batch)."""
        if isinstance(self.backend, StoredEdits):
            inner = self.backend.editor
            return inner.stats() if hasattr(inner, "stats") else {}
        return self._counters()

    def run_split(self, requests: list[Any]) -> tuple[Any, ...]:
        """`run_counted` with every result its own object (call with num_returns=n+1): the
        scheduler gets the last, small one (cost, seconds, and the results that are errors
        or lost inputs, by position) and passes the edits on as references it never reads."""
        results, cost, seconds = self.run_counted(requests)
        notes = {i: r for i, r in enumerate(results) if isinstance(r, BackendError | InputLost)}
        return (*results, (notes, cost, seconds))

    def run_on_device(self, requests: list[Any]) -> list[Any]:
        """One batch on the model (an editor's: behind its edit store, see `run_counted`)."""
        self.calls += 1
        model = self.backend.editor if isinstance(self.backend, StoredEdits) else self.backend
        try:
            return model.run_batch(requests)
        except BackendError as err:
            return [err] * len(requests)
        except BackendFatal as err:
            # Exit like a crash: Ray fails this call with RayActorError, the scheduler
            # replaces the actor and retries the batch elsewhere (bounded).
            print(
                f"{self.role} {self.backend.name!r} cannot continue, exiting: {err}",
                file=sys.stderr,
                flush=True,
            )
            os._exit(1)
        except Exception as err:  # a backend bug fails its batch, not the actor
            return [BackendError(f"{type(err).__name__}: {err}")] * len(requests)


@dataclass
class ActorRecord:
    """One actor of a pool, kept after it dies: the driver tallies each batch it answered,
    so a replaced actor's work is still in the build's `actors` stats."""

    actor: Any
    slot: int
    status: str = "alive"  # alive | replaced | unreachable (no answer at the end)
    reason: str = ""
    node: str | None = None
    pid: int | None = None
    up: bool = False  # set up and answered at least once
    batches: int = 0
    lost_batches: int = 0  # sent, then lost with the actor (or its node)
    counters: dict[str, float] = field(default_factory=dict)

    def describe(self, role: str, name: str) -> dict[str, Any]:
        out = {"role": role, "name": name, "slot": self.slot, "status": self.status, "node": self.node,
               "pid": self.pid, "setups": int(self.up), "calls": self.batches,
               "lost_batches": self.lost_batches, "counters": dict(self.counters)}  # fmt: skip
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class Pool:
    role: str
    name: str
    spec: BackendSpec
    seed: int
    context: BackendContext | None = None
    actors: list[Any] = field(default_factory=list)
    replaced: int = 0
    history: list[ActorRecord] = field(default_factory=list)
    # Replacements not yet set up: slot -> (their first `info` call, when it was sent). No
    # batch goes to them until it answers, so a replacement that Ray placed on a node that
    # is gone costs no request a retry.
    pending: dict[int, tuple[Any, float]] = field(default_factory=dict)
    start_failures: int = 0
    _records: dict[int, ActorRecord] = field(default_factory=dict, repr=False)  # id(handle) -> record
    metrics: BuildMetrics | None = None  # the build's metrics (`Workers` sets it)
    # The generate units of a build run their schedulers in threads over the same pools.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _new_actor(self, slot: int) -> Any:
        actor = self._spawn(slot)
        record = ActorRecord(actor, slot)
        self.history.append(record)
        self._records[id(actor)] = record  # the handle lives in `history`: its id stays its own
        return actor

    def _spawn(self, slot: int) -> Any:
        options = {
            "num_cpus": self.spec.resources.num_cpus,
            "num_gpus": self.spec.resources.num_gpus,
            "max_restarts": 0,
            # An editor takes the batch queued behind the running one (prefetch). Not the
            # expert and scorer: a second thread there held on to freed memory (glibc arenas)
            # and their private RSS grew 1.7x from 16 to 160 pairs at 1024 px (bench/memory.py).
            "max_concurrency": PER_ACTOR_OUTSTANDING if self.role == Role.EDITOR else 1,
        }
        cls = ray.remote(BackendActor)
        return cls.options(**options).remote(self.role, self.spec, self.seed, self.context)

    def start(self) -> None:
        self.actors = [self._new_actor(i) for i in range(self.spec.num_actors)]

    def record(self, actor: Any) -> ActorRecord:
        """`actor`'s record, by its handle (a lookup: the dispatcher tallies every batch, and a
        scan of `history` cost O(actors) each time)."""
        return self._records[id(actor)]

    def tally(self, actor: Any, cost: dict[str, float]) -> None:
        """One batch answered by `actor`, with what it cost."""
        with self._lock:
            rec = self.record(actor)
            rec.up = True
            rec.batches += 1
            for k, v in cost.items():
                rec.counters[k] = round(rec.counters.get(k, 0) + v, 6)
        if self.metrics is not None:
            self.metrics.usage((self.role, self.name), cost)

    def replace(self, index: int, dead: Any | None = None, reason: str = "") -> bool:
        """A dead actor (crash, OOM, lost node) gets a fresh one; its requests are retried
        by the caller. With `dead`, only if that actor still holds the slot (another unit's
        scheduler may have replaced it already); returns whether this call replaced it."""
        with self._lock:
            old = self.actors[index]
            if dead is not None and old is not dead:
                return False
            with contextlib.suppress(Exception):  # already gone
                ray.kill(old, no_restart=True)
            self._replace(index, reason)
            return True

    def _replace(self, index: int, reason: str) -> None:
        old = self.actors[index]
        with contextlib.suppress(Exception):  # already gone
            ray.kill(old, no_restart=True)
        rec = self.record(old)
        rec.status, rec.reason = "replaced", reason
        self.actors[index] = new = self._new_actor(index)
        self.pending[index] = (new.info.remote(), time.monotonic())
        self.replaced += 1
        if self.metrics is not None:
            self.metrics.pool(REPLACED, (self.role, self.name))

    def ready(self, index: int) -> bool:
        return index not in self.pending

    def settle(self, ref: Any) -> None:
        """A replacement's `info` answered (set up: it may take batches) or failed (it died
        before it came up: replace it again, up to MAX_START_FAILURES in a row)."""
        with self._lock:
            slot = next((i for i, (r, _) in self.pending.items() if r == ref), None)
            if slot is None:  # another unit's scheduler settled it
                return
            del self.pending[slot]
            actor = self.actors[slot]
            try:
                info = ray.get(ref)
            except DEATHS as err:
                self.start_failures += 1
                if self.start_failures > MAX_START_FAILURES:
                    raise RuntimeError(
                        f"{self.role} {self.name!r}: {self.start_failures} replacement actors in a row died "
                        f"before they were set up (last: {type(err).__name__}: {err})"
                    ) from err
                self._replace(slot, f"{type(err).__name__} before it was set up")
                return
            self.start_failures = 0
            rec = self.record(actor)
            rec.up, rec.node, rec.pid = True, info["node"], info["pid"]

    def check_pending(self, now: float) -> None:
        for slot, (_, since) in list(self.pending.items()):
            if now - since > START_TIMEOUT_S:
                raise RuntimeError(
                    f"{self.role} {self.name!r}: a replacement actor (slot {slot}) was not placed in "
                    f"{START_TIMEOUT_S:g} s; the cluster may have lost the nodes with what it asks for "
                    f"(num_cpus={self.spec.resources.num_cpus:g}, num_gpus={self.spec.resources.num_gpus:g})"
                )

    def lost(self, actor: Any) -> None:
        with self._lock:
            self.record(actor).lost_batches += 1

    def stop(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):  # its node may be gone
                ray.kill(actor, no_restart=True)
        self.actors = []


class Workers:
    """All pools of a build, keyed by (role, backend name). `context` (output location,
    answer cache) reaches every actor's backend."""

    def __init__(self, cfg: BuildConfig, context: BackendContext | None = None):
        self.pools: dict[tuple[str, str], Pool] = {
            (role, spec.name): Pool(role, spec.name, spec, cfg.seed, context)
            for role, spec in cfg.backend_specs()
        }
        self.metrics = BuildMetrics({key: p.spec for key, p in self.pools.items()})
        for pool in self.pools.values():
            pool.metrics = self.metrics

    def check_resources(self) -> None:
        """Ray would wait forever for GPUs that the cluster does not have: refuse instead."""
        have = ray.cluster_resources()
        for resource, field_name in (("GPU", "num_gpus"), ("CPU", "num_cpus")):
            want = sum(getattr(p.spec.resources, field_name) * p.spec.num_actors for p in self.pools.values())
            if want > have.get(resource, 0) + 1e-9:
                asks = ", ".join(
                    f"{p.role} {p.name!r}: {p.spec.num_actors} x {getattr(p.spec.resources, field_name):g}"
                    for p in self.pools.values()
                    if getattr(p.spec.resources, field_name)
                )
                raise RuntimeError(
                    f"the backends ask for {want:g} {resource}s ({asks}) but the Ray cluster has "
                    f"{have.get(resource, 0):g}; lower resources.{field_name} or num_actors, or join a larger "
                    f"cluster with run.ray_address"
                )

    def start(self, timeout_s: float = 600.0) -> list[dict[str, Any]]:
        """Start every actor and wait until each has set up; a failing set-up (missing model,
        bad params) raises here, before any data is processed."""
        self.check_resources()
        for pool in self.pools.values():
            pool.start()
        refs = [a.info.remote() for p in self.pools.values() for a in p.actors]
        try:
            infos = ray.get(refs, timeout=timeout_s)
        except ray.exceptions.RayActorError as err:
            self.stop()
            raise RuntimeError(f"a backend actor failed to start: {err}") from err
        records = [p.record(a) for p in self.pools.values() for a in p.actors]
        for rec, info in zip(records, infos, strict=True):
            rec.up, rec.node, rec.pid = True, info["node"], info["pid"]
        return infos

    def info(self, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Every actor the build had, replaced ones included. Live actors report their own
        counters (model loads and all); an actor that no longer answers (its node died after
        its last batch) is marked unreachable, with what the driver tallied for it."""
        asked = {a.info.remote(): (p, p.record(a)) for p in self.pools.values() for a in p.actors}
        ready = ray.wait(list(asked), num_returns=len(asked), timeout=timeout_s)[0] if asked else []
        answers: dict[int, dict[str, Any] | None] = {}
        for ref, (_, rec) in asked.items():
            try:
                answers[id(rec)] = ray.get(ref) if ref in ready else None
            except ray.exceptions.RayError as err:
                answers[id(rec)] = None
                rec.reason = type(err).__name__
            if answers[id(rec)] is None:
                rec.status = "unreachable"
                rec.reason = rec.reason or f"no answer in {timeout_s:g} s"
        out = []
        for p in self.pools.values():
            for rec in p.history:
                entry = rec.describe(p.role, p.name)
                answer = answers.get(id(rec))
                if answer:  # the actor's own view: cumulative counters, set-ups
                    entry.update({k: answer[k] for k in ("pid", "node", "setups", "calls", "counters")})
                out.append(entry)
        return out

    def stop(self) -> None:
        for pool in self.pools.values():
            pool.stop()
