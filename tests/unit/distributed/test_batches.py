"""Pool traffic (`distributed/batches.py`) on tiny Ray actors: queued calls leave in batches of
the pool's batch size for its least-loaded actor, edits come back as references, and a dead
actor's requests are retried on its replacement up to `retries` times, then answered with a
TransientBackendError. The actors here answer at once, so the test times only the traffic."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import ray

from editthinker_data.backends import BackendError, TransientBackendError
from editthinker_data.core.schema import Role
from editthinker_data.distributed.batches import PoolTraffic, Queued
from editthinker_data.distributed.jobs import InFlight, UnitJob
from editthinker_data.distributed.load import PoolLoad
from editthinker_data.pipeline.loop import Call


class Echo:
    """Answers each request with twice its value, remembers every batch it was sent, and fails
    a request of -1 as a backend error (a per-request answer, not a crash)."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def _answers(self, requests):
        self.batches.append(list(requests))
        return [BackendError("bad request") if r == -1 else 2 * r for r in requests]

    def run_counted(self, requests):
        return self._answers(requests), {"calls": 1}, 0.001

    def run_split(self, requests):
        results = self._answers(requests)
        notes = {i: r for i, r in enumerate(results) if isinstance(r, BackendError)}
        return (*results, (notes, {"calls": 1}, 0.001))

    def seen(self):
        return self.batches


class Dies:
    """An actor whose process exits on its first batch, as an out-of-memory kill would end it."""

    def run_counted(self, requests):
        os._exit(1)


@dataclass
class TinyPool:
    """The part of `pools.Pool` the traffic uses: `size` actors, each new one (first ones and
    replacements) made from the next class in `makers`."""

    makers: list[type]
    size: int
    batch_size: int
    actors: list[Any] = field(default_factory=list)
    replaced: int = 0
    lost_batches: int = 0
    tallied: int = 0

    def __post_init__(self):
        self.spec = SimpleNamespace(batch_size=self.batch_size)
        self.actors = [self._next() for _ in range(self.size)]

    def _next(self):
        return ray.remote(num_cpus=0, max_restarts=0)(self.makers.pop(0)).remote()

    def ready(self, index: int) -> bool:
        return True

    def tally(self, actor, cost):
        self.tallied += 1

    def lost(self, actor):
        self.lost_batches += 1

    def replace(self, index, dead=None, reason=""):
        if dead is not None and self.actors[index] is not dead:
            return False
        self.actors[index] = self._next()
        self.replaced += 1
        return True


class Unmetered:
    """The build's metrics, not measured here (tests/e2e/test_metrics.py does)."""

    def pool(self, *args, **tags):
        pass

    def observe(self, *args):
        pass


def pool(makers, actors, batch_size):
    return TinyPool(list(makers), actors, batch_size)


def traffic(key, tiny, n, retries=2):
    """A traffic over `tiny` with `n` calls queued, one rollout each, all of one unit."""
    job = UnitJob(items=list(range(n)), make=lambda item: None)
    rollouts = {rid: InFlight(job, rid, None, None) for rid in range(n)}
    answers: dict[int, Any] = {}
    failed: list[BaseException] = []
    loads = {key: PoolLoad(key[0], len(tiny.actors), tiny.batch_size)}
    t = PoolTraffic(
        SimpleNamespace(pools={key: tiny}, metrics=Unmetered()), loads, rollouts, retries,
        answers.__setitem__, lambda job, err: failed.append(err),
    )  # fmt: skip
    for rid in range(n):
        t.enqueue(key, Queued(rid, Call(key[0], key[1], rid)))
    return t, job, answers, failed


def settle(t: PoolTraffic) -> None:
    """Every batch out comes back and is collected, as the dispatcher's loop does."""
    while t.out:
        ready, _ = ray.wait(list(t.out), num_returns=1, timeout=60)
        assert ready, "a batch did not come back in 60 s"
        t.collect(ready[0])


