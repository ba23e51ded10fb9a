"""The scheduler's load bookkeeping without Ray: actor choice, in-flight sizing, busy and dry
time, cost split, and the build summary's load lines."""

from editthinker_data.distributed.load import (
    AUTO_MAX_IN_FLIGHT,
    BATCH_WAIT,
    PER_ACTOR_OUTSTANDING,
    PoolLoad,
    auto_in_flight,
    load_lines,
    pool_report,
    split_cost,
)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_batches_go_to_the_least_loaded_actor_not_actor_0():
    load = PoolLoad("editor", actors=3, batch_size=4)
    picks = []
    for _ in range(3):
        ai = load.pick(queued=1)
        picks.append(ai)
        load.sent(ai, 1)
    assert picks == [0, 1, 2]  # one partial batch each, spread over the pool
    assert load.pick(queued=1) is None  # a partial batch waits for an idle actor
    assert load.pick(queued=4) == 0  # a full one queues behind the least-loaded (ties: lowest index)
    load.sent(0, 4)
    load.returned(1, 0.1)
    assert load.pick(queued=1) == 1  # actor 1 went idle: it gets the next batch
    load.sent(1, 1)
    assert load.pick(queued=4) == 1  # ties between 1 and 2: lowest index
    load.sent(1, 4)
    assert load.pick(queued=4) == 2
    load.sent(2, 4)
    assert load.outstanding == [PER_ACTOR_OUTSTANDING] * 3
    assert load.pick(queued=4) is None  # every actor has one running and one queued


def test_the_indexed_choice_matches_a_scan_of_the_pool():
    """`pick` keeps heaps instead of scanning the pool: over random traffic, with actors that
    are not usable (replacements setting up) coming and going, it picks what a scan picks,
    and the idle time it counts is a scan's."""
    import random

    rng = random.Random(7)
    clock = Clock()
    load = PoolLoad("editor", actors=9, batch_size=2, clock=clock)
    load.set_active(True)
    pending: set[int] = set()
    ready = pending.__contains__
    idle_s = 0.0
    for _ in range(3000):
        usable = rng.choice([None, lambda i: not ready(i)])
        scan = [i for i in range(9) if usable is None or usable(i)]
        best = min(scan, key=lambda i: (load.outstanding[i], i)) if scan else None
        queued = rng.choice([1, 2, 3])
        want = None
        if best is not None and load.outstanding[best] == 0:
            want = best
        elif best is not None and load.outstanding[best] < PER_ACTOR_OUTSTANDING and queued >= 2:
            want = best
        assert load.pick(queued, usable=usable) == want
        assert load.has_idle(usable) == any(load.outstanding[i] == 0 for i in scan)
        step = rng.random()
        idle_s += step * sum(1 for n in load.outstanding if n == 0)
        clock.now += step
        move = rng.random()
        if move < 0.45 and want is not None:
            load.sent(want, queued)
        elif move < 0.9:
            busy = [i for i, n in enumerate(load.outstanding) if n]
            if busy:
                load.returned(rng.choice(busy), 0.1)
        else:
            pending ^= {rng.randrange(9)}
    load.set_active(False)
    assert abs(load.idle_s - idle_s) < 1e-6


def test_under_load_a_partial_batch_waits_a_little_for_more():
    """Dynamic batching: an idle actor of a loaded pool lets a partial batch fill for up to
    BATCH_WAIT of the pool's batch time, then sends what it has; unloaded, it sends at once."""
    load = PoolLoad("expert", actors=1, batch_size=16)
    assert load.pick(queued=5, loaded=True, waited=0.0) == 0  # no batch time measured yet: no wait
    load.sent(0, 5)
    load.returned(0, 0.4)
    assert load.pick(queued=5, loaded=True, waited=0.0) is None
    assert load.pick(queued=5, loaded=True, waited=BATCH_WAIT * 0.4 * 0.9) is None
    assert load.pick(queued=5, loaded=True, waited=BATCH_WAIT * 0.4 * 1.1) == 0
    assert load.pick(queued=16, loaded=True, waited=0.0) == 0  # a full batch goes at once
    assert load.pick(queued=5, loaded=False, waited=0.0) == 0  # nothing more coming: no wait


def pools(edit_s, expert_s, scorer_s, expert_batch=16):
    editor = PoolLoad("editor", actors=2, batch_size=4)
    expert = PoolLoad("expert", actors=2, batch_size=expert_batch)
    scorer = PoolLoad("scorer", actors=2, batch_size=16)
    for load, seconds in ((editor, edit_s), (expert, expert_s), (scorer, scorer_s)):
        load.sent(0, 1)
        load.returned(0, seconds)
    return [editor, expert, scorer]


