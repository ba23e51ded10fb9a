"""The select stage: every trajectory's keep/drop decision, its best step, the RL/SFT
split and the balancing (pipeline/selection.py), over the trajectory indexes of all
partitions; writes selection/decisions.parquet and selection/steps.parquet, and says which
partitions' step samples the write stage packs into shared shards."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict

from editthinker_data.config import BuildConfig
from editthinker_data.core.layout import DECISIONS_FILE, STEPS_FILE, StageName
from editthinker_data.core.reports import SelectReport
from editthinker_data.io.storage import Storage
from editthinker_data.io.tables import DECISION_SCHEMA, STEP_SCHEMA, write_parquet
from editthinker_data.io.trajectory_index import load_trajectory_summaries
from editthinker_data.pipeline.packing import pack_partitions
from editthinker_data.pipeline.selection import StepPlan, select
from editthinker_data.stages.base import Stage


def _select(cfg: BuildConfig, storage: Storage, partitions: Sequence[int]) -> SelectReport:
    summaries = load_trajectory_summaries(storage, partitions)
    result = select(summaries, cfg.selection, cfg.seed)
    write_parquet(storage, STEPS_FILE, [asdict(s) for s in result.steps], STEP_SCHEMA)
    write_parquet(
        storage,
        DECISIONS_FILE,
        [{"trajectory": k, **asdict(d)} for k, d in sorted(result.decisions.items())],
        DECISION_SCHEMA,
    )
    return SelectReport(
        trajectory_filter=result.trajectory_stats.to_dict(),
        balance=result.balance_stats.to_dict(),
        steps=result.step_stats.to_dict(),
        splits=result.splits,
        trajectory_splits=result.trajectory_splits,
        by_task_type=result.after_balance["by_task_type"],
        selection={"before_balance": result.before_balance, "after_balance": result.after_balance},
        write_runs=pack_partitions(sorted(partitions), _counts(result.steps), cfg.output.shard_max_samples),
    )


def _counts(steps: Sequence[StepPlan]) -> dict[int, dict[str, int]]:
    """Step samples per partition and split."""
    counts: Counter[tuple[int, str]] = Counter((s.partition, s.split) for s in steps)
    out: dict[int, dict[str, int]] = {}
    for (partition, split), n in counts.items():
        out.setdefault(partition, {})[split] = n
    return out


class SelectStage(Stage[SelectReport]):
    """One unit over every partition's trajectory index; unmarked (cheap, and its inputs
    are the finished generate units, so a rerun decides the same)."""

    name = StageName.SELECT
    report = SelectReport
    marked = False

    def process(self, storage: Storage, unit: str, partitions: Sequence[int]) -> SelectReport:
        return _select(self.cfg, storage, partitions)
