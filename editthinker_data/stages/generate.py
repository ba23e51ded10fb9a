"""The generate stage: one partition's think-while-edit rollouts, run by a `RolloutRunner`
(the Ray scheduler over actor pools in a build, a plain in-process loop in tests and
benchmarks), written as trajectory shards and the trajectory index."""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Any

from editthinker_data.backends import prompt_templates
from editthinker_data.config import BuildConfig, Resources
from editthinker_data.core.layout import (
    journal_prefix,
    part_name,
    partition_of,
    trajectory_index,
    trajectory_shards,
    usage_prefix,
)
from editthinker_data.core.schema import SourcePair, Trajectory, TurnFailure, trajectory_turn_records
from editthinker_data.core.stats import StageStats, Usage, add_usage, merge_usage
from editthinker_data.io.journal import Journal
from editthinker_data.io.pool_snapshot import PoolEntry, load_partition, load_source_image, provenance
from editthinker_data.io.shards import ShardInfo, ShardSink
from editthinker_data.io.storage import Storage
from editthinker_data.io.tables import TURN_SCHEMA, write_parquet
from editthinker_data.pipeline.loop import Names, Rollout, rollout
from editthinker_data.stages.base import Stage, failure, run_unit
from editthinker_data.stages.versions import Reuse

# runner(pairs, make_rollout, on_done(i, trajectory), on_usage=on_usage(backend, cost),
# prepare=prepare(pair)): runs `make_rollout(prepare(pair))` for every pair (`prepare` reads
# the source image, or settles the pair with a failed trajectory), reporting each one's end
# and each batch's cost as they happen, and returns its counters. The local loop, the Ray
# scheduler in this process and the remote runner (a unit on a cluster worker) are the three.
RolloutRunner = Callable[..., Any]


def turn_rows(traj: Trajectory, partition: int, shard: str) -> list[dict[str, Any]]:
    rows = []
    for t in traj.turns:
        rows.append(
            {
                "trajectory": traj.key,
                "pair_id": traj.pair.id,
                "partition": partition,
                "task_type": traj.pair.task_type,
                "editor": traj.pair.editor,
                "source_instruction": traj.pair.instruction,
                "stop_reason": traj.stop_reason,
                "num_turns": len(traj.turns),
                "error": traj.error,
                "final_reasoning": traj.final.reasoning if traj.final else None,
                "final_instruction": traj.final.instruction if traj.final else None,
                "turn": t.index,
                "instruction": t.instruction,
                "reasoning": t.reasoning,
                "semantic": t.scores.semantic,
                "quality": t.scores.quality,
                "overall": t.scores.overall,
                "seed": t.seed,
                "edit_s": t.timings.get("edit_s"),
                "score_s": t.timings.get("score_s"),
                "refine_s": t.timings.get("refine_s"),
                "shard": shard,
                "sample_key": f"{traj.key}_t{t.index}",
            }
        )
    return rows


class GenerateStage(Stage):
    """Think-while-edit rollouts for one partition; trajectories are written in pair order
    whatever order they finish in, so shards are byte-identical however the work ran.
    Finished trajectories are journaled as they come, so a crash loses at most
    `run.journal_every`; a transient failure leaves the unit unmarked for a rerun."""

    name = "generate"
    # A unit mostly waits on the dispatcher; its own work (reading sources, encoding turn
    # images) is small beside the models'. It asks Ray for no CPU, so it can always be placed
    # even when the backend actors hold every CPU; the flow bounds how many run at once. It
    # runs beside the dispatcher, on the driver's node (the head): a lost worker node takes
    # only actors with it, whose batches are retried, never a unit with its unflushed journal.
    resources = Resources(num_cpus=0)
    placement = "beside_driver"

    def process(self, storage: Storage, unit: str, runner: RolloutRunner) -> dict[str, Any]:
        return _generate(self.cfg, storage, partition_of(unit), runner)

    def after_marker(self, storage: Storage, unit: str) -> None:
        Journal(storage, journal_prefix(self.name, unit), 1).clear()
        UsageLog(storage, usage_prefix(unit)).clear()


