"""The Ray scheduler when actors die mid-build: replaced, their batches retried, and a
replacement that never comes up stops the unit with a named error."""

import pytest
import ray

from editthinker_data.distributed.pools import Workers
from tests.support.scheduler_helpers import config, one_editor, pairs, run

pytestmark = pytest.mark.slow


def test_dead_actor_is_replaced_and_its_requests_retried(ray_cluster):
    cfg = config(0.0)
    workers = Workers(cfg)
    workers.start()
    expert = workers.pools[("expert", "x")]
    first = expert.actors[0]

    ray.kill(first, no_restart=True)  # dies as a crashed or OOM-killed actor would
    try:
        done, counters = run(cfg, workers, pairs(8))
    finally:
        workers.stop()
    assert sorted(done) == list(range(8))
    assert counters["actors_replaced"] >= 1 and counters["retries"] >= 1
    assert expert.replaced >= 1
    assert all(t.stop_reason != "failed" for t in done.values())


def test_retries_exhausted_fail_the_trajectory_alone(ray_cluster):
    cfg = config(0.0)
    workers = Workers(cfg)
    workers.start()
    first = workers.pools[("expert", "x")].actors[0]

    ray.kill(first, no_restart=True)
    try:
        done, _ = run(cfg, workers, pairs(4), retries=0)
    finally:
        workers.stop()
    assert sorted(done) == list(range(4))
    failed = [t for t in done.values() if t.stop_reason == "failed"]
    assert failed and all("actor died" in t.error and t.turns for t in failed)
    # a dead actor is not an answer: the trajectory is unfinished, for a rerun to retry
    assert all(t.transient and t.failure.reason == "expert_unreachable" for t in failed)


def test_an_editor_whose_process_breaks_is_replaced(ray_cluster):
    """A CUDA error poisons the process: the backend raises BackendFatal, the actor exits,
    the scheduler replaces it and retries; every rollout still ends, counted."""
    cfg = one_editor({"skill": 0.3, "crash_rate": 0.5})
    workers = Workers(cfg)
    workers.start()
    try:
        done, counters = run(cfg, workers, pairs(10), retries=6)
    finally:
        workers.stop()
    assert sorted(done) == list(range(10))
    assert counters["actors_replaced"] >= 1 and counters["retries"] >= counters["actors_replaced"]
    for t in done.values():
        assert t.stop_reason != "failed" or "actor died 7 times" in t.error


def broken_replacements(pool, how_many):
    """The next `how_many` replacements of `pool` fail in their set-up (a bad parameter), as
    an actor that Ray placed on a node that just died fails before it comes up."""
    good = pool.spec
    bad = good.model_copy(update={"params": {**good.params, "false_alarm_rate": 5.0}})
    make = pool._new_actor
    made = []

    def new_actor(slot):
        pool.spec = bad if len(made) < how_many else good
        made.append(slot)
        try:
            return make(slot)
        finally:
            pool.spec = good

    pool._new_actor = new_actor
    return made


def test_a_replacement_that_dies_before_it_is_set_up_costs_no_retry(ray_cluster):
    cfg = config(0.0)
    workers = Workers(cfg)
    workers.start()
    expert = workers.pools[("expert", "x")]
    made = broken_replacements(expert, 1)
    ray.kill(expert.actors[0], no_restart=True)
    try:
        # One retry: the dead actor's batch uses it; the broken replacement never gets a batch.
        done, counters = run(cfg, workers, pairs(6), retries=1)
        actors = workers.info()
    finally:
        workers.stop()
    assert sorted(done) == list(range(6)) and all(t.stop_reason != "failed" for t in done.values())
    assert len(made) == 2 and expert.replaced == 2 and counters["actors_replaced"] == 1
    experts = [a for a in actors if a["role"] == "expert"]
    assert [a["status"] for a in experts] == ["replaced", "replaced", "alive"]
    assert experts[1]["reason"].endswith("before it was set up") and experts[1]["calls"] == 0
    assert experts[1]["setups"] == 0 and experts[2]["setups"] == 1 and experts[2]["calls"] > 0


def test_replacements_that_never_come_up_stop_the_unit_with_a_named_error(ray_cluster):
    from editthinker_data.distributed.pools import MAX_START_FAILURES

    cfg = config(0.0)
    workers = Workers(cfg)
    workers.start()
    expert = workers.pools[("expert", "x")]
    broken_replacements(expert, 100)
    ray.kill(expert.actors[0], no_restart=True)
    try:
        with pytest.raises(
            RuntimeError, match=rf"expert 'x': {MAX_START_FAILURES + 1} replacement actors in a row died"
        ):
            run(cfg, workers, pairs(2), retries=1)
    finally:
        workers.stop()
