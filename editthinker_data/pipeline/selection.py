"""Trajectory filter, step unrolling, RL/SFT split and balancing: pure functions over the
stored scores, so every decision can be re-derived from the trajectory index alone.

- Keep a trajectory only if max_{t>1} S_t >= S_1 + min_gain (min_gain 0 is the paper's
  rule), and truncate it at the best step k (the first turn after turn 1 that reaches that
  maximum). A trajectory with a failed turn is dropped (`turn_failed`) unless
  `failed_turns: judge_stored`: its stored turns are genuine, but it was cut short, so
  its best step and its variance would be those of a prefix.
- Turn t = 2..k becomes one step sample: the thinker sees (I_src, I_{t-1}, T_s, T_{t-1})
  and answers (R_t, S_{t-1}, T_t). If the expert stopped right after k, its stop answer
  becomes one more sample, which teaches the thinker when to stop.
- A kept trajectory goes to RL when the variance of S_1..S_k exceeds theta, else to SFT.
- Balancing works on whole trajectories, so a trajectory's steps (and its stop sample)
  are released together or not at all, and every trajectory count equals what the step
  shards hold. Within each split a (task type, bin of S_1) cell keeps at most
  `max_cell_ratio` times the median cell's step samples: trajectories in a stable hash
  order, the longest prefix that fits (never fewer than one).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import TypedDict

from editthinker_data.config import SelectionConfig
from editthinker_data.core.stats import StageStats
from editthinker_data.io.trajectory_index import TrajectorySummary
from editthinker_data.pipeline.quotas import stable_hash

SPLITS = ("sft", "rl")
EPS = 1e-9  # scores are decimals: 7.1 - 6.0 must count as a gain of 1.1


@dataclass(frozen=True)
class Decision:
    keep: bool  # in the release
    # kept, single_turn, no_improvement, below_min_gain, turn_failed, failed_first_turn, balanced_out
    reason: str
    best_turn: int  # k; 0 when the filter dropped it
    split: str | None = None  # where a trajectory that passed the filter went (or would have gone)


@dataclass(frozen=True)
class StepPlan:
    key: str
    trajectory: str
    partition: int
    turn: int
    task_type: str
    editor: str
    split: str
    stop: bool
    target_score: float  # the score of the image the thinker sees


@dataclass(frozen=True)
class Candidate:
    """A trajectory that passed the filter, with its steps: the unit balancing keeps or drops."""

    key: str
    task_type: str
    split: str
    first_score: float  # S_1: what balancing bins on
    gain: float  # max_{t<=k} S_t - S_1; 0 for a kept single-turn trajectory
    failed_turn: bool
    steps: tuple[StepPlan, ...]


@dataclass
class SelectionResult:
    decisions: dict[str, Decision]
    steps: list[StepPlan]
    trajectory_stats: StageStats  # the filter, on trajectories
    balance_stats: StageStats  # balancing, on trajectories
    step_stats: StageStats  # balancing, on step samples
    splits: dict[str, int]
    trajectory_splits: dict[str, int]
    before_balance: Tally
    after_balance: Tally


def best_gain(traj: TrajectorySummary, which: str) -> float | None:
    """max_{t>1} S_t - S_1, None without a second turn."""
    scores = [t.score(which) for t in traj.turns]
    return max(scores[1:]) - scores[0] if len(scores) > 1 else None


def decide(traj: TrajectorySummary, cfg: SelectionConfig) -> Decision:
    """The trajectory filter alone (balancing comes after, in `select`)."""
    scores = [t.score(cfg.score) for t in traj.turns]
    if not scores:
        return Decision(False, "failed_first_turn", 0)
    if traj.error and cfg.failed_turns == "drop":
        return Decision(False, "turn_failed", 0)
    if len(scores) == 1:
        if cfg.keep_single_turn and traj.stop_reason == "expert_satisfied":
            return Decision(True, "kept", 1)
        return Decision(False, "single_turn", 0)
    best_later = max(scores[1:])
    gain = best_later - scores[0]
    if gain < -EPS:
        return Decision(False, "no_improvement", 0)
    if gain < cfg.min_gain - EPS:
        return Decision(False, "below_min_gain", 0)
    k = next(i for i, s in enumerate(scores) if i >= 1 and s == best_later) + 1
    return Decision(True, "kept", k)


def trajectory_split(traj: TrajectorySummary, k: int, cfg: SelectionConfig) -> str:
    scores = [t.score(cfg.score) for t in traj.turns[:k]]
    variance = statistics.pvariance(scores) if len(scores) > 1 else 0.0
    return "rl" if variance > cfg.rl_variance_threshold else "sft"


def unroll(traj: TrajectorySummary, k: int, split: str, cfg: SelectionConfig) -> list[StepPlan]:
    plans = []
    for t in range(2, k + 1):
        prev = traj.turns[t - 2]
        plans.append(
            StepPlan(
                f"{traj.key}_s{t}",
                traj.key,
                traj.partition,
                t,
                traj.task_type,
                traj.editor,
                split,
                False,
                prev.score(cfg.score),
            )
        )
    stopped_after_best = len(traj.turns) == k and traj.stop_reason == "expert_satisfied"
    if cfg.include_stop_steps and stopped_after_best:
        last = traj.turns[k - 1]
        plans.append(
            StepPlan(
                f"{traj.key}_s{k + 1}",
                traj.key,
                traj.partition,
                k + 1,
                traj.task_type,
                traj.editor,
                split,
                True,
                last.score(cfg.score),
            )
        )
    return plans


def score_bin(score: float, edges: list[float]) -> int:
    for i in range(len(edges) - 1):
        if score < edges[i + 1]:
            return i
    return len(edges) - 2


def balance(
    candidates: list[Candidate], cfg: SelectionConfig, seed: int
) -> tuple[list[Candidate], list[Candidate]]:
    """(kept, dropped) whole trajectories within one split, each sorted by key."""
    if not cfg.balance.enabled or not candidates:
        return sorted(candidates, key=lambda c: c.key), []
    cells: dict[tuple[str, int], list[Candidate]] = defaultdict(list)
    for c in candidates:
        cells[(c.task_type, score_bin(c.first_score, cfg.balance.score_bins))].append(c)
    median = statistics.median(sum(len(c.steps) for c in members) for members in cells.values())
    cap = max(1, int(cfg.balance.max_cell_ratio * median))
    kept, dropped = [], []
    for members in cells.values():
        ordered = sorted(members, key=lambda c: (stable_hash(seed, "balance", c.key), c.key))
        total, cut = 0, len(ordered)
        for i, c in enumerate(ordered):
            if i and total + len(c.steps) > cap:
                cut = i
                break
            total += len(c.steps)
        kept.extend(ordered[:cut])
        dropped.extend(ordered[cut:])
    return sorted(kept, key=lambda c: c.key), sorted(dropped, key=lambda c: c.key)


class Tally(TypedDict):
    """`tally`'s answer, kept in the select report's `selection` as it is."""

    trajectory_splits: dict[str, int]
    splits: dict[str, int]
    by_task_type: dict[str, dict[str, dict[str, int]]]  # split -> task type -> trajectories, steps
    zero_gain: int
    failed_turn: int


def tally(candidates: list[Candidate]) -> Tally:
    """What a set of trajectories releases: per split and task type, trajectories and steps,
    and how many have zero gain or a failed turn."""
    by_type: dict[str, dict[str, dict[str, int]]] = {s: {} for s in SPLITS}
    for c in candidates:
        cell = by_type[c.split].setdefault(c.task_type, {"trajectories": 0, "steps": 0})
        cell["trajectories"] += 1
        cell["steps"] += len(c.steps)
    return {
        "trajectory_splits": {s: sum(v["trajectories"] for v in by_type[s].values()) for s in SPLITS},
        "splits": {s: sum(v["steps"] for v in by_type[s].values()) for s in SPLITS},
        "by_task_type": {s: dict(sorted(by_type[s].items())) for s in SPLITS},
        "zero_gain": sum(1 for c in candidates if c.gain <= EPS),
        "failed_turn": sum(1 for c in candidates if c.failed_turn),
    }


def select(trajectories: list[TrajectorySummary], cfg: SelectionConfig, seed: int) -> SelectionResult:
    decisions: dict[str, Decision] = {}
    traj_stats = StageStats()
    candidates: dict[str, list[Candidate]] = {s: [] for s in SPLITS}
    for traj in sorted(trajectories, key=lambda t: t.key):
        d = decide(traj, cfg)
        if not d.keep:
            decisions[traj.key] = d
            traj_stats.filter(d.reason)
            continue
        traj_stats.keep()
        split = trajectory_split(traj, d.best_turn, cfg)
        decisions[traj.key] = Decision(True, "kept", d.best_turn, split)
        scores = [t.score(cfg.score) for t in traj.turns[: d.best_turn]]
        candidates[split].append(
            Candidate(
                traj.key,
                traj.task_type,
                split,
                scores[0],
                max(scores) - scores[0],
                traj.error is not None,
                tuple(unroll(traj, d.best_turn, split, cfg)),
            )
        )
    balance_stats, step_stats = StageStats(), StageStats()
    kept: list[Candidate] = []
    for split in SPLITS:
        keep, drop = balance(candidates[split], cfg, seed)
        kept.extend(keep)
        balance_stats.keep(len(keep))
        step_stats.keep(sum(len(c.steps) for c in keep))
        if drop:
            balance_stats.filter("balanced_out", len(drop))
            step_stats.filter("balanced_out", sum(len(c.steps) for c in drop))
        for c in drop:
            decisions[c.key] = Decision(False, "balanced_out", decisions[c.key].best_turn, split)
    steps = sorted((s for c in kept for s in c.steps), key=lambda s: (s.partition, s.key))
    before = tally([c for split in SPLITS for c in candidates[split]])
    after = tally(kept)
    return SelectionResult(
        decisions,
        steps,
        traj_stats,
        balance_stats,
        step_stats,
        after["splits"],
        after["trajectory_splits"],
        before,
        after,
    )