def test_batches_take_the_pools_batch_size_to_the_least_loaded_actor(ray_cluster):
    key = (Role.EXPERT, "x")
    tiny = pool([Echo, Echo], actors=2, batch_size=3)
    t, job, answers, failed = traffic(key, tiny, 7)

    t.send(draining=True)
    # Two full batches, one per actor; the seventh request waits: both actors are busy and a
    # busy actor is sent only a full batch.
    assert sorted(len(s.batch) for s in t.out.values()) == [3, 3]
    assert sorted(s.actor_index for s in t.out.values()) == [0, 1]
    assert t.queued() == {"expert/x": 1} and t.loads[key].outstanding == [1, 1]

    settle(t)
    t.send(draining=True)  # both idle again: the last request goes to actor 0 (ties: lowest)
    settle(t)

    assert answers == {rid: 2 * rid for rid in range(7)} and not failed
    assert [ray.get(a.seen.remote()) for a in tiny.actors] == [[[0, 1, 2], [6]], [[3, 4, 5]]]
    assert t.queued() == {"expert/x": 0} and t.loads[key].outstanding == [0, 0]
    assert job.counters["batches"] == 3 and job.counters["requests"] == 7 and tiny.tallied == 3


def test_edits_come_back_as_references_and_errors_by_position(ray_cluster):
    key = (Role.EDITOR, "e")
    tiny = pool([Echo], actors=1, batch_size=4)
    t, _, answers, _ = traffic(key, tiny, 3)
    t.enqueue(key, Queued(3, Call(key[0], key[1], -1)))
    t.rollouts[3] = InFlight(t.rollouts[0].job, 3, None, None)

    t.send(draining=True)
    settle(t)

    assert all(isinstance(answers[rid], ray.ObjectRef) for rid in range(3))  # never fetched here
    assert [ray.get(answers[rid]) for rid in range(3)] == [0, 2, 4]
    assert isinstance(answers[3], BackendError) and "bad request" in str(answers[3])


def test_a_dead_actors_requests_are_retried_on_its_replacement(ray_cluster):
    key = (Role.SCORER, "s")
    tiny = pool([Dies, Echo], actors=1, batch_size=2)
    t, job, answers, failed = traffic(key, tiny, 2, retries=1)

    t.send(draining=True)
    settle(t)  # the batch's actor died: replaced, and both requests queued again
    assert answers == {} and t.queued() == {"scorer/s": 2}
    t.send(draining=True)
    settle(t)

    assert answers == {0: 0, 1: 2} and not failed
    assert tiny.replaced == 1 and tiny.lost_batches == 1
    assert job.counters["retries"] == 2 and job.counters["actors_replaced"] == 1


def test_requests_that_outlive_their_retries_answer_a_transient_error(ray_cluster):
    key, retries = (Role.SCORER, "s"), 1
    tiny = pool([Dies] * (retries + 2), actors=1, batch_size=2)
    t, job, answers, failed = traffic(key, tiny, 2, retries=retries)

    for _ in range(retries + 1):
        t.send(draining=True)
        settle(t)

    assert sorted(answers) == [0, 1] and not failed
    for err in answers.values():
        assert isinstance(err, TransientBackendError)
        assert f"scorer 's' actor died {retries + 1} times" in str(err)
    assert t.queued() == {"scorer/s": 0} and not t.out
    assert tiny.replaced == retries + 1 and job.counters["retries"] == 2 * retries


@ray.remote(num_cpus=0)
class Switch:
    """Whether the backend is out: shared by the actors of a pool and the test."""

    def __init__(self):
        self.out = True

    def set(self, out: bool) -> None:
        self.out = out

    def get(self) -> bool:
        return self.out


class Outage:
    """Answers twice each request, or, while the switch says out, a TransientBackendError for
    each (what a remote backend answers once its own retries are spent)."""

    switch: Any = None

    def __init__(self):
        self.batches: list[list[int]] = []

    def run_counted(self, requests):
        self.batches.append(list(requests))
        if ray.get(Outage.switch.get.remote()):
            return (
                [TransientBackendError("connection refused (gave up after 3 tries)")] * len(requests),
                {},
                0.001,
            )
        return [2 * r for r in requests], {}, 0.001

    def seen(self):
        return self.batches