def run_generate(cfg: BuildConfig, storage: Storage, partition: int, runner: RolloutRunner) -> dict[str, Any]:
    """One partition's generate unit, in this process."""
    return run_unit(GenerateStage(cfg), storage, part_name(partition), runner=runner)


def _generate(cfg: BuildConfig, storage: Storage, partition: int, executor: RolloutRunner) -> dict[str, Any]:
    unit = part_name(partition)
    stats = StageStats()
    failures: list[dict[str, str]] = []
    # Pairs without their images: each source image is read and decoded only when its rollout
    # is admitted (`prepare`, run by the runner), so a unit holds a bounded window of them.
    pairs: list[SourcePair] = []
    entries: dict[str, PoolEntry] = {}
    origins: dict[str, dict[str, str]] = {}  # pair id -> provenance, for every turn's metadata
    for entry in load_partition(storage, partition):
        origins[entry.id] = provenance(entry)
        entries[entry.id] = entry
        pairs.append(
            SourcePair(
                entry.id,
                entry.instruction,
                None,
                entry.task_type,
                entry.image_sha256,
                entry.origin,
                entry.editor,
                partition,
            )
        )

    def prepare(pair: SourcePair) -> SourcePair | Trajectory:
        try:
            return dataclasses.replace(pair, image=load_source_image(entries[pair.id]))
        except (OSError, ValueError) as err:  # settled before it starts: counted, journaled
            reason = TurnFailure(0, "load", "source", pair.origin, False, "image_unreadable")
            return Trajectory(pair, [], "failed", error=str(err), failure=reason)

    names = Names(cfg.expert.name, cfg.scorer.name, cfg.thinker.name if cfg.thinker else None)
    templates = prompt_templates(cfg.backend_specs())

    def make(pair: SourcePair) -> Rollout:
        return rollout(
            pair, names, max_turns=cfg.loop.max_turns, seed=cfg.seed, seed_policy=cfg.loop.seed_policy
        )

    sink = ShardSink(
        storage, trajectory_shards(unit), cfg.output.shard_max_samples, cfg.output.shard_max_bytes
    )
    rows: list[dict[str, Any]] = []
    # What this unit cost, over every run of it: earlier runs' sums, plus each batch of this
    # one as it comes back; saved with every journal batch, so a crash loses only the usage
    # of work it also loses.
    usage_log = UsageLog(storage, usage_prefix(unit))
    earlier = merge_usage(*usage_log.load())
    live: Usage = {}

    def on_usage(backend: str, cost: dict[str, float]) -> None:
        add_usage(live, backend, cost)

    journal = Journal(
        storage,
        journal_prefix("generate", unit),
        cfg.run.journal_every,
        on_flush=lambda: usage_log.save(merge_usage(earlier, live)),
    )
    finished: dict[int, Trajectory] = journal.load(pairs)  # a previous run's finished pairs
    resumed = len(finished)
    reuse = Reuse.open(cfg)  # the trajectory store of a versioned build: unchanged pairs are not rerun
    reused = reuse.fill(pairs, finished)
    todo = [i for i in range(len(pairs)) if i not in finished]
    next_to_write = 0
    stop_reasons: Counter[str] = Counter()
    backend_failures: Counter[str] = Counter()
    failed_pairs = 0
    transient: list[Trajectory] = []  # no result yet: not journaled, retried by a rerun

    def write(traj: Trajectory) -> None:
        nonlocal failed_pairs
        if traj.failure and traj.failure.stage == "load":  # its source image could not be read
            stats.fail("image_unreadable")
            failures.append(
                failure("generate", traj.pair.origin, traj.pair.id, "image_unreadable", traj.error)
            )
            failed_pairs += 1
            return
        stop_reasons[traj.stop_reason] += 1
        if traj.error:  # final: counted against the backend that caused it
            f = traj.failure
            reason = f.reason if f else "turn_failed"
            detail = f"{f.who}: {traj.error}" if f else traj.error
            failures.append(failure("generate", traj.pair.origin, traj.pair.id, reason, detail))
            backend_failures[f.who if f else "unknown backend"] += 1
            failed_pairs += 1
        if not traj.turns:
            stats.fail(traj.failure.reason if traj.failure else "first_turn_failed")
            return
        stats.keep()
        extra = {"prompt_templates": templates, "provenance": origins[traj.pair.id]}
        for sample in trajectory_turn_records(traj, extra):
            sink.write(sample)
        rows.extend(turn_rows(traj, partition, ""))

    def drain() -> None:
        # Write in pair order whatever the finishing order, so shard bytes are reproducible.
        nonlocal next_to_write
        while next_to_write in finished:
            write(finished.pop(next_to_write))
            next_to_write += 1

    def on_done(k: int, traj: Trajectory) -> None:
        if traj.transient:
            transient.append(traj)
            return
        finished[todo[k]] = traj
        journal.add(traj)
        if not (traj.failure and traj.failure.stage == "load"):  # a source read fails again next time
            reuse.put(traj)
        drain()

    try:
        drain()
        counters = executor([pairs[i] for i in todo], make, on_done, on_usage=on_usage, prepare=prepare) or {}
    except BaseException:
        sink.abort()  # the journal keeps what finished; a rerun writes this unit's shards anew
        # What this attempt spent stays counted: its retry (or a rerun) redoes the unjournaled
        # pairs and pays for them again.
        with contextlib.suppress(Exception):
            usage_log.save(merge_usage(earlier, live))
        raise
    journal.flush()
    usage = merge_usage(earlier, live)
    if transient:
        # Not done: no marker, so a rerun runs this unit again, and only its transient pairs.
        sink.abort()
        usage_log.save(usage)
        return {
            "partition": partition,
            "incomplete": True,
            "pairs": len(pairs),
            "transient": _transient_report(transient),
            "usage": usage,
        }
    shards = sink.close()
    # A shard boundary may fall inside a trajectory's turns: record each row's real shard.
    _fix_shard_names(rows, shards)
    write_parquet(storage, trajectory_index(partition), rows, TURN_SCHEMA)
    return {
        "partition": partition,
        "stats": stats.to_dict(),
        "stop_reasons": dict(stop_reasons),
        "turns": len(rows),
        "shards": [s.to_dict() for s in shards],
        "failures": failures,
        "failed_pairs": failed_pairs,
        "backend_failures": dict(sorted(backend_failures.items())),
        "scheduler": counters,
        "usage": usage,
        "resumed": resumed,
        "reused": reused,
    }


class UsageLog:
    """What earlier runs of an unfinished unit spent (one JSON per run), so the unit's
    marker reports the whole cost, not the last process's."""

    def __init__(self, storage: Storage, prefix: str):
        self.storage, self.prefix = storage, prefix

    def load(self) -> list[dict[str, Any]]:
        return [self.storage.read_json(n) for n in self.storage.list(self.prefix)]

    def save(self, usage: dict[str, Any]) -> None:
        """Replace the log by one entry holding the sum so far."""
        name = f"{self.prefix}/usage.json"
        self.storage.write_json(name, usage)
        for other in self.storage.list(self.prefix):
            if other != name:
                self.storage.delete(other)

    def clear(self) -> None:
        for name in self.storage.list(self.prefix):
            self.storage.delete(name)


def _transient_report(trajs: list[Trajectory]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for t in trajs:
        entry = out.setdefault(t.failure.who, {"count": 0, "example": t.error, "pairs": []})
        entry["count"] += 1
        entry["pairs"].append(t.pair.id)
    return out


def _fix_shard_names(rows: list[dict[str, Any]], shards: list[ShardInfo]) -> None:
    i = 0
    for shard in shards:
        for _ in range(shard.samples):
            rows[i]["shard"] = shard.url
            i += 1
