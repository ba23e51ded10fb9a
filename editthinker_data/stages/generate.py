"""The generate stage: one partition's think-while-edit rollouts, run by a `RolloutRunner`
(the Ray scheduler over actor pools in a build, a plain in-process loop in tests and
benchmarks), written as trajectory shards and the trajectory index."""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any

from editthinker_data.backends import prompt_templates
from editthinker_data.backends.transport.edit_store import open_edit_store, trajectory_edit_keys
from editthinker_data.config import BuildConfig, Resources
from editthinker_data.core.layout import (
    StageName,
    journal_prefix,
    part_name,
    partition_of,
    trajectory_index,
    trajectory_shards,
    usage_prefix,
)
from editthinker_data.core.reports import GenerateReport, ShardInfo, TransientPairs
from editthinker_data.core.schema import SourcePair, Trajectory, Turn, TurnFailure, trajectory_turn_records
from editthinker_data.core.stats import StageStats, Usage, add_usage, merge_usage
from editthinker_data.io.journal import Journal
from editthinker_data.io.pool_snapshot import PoolEntry, load_partition, load_source_image, provenance
from editthinker_data.io.shards import ShardSink
from editthinker_data.io.storage import Storage
from editthinker_data.io.tables import TURN_SCHEMA, write_parquet
from editthinker_data.io.unit_progress import UnitProgress
from editthinker_data.pipeline.loop import Names, Rollout, rollout
from editthinker_data.pipeline.runner import RolloutRunner
from editthinker_data.stages.base import Stage, backend_context, failure
from editthinker_data.stages.versions import Reuse