def test_an_outage_parks_its_calls_holds_edits_probes_one_at_a_time_and_resumes(ray_cluster, monkeypatch):
    import time as clock

    from editthinker_data.distributed import breakers

    monkeypatch.setattr(breakers, "FIRST_BACKOFF_S", 0.05)
    switch = Switch.remote()

    class Out(Outage):  # the class an actor is made from carries the switch to its process
        def __init__(self):
            super().__init__()
            Outage.switch = switch

    key = (Role.EXPERT, "x")
    tiny = pool([Out], actors=1, batch_size=4)
    t, job, answers, failed = traffic(key, tiny, 4, retries=1)
    edit_key = (Role.EDITOR, "e")
    t.workers.pools[edit_key] = pool([Echo], actors=1, batch_size=4)
    t.loads[edit_key] = PoolLoad(Role.EDITOR, 1, 4)
    t.rollouts[9] = InFlight(job, 9, None, None)

    t.send(draining=True)
    settle(t)  # 4 transient answers: the first two to be sent again, the third opens the breaker: all wait
    t.send(draining=True)
    settle(t)
    assert answers == {} and not failed  # no rollout ended: every call waits
    assert t.breaker(key).open and t.paused() and len(t.parked[key]) == 4
    assert "expert 'x' unreachable since" in t.notes()[0] and "paused" in t.notes()[0]

    t.enqueue(edit_key, Queued(9, Call(Role.EDITOR, "e", 5)))
    for _ in range(3):  # probes: one call at a time, each after its backoff
        clock.sleep(0.3)
        t.send(draining=True)
        assert [len(s.batch) for s in t.out.values()] in ([1], [])  # a probe, and no edit
        settle(t)
    assert answers == {} and t.breaker(key).open and t.breaker(key).backoff_s > 0.05

    ray.get(switch.set.remote(False))  # back
    deadline = clock.monotonic() + 10
    while t.breaker(key).open and clock.monotonic() < deadline:
        clock.sleep(0.2)
        t.send(draining=True)
        settle(t)
    t.send(draining=True)
    settle(t)
    edited = ray.get(answers.pop(9))  # an edit comes back as a reference
    assert answers == {0: 0, 1: 2, 2: 4, 3: 6} and edited == 10 and not failed and not t.paused()
    sizes = [len(b) for b in ray.get(tiny.actors[0].seen.remote())]
    assert sizes[0] == 4 and set(sizes[1:-1]) == {1} and sizes[-1] == 3  # the batch, probes, the rest


def test_an_outage_past_outage_wait_s_answers_the_parked_calls_and_refuses_edits(ray_cluster):
    switch = Switch.remote()

    class Out(Outage):
        def __init__(self):
            super().__init__()
            Outage.switch = switch

    key = (Role.SCORER, "s")
    t, job, answers, failed = traffic(key, pool([Out], actors=1, batch_size=4), 3, retries=2)
    t.outage_wait_s = 0.0
    edit_key = (Role.EDITOR, "e")
    editors = pool([Echo], actors=1, batch_size=4)
    t.workers.pools[edit_key], t.loads[edit_key] = editors, PoolLoad(Role.EDITOR, 1, 4)
    t.send(draining=True)
    settle(t)
    assert t.breaker(key).open and len(t.parked[key]) == 3
    t.rollouts[9] = InFlight(job, 9, None, None)
    t.enqueue(edit_key, Queued(9, Call(Role.EDITOR, "e", 1)))
    t.send(draining=True)  # over outage_wait_s: gives up
    assert sorted(answers) == [0, 1, 2, 9] and all(
        isinstance(e, TransientBackendError) for e in answers.values()
    )
    assert "run.outage_wait_s" in str(answers[0]) and "no edit is started" in str(answers[9])
    assert ray.get(editors.actors[0].seen.remote()) == []  # the edit never started
