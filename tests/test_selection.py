"""Filter, unroll, split and balance with exact expectations."""

import pytest

from editthinker_data.config import SelectionConfig
from editthinker_data.selection import (
    StepPlan,
    TrajectorySummary,
    TurnSummary,
    balance,
    decide,
    select,
    trajectory_split,
    unroll,
)


def traj(key, overall, stop="max_turns", task="style"):
    turns = tuple(
        TurnSummary(i + 1, f"T{i + 1}", None if i == 0 else f"R{i + 1}", s, s, s)
        for i, s in enumerate(overall)
    )
    return TrajectorySummary(key, 0, task, "e", "T1", stop, turns, "stop-reason", "T-final")


CFG = SelectionConfig()


@pytest.mark.parametrize(
    "scores,keep,reason,k",
    [
        ([5.0], False, "single_turn", 0),
        ([5.0, 4.0, 3.0], False, "no_improvement", 0),
        ([5.0, 5.0], True, "kept", 2),
        ([2.0, 7.0, 6.0], True, "kept", 2),
        ([2.0, 6.0, 8.0, 8.0, 3.0], True, "kept", 3),
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


def test_balance_caps_cells_at_ratio_of_median():
    cfg = SelectionConfig.model_validate({"balance": {"max_cell_ratio": 1.0, "score_bins": [0, 5, 10]}})
    steps = [StepPlan(f"s{i}", f"t{i}", 0, 2, "style", "e", "sft", False, 1.0) for i in range(6)]
    steps += [StepPlan(f"b{i}", f"u{i}", 0, 2, "style", "e", "sft", False, 7.0) for i in range(2)]
    steps += [StepPlan(f"c{i}", f"v{i}", 0, 2, "other", "e", "sft", False, 7.0) for i in range(2)]
    kept, dropped = balance(steps, cfg, seed=0)
    assert len(kept) == 6 and len(dropped) == 4
    assert all(d.key.startswith("s") for d in dropped)
    again, _ = balance(list(reversed(steps)), cfg, seed=0)
    assert [s.key for s in again] == [s.key for s in kept]


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
