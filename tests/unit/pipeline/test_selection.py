"""Filter, unroll, split and balance with exact expectations."""

import random
from collections import defaultdict

import pytest
from pydantic import ValidationError

from editthinker_data.config import SelectionConfig
from editthinker_data.io.trajectory_index import TrajectorySummary, TurnSummary
from editthinker_data.pipeline.selection import decide, select, trajectory_split, unroll


def traj(key, overall, stop="max_turns", task="style", error=None, partition=0):
    turns = tuple(
        TurnSummary(i + 1, f"T{i + 1}", None if i == 0 else f"R{i + 1}", s, s, s)
        for i, s in enumerate(overall)
    )
    return TrajectorySummary(key, partition, task, "e", "T1", stop, turns, "stop-reason", "T-final", error)


CFG = SelectionConfig()


@pytest.mark.parametrize(
    "scores,keep,reason,k",
    [
        ([5.0], False, "single_turn", 0),
        ([5.0, 4.0, 3.0], False, "no_improvement", 0),
        ([5.0, 5.0], True, "kept", 2),
        ([2.0, 7.0, 6.0], True, "kept", 2),
        ([2.0, 6.0, 8.0, 8.0, 3.0], True, "kept", 3),
        ([0.0, 0.0, 0.0], True, "kept", 2),  # the paper's rule keeps a trajectory that never improved
    ],
)
def test_trajectory_filter(scores, keep, reason, k):
    d = decide(traj("a", scores), CFG)
    assert (d.keep, d.reason, d.best_turn) == (keep, reason, k)


def test_single_turn_kept_only_when_asked_and_satisfied():
    cfg = SelectionConfig(keep_single_turn=True)
    assert decide(traj("a", [9.0], stop="expert_satisfied"), cfg).keep
    assert not decide(traj("a", [9.0], stop="max_turns"), cfg).keep


def test_unroll_truncates_at_best_and_adds_stop_step():
    t = traj("a", [2.0, 6.0, 8.0], stop="expert_satisfied")
    plans = unroll(t, 3, "sft", CFG)
    assert [(p.turn, p.stop, p.target_score) for p in plans] == [
        (2, False, 2.0),
        (3, False, 6.0),
        (4, True, 8.0),
    ]
    assert [p.key for p in plans] == ["a_s2", "a_s3", "a_s4"]
    # truncated before the end: no stop step, nothing after k
    t2 = traj("b", [2.0, 8.0, 3.0], stop="expert_satisfied")
    assert [(p.turn, p.stop) for p in unroll(t2, 2, "sft", CFG)] == [(2, False)]
    assert [p.turn for p in unroll(t, 3, "sft", SelectionConfig(include_stop_steps=False))] == [2, 3]


def test_split_by_variance():
    cfg = SelectionConfig(rl_variance_threshold=4.0)
    assert trajectory_split(traj("a", [2.0, 8.0]), 2, cfg) == "rl"  # variance 9
    assert trajectory_split(traj("a", [6.0, 8.0]), 2, cfg) == "sft"  # variance 1
    assert trajectory_split(traj("a", [6.0, 8.0, 0.0]), 2, cfg) == "sft"  # only turns up to k count


def test_select_accounts_for_everything():
    trajs = [
        traj("a", [1.0]),
        traj("b", [5.0, 3.0]),
        traj("c", [1.0, 9.0], stop="expert_satisfied"),
        traj("d", [6.0, 7.0]),
    ]
    r = select(trajs, SelectionConfig(rl_variance_threshold=4.0), seed=0)
    assert r.trajectory_stats.to_dict() == {
        "input": 4,
        "kept": 2,
        "filtered": {"no_improvement": 1, "single_turn": 1},
        "failed": {},
    }
    assert {(s.trajectory, s.split) for s in r.steps} == {("c", "rl"), ("d", "sft")}
    assert r.step_stats.balanced and r.trajectory_stats.balanced


