"""Trajectory filter, step unrolling, RL/SFT split and balancing: pure functions over the
stored scores, so every decision can be re-derived from the trajectory index alone.

- Keep a trajectory only if max_{t>1} S_t >= S_1, and truncate it at the best step k (the
  first turn after turn 1 that reaches that maximum).
- Turn t = 2..k becomes one step sample: the thinker sees (I_src, I_{t-1}, T_s, T_{t-1})
  and answers (R_t, S_{t-1}, T_t). If the expert stopped right after k, its stop answer
  becomes one more sample, which teaches the thinker when to stop.
- A kept trajectory goes to RL when the variance of S_1..S_k exceeds theta, else to SFT.
- Within each split, a (task type, score bin) cell keeps at most `max_cell_ratio` times the
  median cell size; which samples stay is a stable hash of their keys.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from editthinker_data.config import SelectionConfig
from editthinker_data.pooling import stable_hash
from editthinker_data.stats import StageStats


@dataclass(frozen=True)
class TurnSummary:
    index: int
    instruction: str
    reasoning: str | None
    semantic: float
    quality: float
    overall: float

    def score(self, which: str) -> float:
        return {"overall": self.overall, "semantic": self.semantic, "quality": self.quality}[which]


@dataclass(frozen=True)
class TrajectorySummary:
    key: str
    partition: int
    task_type: str
    editor: str
    source_instruction: str
    stop_reason: str
    turns: tuple[TurnSummary, ...]
    final_reasoning: str | None = None
    final_instruction: str | None = None


@dataclass(frozen=True)
class Decision:
    keep: bool
    reason: str  # "kept", "single_turn", "no_improvement", "failed_first_turn"
    best_turn: int  # k, 0 when not kept


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
    target_score: float  # the score of the image the thinker sees: what balancing bins on


@dataclass
class SelectionResult:
    decisions: dict[str, Decision]
    steps: list[StepPlan]
    trajectory_stats: StageStats
    step_stats: StageStats
    splits: dict[str, int] = field(default_factory=dict)
    trajectory_splits: dict[str, int] = field(default_factory=dict)


def decide(traj: TrajectorySummary, cfg: SelectionConfig) -> Decision:
    scores = [t.score(cfg.score) for t in traj.turns]
    if not scores:
        return Decision(False, "failed_first_turn", 0)
    if len(scores) == 1:
        if cfg.keep_single_turn and traj.stop_reason == "expert_satisfied":
            return Decision(True, "kept", 1)
        return Decision(False, "single_turn", 0)
    best_later = max(scores[1:])
    if best_later < scores[0]:
        return Decision(False, "no_improvement", 0)
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


def balance(steps: list[StepPlan], cfg: SelectionConfig, seed: int) -> tuple[list[StepPlan], list[StepPlan]]:
    """(kept, dropped) within one split."""
    if not cfg.balance.enabled or not steps:
        return list(steps), []
    cells: dict[tuple[str, int], list[StepPlan]] = defaultdict(list)
    for s in steps:
        cells[(s.task_type, score_bin(s.target_score, cfg.balance.score_bins))].append(s)
    median = statistics.median(len(v) for v in cells.values())
    cap = max(1, int(cfg.balance.max_cell_ratio * median))
    kept, dropped = [], []
    for members in cells.values():
        ordered = sorted(members, key=lambda s: stable_hash(seed, "balance", s.key))
        kept.extend(ordered[:cap])
        dropped.extend(ordered[cap:])
    return sorted(kept, key=lambda s: (s.partition, s.key)), dropped


def select(trajectories: list[TrajectorySummary], cfg: SelectionConfig, seed: int) -> SelectionResult:
    decisions: dict[str, Decision] = {}
    traj_stats = StageStats()
    by_split: dict[str, list[StepPlan]] = {"sft": [], "rl": []}
    traj_splits = {"sft": 0, "rl": 0}
    for traj in sorted(trajectories, key=lambda t: t.key):
        d = decide(traj, cfg)
        decisions[traj.key] = d
        if not d.keep:
            traj_stats.filter(d.reason)
            continue
        traj_stats.keep()
        split = trajectory_split(traj, d.best_turn, cfg)
        traj_splits[split] += 1
        by_split[split].extend(unroll(traj, d.best_turn, split, cfg))
    step_stats = StageStats()
    steps: list[StepPlan] = []
    for split in ("sft", "rl"):
        kept, dropped = balance(by_split[split], cfg, seed)
        step_stats.keep(len(kept))
        if dropped:
            step_stats.filter("balanced_out", len(dropped))
        steps.extend(kept)
    splits = {s: sum(1 for p in steps if p.split == s) for s in ("sft", "rl")}
    return SelectionResult(decisions, steps, traj_stats, step_stats, splits, traj_splits)
