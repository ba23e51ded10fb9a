"""Figures for the dataset card (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from editthinker_data.core.schema import TASK_TYPES


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_figures(build, out_dir: Path) -> list[Path]:
    """build: an editthinker_data.release.report.Build. Returns the files written."""
    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    trajs = build.trajectories
    decisions = build.decisions()
    steps = build.steps()
    written = []

    def save(fig, name):
        path = out_dir / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    # 1. task types: pooled, kept trajectories, steps per split
    pooled = {t: build.stats["pool_by_task_type"].get(t, {}).get("kept", 0) for t in TASK_TYPES}
    kept = Counter(t.task_type for t in trajs if decisions.get(t.key, {}).get("keep"))
    sft = Counter(s["task_type"] for s in steps if s["split"] == "sft")
    rl = Counter(s["task_type"] for s in steps if s["split"] == "rl")
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.2
    xs = range(len(TASK_TYPES))
    for i, (label, counts) in enumerate(
        [("pooled pairs", pooled), ("kept trajectories", kept), ("SFT steps", sft), ("RL steps", rl)]
    ):
        ax.bar(
            [x + (i - 1.5) * width for x in xs], [counts.get(t, 0) for t in TASK_TYPES], width, label=label
        )
    ax.set_xticks(list(xs), TASK_TYPES)
    ax.set_ylabel("count")
    ax.set_title("Task types through the pipeline")
    ax.legend()
    save(fig, "task_types.png")

    # 2. first-turn vs best score
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = [i * 0.5 for i in range(21)]
    ax.hist([t.turns[0].overall for t in trajs], bins=bins, alpha=0.6, label="S_1 (first turn)")
    ax.hist([max(x.overall for x in t.turns) for t in trajs], bins=bins, alpha=0.6, label="best turn")
    ax.set_xlabel("overall score (0-10)")
    ax.set_ylabel("trajectories")
    ax.set_title("First-turn vs. best score")
    ax.legend()
    save(fig, "scores_first_vs_best.png")

    # 3. turns per trajectory
    turns = Counter(len(t.turns) for t in trajs)
    fig, ax = plt.subplots(figsize=(6, 4))
    ks = sorted(turns)
    ax.bar(ks, [turns[k] for k in ks])
    ax.set_xticks(ks)
    ax.set_xlabel("turns")
    ax.set_ylabel("trajectories")
    ax.set_title("Turns per trajectory")
    save(fig, "turns_per_trajectory.png")

    # 4. acceptance by editor and by task type
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, dim in zip(axes, ("editor", "task_type"), strict=True):
        total: Counter[str] = Counter()
        ok: Counter[str] = Counter()
        for t in trajs:
            total[getattr(t, dim)] += 1
            ok[getattr(t, dim)] += bool(decisions.get(t.key, {}).get("keep"))
        names = sorted(total)
        ax.bar(names, [ok[n] / total[n] for n in names])
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of trajectories kept")
        ax.set_title(f"Acceptance by {dim.replace('_', ' ')}")
        ax.tick_params(axis="x", rotation=20)
    save(fig, "acceptance.png")

    # 5. score gain per turn
    gains = defaultdict(list)
    for t in trajs:
        for prev, cur in zip(t.turns, t.turns[1:], strict=False):
            gains[cur.index].append(cur.overall - prev.overall)
    fig, ax = plt.subplots(figsize=(6, 4))
    ts = sorted(gains)
    if ts:
        ax.boxplot([gains[t] for t in ts], positions=ts)
        ax.axhline(0, color="gray", lw=0.8)
    ax.set_xlabel("turn t")
    ax.set_ylabel("S_t - S_{t-1}")
    ax.set_title("Score gain per turn")
    save(fig, "gain_per_turn.png")
    return written