@pytest.mark.parametrize(
    "scores,min_gain,reason,k",
    [
        ([0.0, 0.0, 0.0], 0.5, "below_min_gain", 0),
        ([5.0, 5.0], 0.5, "below_min_gain", 0),
        ([5.0, 5.4, 5.2], 0.5, "below_min_gain", 0),
        ([5.0, 5.4, 5.5], 0.5, "kept", 3),
        ([6.0, 7.1], 1.1, "kept", 2),  # a decimal gain of exactly min_gain is enough
        ([5.0, 4.0], 0.5, "no_improvement", 0),  # a loss stays a loss, whatever min_gain says
    ],
)
def test_min_gain(scores, min_gain, reason, k):
    d = decide(traj("a", scores), SelectionConfig(min_gain=min_gain))
    assert (d.reason, d.best_turn) == (reason, k)


def test_min_gain_counts_its_drops_and_zero_gain_is_reported():
    trajs = [traj("flat", [4.0, 4.0, 4.0]), traj("up", [2.0, 6.0]), traj("down", [6.0, 2.0])]
    paper = select(trajs, CFG, seed=0)
    assert paper.trajectory_stats.kept == 2 and paper.after_balance["zero_gain"] == 1
    strict = select(trajs, SelectionConfig(min_gain=0.5), seed=0)
    assert strict.trajectory_stats.filtered == {"below_min_gain": 1, "no_improvement": 1}
    assert strict.after_balance["zero_gain"] == 0
    assert {s.trajectory for s in strict.steps} == {"up"}


def test_failed_turn_is_dropped_by_default_and_judged_on_stored_turns_when_asked():
    failed = traj("f", [2.0, 7.0], error="turn 3 refine: unparseable answer", stop="failed")
    d = decide(failed, CFG)
    assert (d.keep, d.reason) == (False, "turn_failed")
    r = select([failed, traj("ok", [2.0, 7.0])], CFG, seed=0)
    assert r.trajectory_stats.filtered == {"turn_failed": 1}
    assert {s.trajectory for s in r.steps} == {"ok"} and r.after_balance["failed_turn"] == 0
    judged = SelectionConfig(failed_turns="judge_stored")
    assert decide(failed, judged) == decide(traj("f", [2.0, 7.0]), judged)
    r = select([failed, traj("ok", [2.0, 7.0])], judged, seed=0)
    assert r.after_balance["failed_turn"] == 1
    # the failure ended it: never a stop sample, only the genuine refinement it stored
    assert [(s.turn, s.stop) for s in r.steps if s.trajectory == "f"] == [(2, False)]
    # a failed trajectory whose stored turns do not pass the filter gets the filter's reason
    assert (
        decide(traj("g", [5.0], error="turn 2 edit: refused", stop="failed"), judged).reason == "single_turn"
    )


def test_config_refuses_single_turn_trajectories_without_their_stop_samples():
    with pytest.raises(ValidationError, match="include_stop_steps: true"):
        SelectionConfig(keep_single_turn=True, include_stop_steps=False)
    with pytest.raises(ValidationError):
        SelectionConfig(min_gain=-1)


BAL = SelectionConfig.model_validate(
    {"rl_variance_threshold": 4.0, "balance": {"max_cell_ratio": 1.0, "score_bins": [0, 5, 10]}}
)


def test_balance_caps_cells_by_steps_and_keeps_trajectories_whole():
    # style, low S_1: 4 trajectories of 2 samples each (refine + stop); two small cells of 2 samples
    trajs = [traj(f"s{i}", [1.0, 2.0], stop="expert_satisfied") for i in range(4)]
    trajs += [traj("o", [6.0, 7.0], stop="expert_satisfied", task="other")]
    trajs += [traj("b", [6.0, 6.5, 7.0], task="background")]
    r = select(trajs, BAL, seed=0)
    # cell sizes in samples 8, 2, 2: median 2, so the style cell keeps one whole trajectory
    assert r.balance_stats.to_dict() == {"input": 6, "kept": 3, "filtered": {"balanced_out": 3}, "failed": {}}
    assert r.step_stats.to_dict() == {"input": 12, "kept": 6, "filtered": {"balanced_out": 6}, "failed": {}}
    kept_style = {s.trajectory for s in r.steps if s.task_type == "style"}
    assert len(kept_style) == 1
    assert sorted((s.trajectory, s.turn, s.stop) for s in r.steps if s.task_type == "style") == [
        (next(iter(kept_style)), 2, False),
        (next(iter(kept_style)), 3, True),
    ]
    out = {k for k, d in r.decisions.items() if d.reason == "balanced_out"}
    assert len(out) == 3 and all(not r.decisions[k].keep and r.decisions[k].best_turn == 2 for k in out)
    assert r.before_balance["splits"] == {"sft": 12, "rl": 0}
    assert r.after_balance["splits"] == r.splits == {"sft": 6, "rl": 0}