def test_auto_in_flight_rises_with_expert_latency():
    fast = auto_in_flight(pools(0.1, 0.1, 0.1))
    slow = auto_in_flight(pools(0.1, 0.3, 0.3))
    floor = 2 * 4 * PER_ACTOR_OUTSTANDING
    # editors' own share, plus editor throughput (80/s) x two service times per other role
    assert fast == floor + 32  # 80/s x 0.4 s
    assert slow == floor + 96  # 80/s x 1.2 s
    # a measured time away from the editors replaces the estimate
    assert auto_in_flight(pools(0.1, 0.3, 0.3), away_s=0.5) == floor + 40


def test_auto_in_flight_stays_within_what_the_pools_hold():
    loads = pools(0.1, 5.0, 5.0, expert_batch=4)  # a very slow expert
    hold = sum(p.actors * p.batch_size * PER_ACTOR_OUTSTANDING for p in loads)
    assert auto_in_flight(loads) == hold  # more would only queue in the driver
    assert (
        auto_in_flight(loads, away_s=0.0) == 2 * 4 * PER_ACTOR_OUTSTANDING
    )  # never below the editors' share
    big = [PoolLoad("editor", 8, 8), PoolLoad("expert", 64, 64)]
    assert auto_in_flight(big, away_s=100.0) == AUTO_MAX_IN_FLIGHT
    # before anything came back: every pool taken as fast as the editors (a start, not zero)
    fresh = [PoolLoad("editor", 1, 4), PoolLoad("expert", 1, 16), PoolLoad("scorer", 1, 16)]
    assert auto_in_flight(fresh) == 8 + 4 * 2 * 2


def test_idle_and_dry_time_count_only_while_rollouts_are_in_flight():
    clock = Clock()
    load = PoolLoad("editor", actors=2, batch_size=1, clock=clock)
    clock.now = 5.0  # before the build has work: not idle time
    load.set_active(True)
    load.sent(0, 1)
    clock.now = 6.0  # actor 1 idle for 1 s; the pool is not dry
    load.returned(0, 1.0)
    clock.now = 8.0  # both idle for 2 s: dry
    load.set_active(False)
    clock.now = 20.0
    totals = load.totals()
    assert totals["idle_s"] == 1.0 + 2 * 2.0
    assert totals["dry_s"] == 2.0
    report = pool_report(load, None, active_s=3.0)
    assert report["busy"] == round(1.0 / (2 * 3.0), 3) and report["service_s"] == 1.0


def test_a_batch_cost_splits_over_units_and_whole_numbers_stay_whole():
    a, b, c = object(), object(), object()
    parts = split_cost({"calls": 1, "prompt_tokens": 100, "cost_usd": 0.3}, {a: 1, b: 1, c: 1})
    assert sum(p["prompt_tokens"] for p in parts.values()) == 100
    assert all(isinstance(p["prompt_tokens"], int) for p in parts.values())
    assert sum(p["calls"] for p in parts.values()) == 1
    assert abs(sum(p["cost_usd"] for p in parts.values()) - 0.3) < 1e-12
    assert split_cost({"calls": 1}, {a: 4}) == {a: {"calls": 1}}  # one unit: the whole batch


def load_report(**dry):
    return {
        "max_in_flight": "auto",
        "in_flight_target": 40,
        "peak_in_flight": 41,
        "active_s": 100.0,
        "pools": {
            **{f"editor/{name}": {"busy": 1 - d / 100, "dry_s": d} for name, d in dry.items()},
            "expert/x": {"busy": 0.2, "dry_s": 70.0},
        },
    }


def test_an_editor_pool_that_ran_dry_while_others_worked_is_reported():
    lines = load_lines(load_report(careful=3.0, sloppy=40.0))
    assert lines[0].startswith("editors busy: careful 97%, sloppy 60%")
    assert len(lines) == 2 and "'sloppy' ran dry for 40.0s of 100.0s while other editors worked" in lines[1]
    # the final drain idles every pool a little: no warning
    assert len(load_lines(load_report(careful=4.0, sloppy=6.0))) == 1
    # all editors waiting is a different cause, said as such
    lines = load_lines(load_report(careful=30.0))
    assert len(lines) == 2 and lines[1].startswith("every editor pool sat idle for 30.0s")
    assert load_lines({"pools": {}}) == []