def turn_row(traj: Trajectory, t: Turn, partition: int, shard: str) -> dict[str, Any]:
    """One turn's row in the partition's trajectory index (the table select reads)."""
    return {
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


class GenerateStage(Stage[GenerateReport]):
    """Think-while-edit rollouts for one partition; trajectories are written in pair order
    whatever order they finish in, so shards are byte-identical however the work ran.
    Finished trajectories are journaled as they come, so a crash loses at most
    `run.journal_every`; a transient failure leaves the unit unmarked for a rerun."""

    name = StageName.GENERATE
    report = GenerateReport
    # A unit mostly waits on the dispatcher; its own work (reading sources, encoding turn
    # images) is small beside the models'. It asks Ray for no CPU, so it can always be placed
    # even when the backend actors hold every CPU; the flow bounds how many run at once. It
    # runs beside the dispatcher, on the driver's node (the head): a lost worker node takes
    # only actors with it, whose batches are retried, never a unit with its unflushed journal.
    resources = Resources(num_cpus=0)
    placement = "beside_driver"

    def process(self, storage: Storage, unit: str, runner: RolloutRunner) -> GenerateReport:
        return _generate(self.cfg, storage, partition_of(unit), runner)

    def after_marker(self, storage: Storage, unit: str) -> None:
        Journal(storage, journal_prefix(self.name, unit), 1).clear()
        UsageLog(storage, usage_prefix(unit)).clear()
        UnitProgress(storage, unit, 0, {}).clear()


@dataclass
class PartitionPairs:
    """A partition's pairs without their images (each source image is read and decoded only
    when its rollout is admitted, so a unit holds a bounded window of them), and what each
    turn's metadata says of where its pair came from."""

    partition: int
    pairs: list[SourcePair]
    entries: dict[str, PoolEntry]
    origins: dict[str, dict[str, str]]

    @classmethod
    def load(cls, storage: Storage, partition: int) -> PartitionPairs:
        out = cls(partition, [], {}, {})
        for entry in load_partition(storage, partition):
            out.origins[entry.id] = provenance(entry)
            out.entries[entry.id] = entry
            out.pairs.append(
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
        return out

    def prepare(self, pair: SourcePair) -> SourcePair | Trajectory:
        """The pair with its source image, or a failed trajectory when it cannot be read."""
        try:
            return dataclasses.replace(pair, image=load_source_image(self.entries[pair.id]))
        except (OSError, ValueError) as err:  # settled before it starts: counted, journaled
            reason = TurnFailure(0, "load", "source", pair.origin, False, "image_unreadable")
            return Trajectory(pair, [], "failed", error=str(err), failure=reason)


class UnitUsage:
    """What this unit cost, over every run of it: earlier runs' sums plus each batch of this
    one as it comes back; saved with every journal batch, so a crash loses only the usage of
    work it also loses."""

    def __init__(self, storage: Storage, unit: str):
        self.log = UsageLog(storage, usage_prefix(unit))
        self.earlier = merge_usage(*self.log.load())
        self.live: Usage = {}

    def add(self, backend: str, cost: dict[str, float]) -> None:
        add_usage(self.live, backend, cost)

    @property
    def total(self) -> Usage:
        return merge_usage(self.earlier, self.live)

    def save(self) -> None:
        self.log.save(self.total)


class PartitionWriter:
    """Finished trajectories in, in any order; trajectory shards and index rows out, in pair
    order (a reorder buffer before the shard sink), so the bytes do not depend on how the
    work ran. Counts what it writes and what failed, by reason and by backend."""

    def __init__(self, cfg: BuildConfig, storage: Storage, work: PartitionPairs):
        self.work = work
        self.sink = ShardSink(
            storage,
            trajectory_shards(part_name(work.partition)),
            cfg.output.shard_max_samples,
            cfg.output.shard_max_bytes,
        )
        self.extra = {"prompt_templates": prompt_templates(cfg.backend_specs())}
        self.editors = {e.name: e for e in cfg.editors}
        self.edits: list[str] = []  # the edit store's keys of every trajectory written
        self.waiting: dict[int, Trajectory] = {}
        self.next = 0  # the next pair index to write
        self.rows: list[dict[str, Any]] = []
        self.stats = StageStats()
        self.failures: list[dict[str, str]] = []
        self.stop_reasons: Counter[str] = Counter()
        self.backend_failures: Counter[str] = Counter()
        self.failed_pairs = 0

    def put(self, index: int, traj: Trajectory) -> None:
        self.waiting[index] = traj
        while self.next in self.waiting:
            self._write(self.waiting.pop(self.next))
            self.next += 1

    def _write(self, traj: Trajectory) -> None:
        pair = traj.pair
        if traj.failure and traj.failure.stage == "load":  # its source image could not be read
            self.stats.fail("image_unreadable")
            self.failures.append(
                failure("generate", pair.origin, pair.id, "image_unreadable", traj.error or "")
            )
            self.failed_pairs += 1
            return
        self.stop_reasons[traj.stop_reason] += 1
        if traj.error:  # final: counted against the backend that caused it
            f = traj.failure
            reason = f.reason if f else "turn_failed"
            detail = f"{f.who}: {traj.error}" if f else traj.error
            self.failures.append(failure("generate", pair.origin, pair.id, reason, detail))
            self.backend_failures[f.who if f else "unknown backend"] += 1
            self.failed_pairs += 1
        if not traj.turns:
            self.stats.fail(traj.failure.reason if traj.failure else "first_turn_failed")
            return
        self.stats.keep()
        if pair.editor in self.editors:
            self.edits += trajectory_edit_keys(self.editors[pair.editor], pair.image_sha256, traj.turns)
        extra = {**self.extra, "provenance": self.work.origins[pair.id]}
        for sample, turn in zip(trajectory_turn_records(traj, extra), traj.turns, strict=True):
            shard = self.sink.write(sample)
            self.rows.append(turn_row(traj, turn, self.work.partition, shard))

    def abort(self) -> None:
        """Drop the shard being assembled: the journal keeps what finished, and a rerun
        writes this unit's shards anew."""
        self.sink.abort()

    def close(self) -> list[ShardInfo]:
        return self.sink.close()


def _generate(cfg: BuildConfig, storage: Storage, partition: int, runner: RolloutRunner) -> GenerateReport:
    unit = part_name(partition)
    work = PartitionPairs.load(storage, partition)
    usage = UnitUsage(storage, unit)
    # How far this unit is, for `status`: one small object saved with each journal batch.
    progress = UnitProgress(storage, unit, len(work.pairs), _prices(cfg))

    def on_flush() -> None:
        usage.save()
        progress.save()

    journal = Journal(storage, journal_prefix(StageName.GENERATE, unit), cfg.run.journal_every, on_flush)
    writer = PartitionWriter(cfg, storage, work)

    # Resume: a previous run's finished pairs, and a versioned build's unchanged ones.
    finished = journal.load(work.pairs)
    resumed = len(finished)
    reuse = Reuse.open(cfg)
    reused = reuse.fill(work.pairs, finished)
    for i in sorted(finished):
        progress.count(finished[i])
        writer.put(i, finished[i])
    progress.save()
    todo = [i for i in range(len(work.pairs)) if i not in finished]

    # Run.
    transient: list[Trajectory] = []  # no result yet: not journaled, retried by a rerun

    def on_done(k: int, traj: Trajectory) -> None:
        if traj.transient:
            transient.append(traj)
            return
        progress.count(traj)
        journal.add(traj)
        if not (traj.failure and traj.failure.stage == "load"):  # a source read fails again next time
            reuse.put(traj)
        writer.put(todo[k], traj)

    names = Names(cfg.expert.name, cfg.scorer.name, cfg.thinker.name if cfg.thinker else None)

    def make(pair: SourcePair) -> Rollout:
        return rollout(
            pair, names, max_turns=cfg.loop.max_turns, seed=cfg.seed, seed_policy=cfg.loop.seed_policy
        )

    try:
        counters = (
            runner([work.pairs[i] for i in todo], make, on_done, on_usage=usage.add, prepare=work.prepare)
            or {}
        )
    except BaseException as err:
        writer.abort()
        # What this attempt spent stays counted: its retry (or a rerun) redoes the unjournaled
        # pairs and pays for them again.
        with contextlib.suppress(Exception):
            usage.save()
        with contextlib.suppress(Exception):
            progress.save("error", error=f"{type(err).__name__}: {err}"[:500])
        raise
    journal.flush()
    # The edits of every journaled trajectory are safe in it: the store keeps only the rest
    # (a transient rollout's, which a rerun takes back).
    store = open_edit_store(backend_context(cfg, storage.url))
    if store is not None:
        store.drop(writer.edits)

    # Abort: not done, so no marker; a rerun runs this unit again, and only its transient pairs.
    if transient:
        writer.abort()
        usage.save()
        unanswered: dict[str, Counter[str]] = {}
        for t in transient:
            who, reason = (
                (t.failure.who, t.failure.reason) if t.failure else ("unknown backend", "unreachable")
            )
            unanswered.setdefault(who, Counter())[reason] += 1
        progress.save("incomplete", transient={who: dict(c) for who, c in sorted(unanswered.items())})
        return GenerateReport(
            partition=partition,
            incomplete=True,
            pairs=len(work.pairs),
            transient=_transient_report(transient),
            usage=usage.total,
        )

    # Finish.
    shards = writer.close()
    write_parquet(storage, trajectory_index(partition), writer.rows, TURN_SCHEMA)
    return GenerateReport(
        partition=partition,
        stats=writer.stats.to_dict(),
        stop_reasons=dict(writer.stop_reasons),
        turns=len(writer.rows),
        shards=shards,
        failures=writer.failures,
        failed_pairs=writer.failed_pairs,
        backend_failures=dict(sorted(writer.backend_failures.items())),
        scheduler=counters,
        usage=usage.total,
        resumed=resumed,
        reused=reused,
        progress=progress.stamp("finished"),  # the record itself goes with the journal
    )


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


def _prices(cfg: BuildConfig) -> dict[str, list[float]]:
    """USD per million tokens in and out, by usage key, so `status` prices usage so far."""
    return {
        f"{role}/{spec.name}": [spec.price.input_per_mtok, spec.price.output_per_mtok]
        for role, spec in cfg.backend_specs()
        if role != "editor"
    }


def _transient_report(trajs: list[Trajectory]) -> dict[str, TransientPairs]:
    out: dict[str, TransientPairs] = {}
    for t in trajs:
        who = t.failure.who if t.failure else "unknown backend"
        seen = out.get(who)
        out[who] = TransientPairs(
            count=(seen.count if seen else 0) + 1,
            example=seen.example if seen else (t.error or ""),
            pairs=[*(seen.pairs if seen else []), t.pair.id],
        )
    return out