def test_a_cell_keeps_its_first_trajectory_even_when_it_is_larger_than_the_cap():
    trajs = [traj(f"a{i}", [1.0, 1.5], task="other") for i in range(3)]
    trajs += [traj("long", [1.0, 1.5, 2.0, 2.5, 3.0], task="style")]  # 4 samples in a cell capped at 3
    r = select(trajs, BAL, seed=0)
    assert sum(1 for s in r.steps if s.trajectory == "long") == 4
    assert r.trajectory_splits["sft"] == 4


def random_trajectories(rng, n):
    out = []
    for i in range(n):
        task = "style" if rng.random() < 0.7 else rng.choice(["subject-driven", "background", "other"])
        scores = [round(rng.uniform(0, 10), 3) for _ in range(rng.randint(1, 5))]
        stop = rng.choice(["expert_satisfied", "max_turns", "unchanged_instruction"])
        error = "turn 4 refine: unparseable answer" if rng.random() < 0.1 else None
        out.append(traj(f"t{i:03d}", scores, stop=stop, task=task, error=error, partition=i % 3))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counts_equal_the_released_steps_on_random_trajectories(seed):
    rng = random.Random(seed)
    trajs = random_trajectories(rng, 200)
    cfg = SelectionConfig.model_validate({"rl_variance_threshold": 4.0, "balance": {"max_cell_ratio": 1.5}})
    r = select(trajs, cfg, seed=seed)
    by_traj = defaultdict(list)
    for s in r.steps:
        by_traj[s.trajectory].append(s)
    assert r.balance_stats.kept < r.balance_stats.input  # the skew made balancing drop some
    full = {t.key: t for t in trajs}
    for key, steps in by_traj.items():
        d = r.decisions[key]
        assert d.keep and d.reason == "kept" and {s.split for s in steps} == {d.split}
        # whole: exactly the steps unrolling gives, the stop sample only with its refinements
        assert [(s.turn, s.stop) for s in steps] == [
            (p.turn, p.stop) for p in unroll(full[key], d.best_turn, d.split, cfg)
        ]
    for key, d in r.decisions.items():
        assert d.keep == (key in by_traj)
    for split in ("sft", "rl"):
        in_split = [s for s in r.steps if s.split == split]
        assert r.splits[split] == len(in_split)
        assert r.trajectory_splits[split] == len({s.trajectory for s in in_split})
        per_type = r.after_balance["by_task_type"][split]
        for task in {s.task_type for s in in_split}:
            mine = [s for s in in_split if s.task_type == task]
            assert per_type[task] == {"trajectories": len({s.trajectory for s in mine}), "steps": len(mine)}
    for st in (r.trajectory_stats, r.balance_stats, r.step_stats):
        assert st.balanced
    assert r.balance_stats.input == r.trajectory_stats.kept
    assert r.balance_stats.kept == sum(r.trajectory_splits.values())
    assert r.step_stats.input == sum(r.before_balance["splits"].values())
    assert r.step_stats.kept == len(r.steps)
    # deterministic with the seed, whatever the input order
    shuffled = list(trajs)
    rng.shuffle(shuffled)
    again = select(shuffled, cfg, seed=seed)
    assert again.steps == r.steps and again.decisions == r.decisions


def test_balancing_off_keeps_every_filtered_trajectory():
    trajs = [traj(f"s{i}", [1.0, 2.0], stop="expert_satisfied") for i in range(5)]
    trajs += [traj("o", [1.0, 2.0], task="other")]
    cfg = SelectionConfig.model_validate({"balance": {"enabled": False}})
    r = select(trajs, cfg, seed=0)
    assert r.balance_stats.kept == 6 and r.splits["sft"] == 11 and r.before_balance == r.after_balance
