"""The write-steps stage: a run of partitions' selected steps as released step samples (inputs
I_src, I_{t-1}, T_s, T_{t-1}; target R_t, S_t, T_t), WebDataset shards per split. Reads
only the turn images its samples use."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from PIL import Image

from editthinker_data.backends import prompt_templates
from editthinker_data.config import BuildConfig
from editthinker_data.core.layout import STEPS_FILE, StageName, part_name, partition_range, step_shards
from editthinker_data.core.reports import GenerateReport, WriteStepsReport
from editthinker_data.core.schema import Scores, StepSample, decode_image
from editthinker_data.io.pool_snapshot import load_partition, load_source_image, provenance
from editthinker_data.io.shards import ShardSink
from editthinker_data.io.storage import Storage
from editthinker_data.io.tables import read_parquet
from editthinker_data.io.trajectory_index import TrajectorySummary, TurnSummary, load_trajectory_summaries
from editthinker_data.io.wds import WebDataset
from editthinker_data.pipeline.selection import StepPlan
from editthinker_data.stages.base import Stage, read_marker


def read_turns(
    storage: Storage, shards: list[str], wanted: set[str]
) -> tuple[dict[str, Image.Image], dict[str, dict[str, Any]]]:
    """The turn images the step samples use, decoded (the others are skipped undecoded),
    and every turn's score details (the scorer's sub-scores, kept in the shards' JSON and
    not in the trajectory index), by sample key."""
    images: dict[str, Image.Image] = {}
    details: dict[str, dict[str, Any]] = {}
    for shard in shards:
        for sample in WebDataset(str(storage.local_copy(shard)), shardshuffle=False, empty_check=False):
            key = sample["__key__"]
            details[key] = json.loads(sample["json"])["scores"].get("details") or {}
            if key in wanted:
                images[key] = decode_image(sample["png"]).convert("RGB")
    return images, details


def previous_image_key(plan: StepPlan, traj: TrajectorySummary) -> str:
    """The sample key of the image a step starts from: the turn before it."""
    return f"{traj.key}_t{plan.turn - 1}"


def build_step_sample(
    plan: StepPlan,
    traj: TrajectorySummary,
    source: Image.Image,
    images: dict[str, Image.Image],
    templates: dict[str, str] | None = None,
    provenance: dict[str, str] | None = None,
    details: dict[str, dict[str, Any]] | None = None,
) -> StepSample:
    """`details`: each turn's score details by sample key (`read_turns`); the step's scores
    carry them, as the trajectory shards do."""
    turns = {t.index: t for t in traj.turns}
    details = details or {}

    def scores(turn: TurnSummary) -> Scores:
        return Scores(turn.semantic, turn.quality, dict(details.get(f"{traj.key}_t{turn.index}") or {}))

    if plan.stop:
        prev = turns[plan.turn - 1]
        reasoning, instruction, result = traj.final_reasoning or "", prev.instruction, None
    else:
        prev, cur = turns[plan.turn - 1], turns[plan.turn]
        reasoning, instruction = cur.reasoning or "", cur.instruction
        result = scores(cur)
    return StepSample(
        key=plan.key,
        trajectory=traj.key,
        turn=plan.turn,
        task_type=traj.task_type,
        editor=traj.editor,
        source_instruction=traj.source_instruction,
        previous_instruction=prev.instruction,
        reasoning=reasoning,
        scores=scores(prev),
        instruction=instruction,
        stop=plan.stop,
        result_scores=result,
        split=plan.split,
        prompt_templates=templates or {},
        provenance=provenance or {},
        source_image=source,
        previous_image=images[f"{traj.key}_t{prev.index}"],
    )


def _write_steps(cfg: BuildConfig, storage: Storage, unit: str) -> WriteStepsReport:
    """A run of partitions (`select`'s write_runs) into shared shards per split, one partition
    at a time: only one partition's turn images are decoded at once, and samples go out in
    (partition, key) order, the order of one shard per partition before them."""
    partitions = list(partition_range(unit))
    templates = prompt_templates(cfg.backend_specs())
    sinks = {
        split: ShardSink(
            storage, step_shards(split, unit), cfg.output.shard_max_samples, cfg.output.shard_max_bytes
        )
        for split in ("sft", "rl")
    }
    rows = read_parquet(storage, STEPS_FILE, filters=[("partition", "in", partitions)])
    plans: dict[int, list[StepPlan]] = {}
    for row in rows:
        plans.setdefault(row["partition"], []).append(StepPlan(**row))
    counts: Counter[str] = Counter()
    for partition in partitions:
        if partition in plans:
            _write_partition(
                cfg, storage, partition, sorted(plans[partition], key=lambda p: p.key), sinks, templates
            )
            counts.update(plan.split for plan in plans[partition])
    shards = {split: sink.close() for split, sink in sinks.items()}
    return WriteStepsReport(partitions=partitions, samples=dict(counts), shards=shards)


def _write_partition(
    cfg: BuildConfig,
    storage: Storage,
    partition: int,
    plans: list[StepPlan],
    sinks: dict[str, ShardSink],
    templates: dict[str, str],
) -> None:
    summaries = {s.key: s for s in load_trajectory_summaries(storage, [partition])}
    gen = read_marker(storage, StageName.GENERATE, part_name(partition), cfg.fingerprint(), GenerateReport)
    wanted = {previous_image_key(plan, summaries[plan.trajectory]) for plan in plans}
    images, details = read_turns(storage, [s.url for s in gen.shards], wanted) if gen else ({}, {})
    entries = {e.key: e for e in load_partition(storage, partition)}
    sources: dict[str, Image.Image] = {}
    for plan in plans:
        if plan.trajectory not in sources:
            sources[plan.trajectory] = load_source_image(entries[plan.trajectory])
        sample = build_step_sample(
            plan,
            summaries[plan.trajectory],
            sources[plan.trajectory],
            images,
            templates,
            provenance(entries[plan.trajectory]),
            details,
        )
        sinks[plan.split].write(sample.to_wds())


class WriteStepsStage(Stage[WriteStepsReport]):
    """A run of partitions' step shards. Unmarked: cheap next to generate, and rewritten whole
    by a rerun (same runs, names and bytes), so it never mixes two selections."""

    name = StageName.WRITE_STEPS
    report = WriteStepsReport
    marked = False

    def process(self, storage: Storage, unit: str) -> WriteStepsReport:
        return _write_steps(self.cfg, storage, unit)
