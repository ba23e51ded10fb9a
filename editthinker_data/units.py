"""The bodies of the build's units of work, free of Prefect and Ray.

Each unit reads its inputs from storage, writes its outputs, writes its success marker
last and returns a small JSON-able report (counts, shard infos, never image bytes). The
generate unit takes an `executor` that runs rollouts: the Ray scheduler in a build, a
plain loop in tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds

from editthinker_data.backends import BackendContext, prompt_templates
from editthinker_data.config import BuildConfig, ConfigError
from editthinker_data.exports.manifest import describe
from editthinker_data.imagesig import SignatureCache
from editthinker_data.journal import Journal
from editthinker_data.loop import Names, Rollout, rollout
from editthinker_data.pooling import PoolEntry, pool
from editthinker_data.runenv import state_dir_for
from editthinker_data.schema import (
    Scores,
    SourcePair,
    StepSample,
    Trajectory,
    decode_image,
    sha256_hex,
    trajectory_turn_records,
)
from editthinker_data.selection import StepPlan, TrajectorySummary, TurnSummary, select
from editthinker_data.shards import ShardInfo, ShardSink
from editthinker_data.sources import read_input
from editthinker_data.sources.base import RecordError, SourceRecord
from editthinker_data.sources.defaults import licence_warnings
from editthinker_data.stats import StageStats, Usage, add_usage, merge_usage
from editthinker_data.storage import (
    Storage,
    is_remote,
    join_url,
    local_path,
    open_storage,
    read_url,
)

# executor(pairs, make_rollout, on_done(i, trajectory), on_usage=on_usage(backend, cost)):
# runs every rollout, reporting each one's end and each batch's cost as they happen.
Executor = Callable[..., Any]

POOL_FILE = "pool/pairs.parquet"
STEPS_FILE = "selection/steps.parquet"
DECISIONS_FILE = "selection/decisions.parquet"
# what `verify` re-checks beside the shards, listed in the manifest with sha256
TABLE_FILES = (POOL_FILE, DECISIONS_FILE, STEPS_FILE, "failures.jsonl", "config.json")


def output_storage(cfg: BuildConfig, url: str) -> Storage:
    return open_storage(url, endpoint_url=cfg.output.s3_endpoint_url, region=cfg.output.s3_region)


def backend_context(cfg: BuildConfig, output: str, state_dir: str | None = None) -> BackendContext:
    """What the backends of a build into `output` need to know about it."""
    return BackendContext(
        output_url=output if is_remote(output) else str(local_path(output).resolve()),
        s3_endpoint_url=cfg.output.s3_endpoint_url,
        s3_region=cfg.output.s3_region,
        llm_cache=cfg.run.llm_cache,
        local_cache_dir=str(Path(state_dir) / "cache" / "llm") if state_dir else None,
    )


def read_parquet(storage: Storage, name: str, filters=None) -> list[dict[str, Any]]:
    return pq.read_table(storage.local_copy(name), filters=filters).to_pylist()


def part_name(partition: int) -> str:
    return f"part-{partition:05d}"


def marker_name(stage: str, unit: str) -> str:
    return f"_markers/{stage}/{unit}.json"


def read_marker(storage: Storage, stage: str, unit: str, fingerprint: str) -> dict[str, Any] | None:
    """A finished unit's report, when it was made by the same config."""
    name = marker_name(stage, unit)
    if not storage.exists(name):
        return None
    report = storage.read_json(name)
    return report if report.get("fingerprint") == fingerprint else None


def check_output(cfg: BuildConfig, storage: Storage) -> None:
    """Refuse to mix two configs' data in one output (finished units would be reused)."""
    name = marker_name("pool", "all")
    if storage.exists(name):
        theirs = storage.read_json(name).get("fingerprint")
        if theirs != cfg.fingerprint():
            raise ConfigError(
                f"{storage.url} holds a build of another config (fingerprint {theirs}, this one is "
                f"{cfg.fingerprint()}); choose a new --output, or pass --overwrite to replace it"
            )


KEPT_ON_CLEAR = ("_state/", "cache/")


def clear_output(storage: Storage) -> int:
    """Delete a previous build's objects, not the run state nor the model answer cache (a
    rebuild pays only for calls it has not made before); returns how many."""
    names = [n for n in storage.list("") if not n.startswith(KEPT_ON_CLEAR)]
    for name in names:
        storage.delete(name)
    return len(names)


def write_marker(storage: Storage, stage: str, unit: str, report: dict[str, Any]) -> None:
    storage.write_json(marker_name(stage, unit), report)


def _write_parquet(storage: Storage, name: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    storage.write_bytes(name, sink.getvalue().to_pybytes())


def _failure(stage: str, origin: str, record: str, reason: str, detail: str) -> dict[str, str]:
    return {"stage": stage, "origin": origin, "record": record, "reason": reason, "detail": detail}


def _failures(errors: list[RecordError], stage: str) -> list[dict[str, str]]:
    return [{"stage": stage, **asdict(e)} for e in errors]


FAILURES_FILE = "failures.jsonl"


def write_failures(storage: Storage, failures: list[dict[str, Any]]) -> None:
    """failures.jsonl: one JSON object a line, keys sorted. `pool` writes the pool's;
    a build's finalize rewrites it whole, with every stage's."""
    storage.write_bytes(
        FAILURES_FILE, "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures).encode()
    )


# ---------------------------------------------------------------- pool

POOL_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("key", pa.string()),
        ("instruction", pa.string()),
        ("task_type", pa.string()),
        ("image_path", pa.string()),
        ("image_sha256", pa.string()),
        ("origin", pa.string()),
        ("editor", pa.string()),
        ("partition", pa.int32()),
        ("source", pa.string()),
        ("original_id", pa.string()),
        ("label", pa.string()),
        ("licence", pa.string()),
    ]
)
POOL_IMAGES = "pool/images"


def pool_records(cfg: BuildConfig) -> Iterator[SourceRecord | RecordError]:
    """Every configured input's records, in config order."""
    inputs = cfg.source.all_inputs()
    for spec in inputs:
        yield from read_input(spec, prefix_ids=len(inputs) > 1, max_image_bytes=cfg.source.max_image_bytes)


def signature_cache_path(cfg: BuildConfig, storage: Storage) -> Path:
    """Image signatures survive reruns: in the build's run state (always a local folder)."""
    return state_dir_for(storage.url, cfg.run.state_dir) / "imagesig.sqlite"


def run_pool(cfg: BuildConfig, storage: Storage, sig_cache: str | Path | None = None) -> dict[str, Any]:
    """Pool once: the snapshot (pool/pairs.parquet, embedded images under pool/images/) and
    its marker are what every later stage and every rerun read."""
    fp = cfg.fingerprint()
    done = read_marker(storage, "pool", "all", fp)
    if done:
        if not storage.exists(FAILURES_FILE):  # pooled by an older version; a build's file stays
            write_failures(storage, done["failures"])
        return done

    def store(sha: str, ext: str, data: bytes) -> str:
        name = f"{POOL_IMAGES}/{sha}.{ext}"
        storage.write_bytes(name, data)
        return join_url(storage.url, name)

    sigs = SignatureCache(sig_cache or signature_cache_path(cfg, storage))
    try:
        result = pool(pool_records(cfg), cfg, sigs=sigs, store=store)
    finally:
        sigs.close()
    kept = {e.image_sha256 for e in result.entries}
    for sha, url in result.stored_images.items():  # embedded images no kept pair uses
        if sha not in kept:
            storage.delete(f"{POOL_IMAGES}/{url.rsplit('/', 1)[-1]}")
    _write_parquet(storage, POOL_FILE, [asdict(e) for e in result.entries], POOL_SCHEMA)
    partitions = sorted({e.partition for e in result.entries})
    report = {
        "fingerprint": fp,
        "pairs": len(result.entries),
        "partitions": partitions,
        "stats": result.stats.to_dict(),
        "by_task_type": result.by_type,
        "by_editor": dict(Counter(e.editor for e in result.entries)),
        "by_source": result.by_source,
        "licences": result.licences,
        "licence_warnings": licence_warnings(result.licences),
        "signature_cache": {"hits": sigs.hits, "misses": sigs.misses},
        "failures": _failures(result.failures, "pool"),
    }
    write_failures(storage, report["failures"])  # before the marker: a marked pool has its file
    write_marker(storage, "pool", "all", report)
    return report


def load_partition(storage: Storage, partition: int) -> list[PoolEntry]:
    rows = read_parquet(storage, POOL_FILE, filters=[("partition", "=", partition)])
    return sorted((PoolEntry(**r) for r in rows), key=lambda e: e.key)


def provenance(entry: PoolEntry) -> dict[str, str]:
    """What a released sample says about its source pair (licences travel with the data)."""
    return {
        "source": entry.source,
        "original_id": entry.original_id,
        "label": entry.label,
        "licence": entry.licence,
    }


def load_source_image(entry: PoolEntry):
    """The pooled image, checked against the hash taken at pooling time."""
    data = read_url(entry.image_path)
    if sha256_hex(data) != entry.image_sha256:
        raise ValueError(f"image {entry.image_path} changed since pooling (sha256 differs)")
    return decode_image(data)


# ---------------------------------------------------------------- generate

TURN_SCHEMA = pa.schema(
    [
        ("trajectory", pa.string()),
        ("pair_id", pa.string()),
        ("partition", pa.int32()),
        ("task_type", pa.string()),
        ("editor", pa.string()),
        ("source_instruction", pa.string()),
        ("stop_reason", pa.string()),
        ("num_turns", pa.int32()),
        ("error", pa.string()),
        ("final_reasoning", pa.string()),
        ("final_instruction", pa.string()),
        ("turn", pa.int32()),
        ("instruction", pa.string()),
        ("reasoning", pa.string()),
        ("semantic", pa.float64()),
        ("quality", pa.float64()),
        ("overall", pa.float64()),
        ("seed", pa.int64()),
        ("edit_s", pa.float64()),
        ("score_s", pa.float64()),
        ("refine_s", pa.float64()),
        ("shard", pa.string()),
        ("sample_key", pa.string()),
    ]
)


def _turn_rows(traj: Trajectory, partition: int, shard: str) -> list[dict[str, Any]]:
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


def run_generate(cfg: BuildConfig, storage: Storage, partition: int, executor: Executor) -> dict[str, Any]:
    fp = cfg.fingerprint()
    unit = part_name(partition)
    done = read_marker(storage, "generate", unit, fp)
    if done:
        return done
    stats = StageStats()
    failures: list[dict[str, str]] = []
    pairs: list[SourcePair] = []
    origins: dict[str, dict[str, str]] = {}  # pair id -> provenance, for every turn's metadata
    for entry in load_partition(storage, partition):
        origins[entry.id] = provenance(entry)
        try:
            image = load_source_image(entry)
        except (OSError, ValueError) as err:
            stats.fail("image_unreadable")
            failures.append(_failure("generate", entry.origin, entry.id, "image_unreadable", str(err)))
            continue
        pairs.append(
            SourcePair(
                entry.id,
                entry.instruction,
                image,
                entry.task_type,
                entry.image_sha256,
                entry.origin,
                entry.editor,
                partition,
            )
        )

    names = Names(cfg.expert.name, cfg.scorer.name, cfg.thinker.name if cfg.thinker else None)
    templates = prompt_templates(cfg.backend_specs())

    def make(pair: SourcePair) -> Rollout:
        return rollout(
            pair, names, max_turns=cfg.loop.max_turns, seed=cfg.seed, seed_policy=cfg.loop.seed_policy
        )

    sink = ShardSink(
        storage, f"trajectories/{unit}", cfg.output.shard_max_samples, cfg.output.shard_max_bytes
    )
    rows: list[dict[str, Any]] = []
    # What this unit cost, over every run of it: earlier runs' sums, plus each batch of this
    # one as it comes back; saved with every journal batch, so a crash loses only the usage
    # of work it also loses.
    usage_log = UsageLog(storage, f"_journal/usage/{unit}")
    earlier = merge_usage(*usage_log.load())
    live: Usage = {}

    def on_usage(backend: str, cost: dict[str, float]) -> None:
        add_usage(live, backend, cost)

    journal = Journal(
        storage,
        f"_journal/generate/{unit}",
        cfg.run.journal_every,
        on_flush=lambda: usage_log.save(merge_usage(earlier, live)),
    )
    finished: dict[int, Trajectory] = journal.load(pairs)  # a previous run's finished pairs
    resumed = len(finished)
    todo = [i for i in range(len(pairs)) if i not in finished]
    next_to_write = 0
    stop_reasons: Counter[str] = Counter()
    backend_failures: Counter[str] = Counter()
    failed_pairs = stats.failed["image_unreadable"]
    transient: list[Trajectory] = []  # no result yet: not journaled, retried by a rerun

    def write(traj: Trajectory) -> None:
        nonlocal failed_pairs
        stop_reasons[traj.stop_reason] += 1
        if traj.error:  # final: counted against the backend that caused it
            f = traj.failure
            reason = f.reason if f else "turn_failed"
            detail = f"{f.who}: {traj.error}" if f else traj.error
            failures.append(_failure("generate", traj.pair.origin, traj.pair.id, reason, detail))
            backend_failures[f.who if f else "unknown backend"] += 1
            failed_pairs += 1
        if not traj.turns:
            stats.fail(traj.failure.reason if traj.failure else "first_turn_failed")
            return
        stats.keep()
        extra = {"prompt_templates": templates, "provenance": origins[traj.pair.id]}
        for sample in trajectory_turn_records(traj, extra):
            sink.write(sample)
        rows.extend(_turn_rows(traj, partition, ""))

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
        drain()

    try:
        drain()
        counters = executor([pairs[i] for i in todo], make, on_done, on_usage=on_usage) or {}
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
            "fingerprint": fp,
            "partition": partition,
            "incomplete": True,
            "pairs": len(pairs),
            "transient": _transient_report(transient),
            "usage": usage,
        }
    shards = sink.close()
    # A shard boundary may fall inside a trajectory's turns: record each row's real shard.
    _fix_shard_names(rows, shards)
    _write_parquet(storage, f"trajectories/{unit}.parquet", rows, TURN_SCHEMA)
    report = {
        "fingerprint": fp,
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
    }
    write_marker(storage, "generate", unit, report)
    journal.clear()
    usage_log.clear()
    return report


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


# ---------------------------------------------------------------- select

STEP_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("trajectory", pa.string()),
        ("partition", pa.int32()),
        ("turn", pa.int32()),
        ("task_type", pa.string()),
        ("editor", pa.string()),
        ("split", pa.string()),
        ("stop", pa.bool_()),
        ("target_score", pa.float64()),
    ]
)
DECISION_SCHEMA = pa.schema(
    [
        ("trajectory", pa.string()),
        ("keep", pa.bool_()),
        ("reason", pa.string()),
        ("best_turn", pa.int32()),
        ("split", pa.string()),
    ]
)


def load_trajectory_summaries(storage: Storage, partitions: Sequence[int]) -> list[TrajectorySummary]:
    by_traj: dict[str, list[dict[str, Any]]] = {}
    for p in partitions:
        name = f"trajectories/{part_name(p)}.parquet"
        if storage.exists(name):
            for row in read_parquet(storage, name):
                by_traj.setdefault(row["trajectory"], []).append(row)
    out = []
    for key, rows in sorted(by_traj.items()):
        rows.sort(key=lambda r: r["turn"])
        first = rows[0]
        turns = tuple(
            TurnSummary(
                r["turn"], r["instruction"], r["reasoning"], r["semantic"], r["quality"], r["overall"]
            )
            for r in rows
        )
        out.append(
            TrajectorySummary(
                key, first["partition"], first["task_type"], first["editor"], first["source_instruction"],
                first["stop_reason"], turns, first["final_reasoning"], first["final_instruction"],
                first.get("error"),
            )
        )  # fmt: skip
    return out


def run_select(cfg: BuildConfig, storage: Storage, partitions: Sequence[int]) -> dict[str, Any]:
    summaries = load_trajectory_summaries(storage, partitions)
    result = select(summaries, cfg.selection, cfg.seed)
    _write_parquet(storage, STEPS_FILE, [asdict(s) for s in result.steps], STEP_SCHEMA)
    _write_parquet(
        storage,
        DECISIONS_FILE,
        [{"trajectory": k, **asdict(d)} for k, d in sorted(result.decisions.items())],
        DECISION_SCHEMA,
    )
    return {
        "fingerprint": cfg.fingerprint(),
        "trajectory_filter": result.trajectory_stats.to_dict(),
        "balance": result.balance_stats.to_dict(),
        "steps": result.step_stats.to_dict(),
        "splits": result.splits,
        "trajectory_splits": result.trajectory_splits,
        "by_task_type": result.after_balance["by_task_type"],
        "selection": {"before_balance": result.before_balance, "after_balance": result.after_balance},
    }


# ---------------------------------------------------------------- write steps


def _read_turn_images(storage: Storage, shards: list[str]) -> dict[str, Any]:
    images = {}
    for shard in shards:
        for sample in wds.WebDataset(
            str(storage.local_copy(shard)), shardshuffle=False, empty_check=False
        ).decode("pil"):
            images[sample["__key__"]] = sample["png"].convert("RGB")
    return images


def build_step_sample(
    plan: StepPlan,
    traj: TrajectorySummary,
    source,
    images: dict[str, Any],
    templates: dict[str, str] | None = None,
    provenance: dict[str, str] | None = None,
) -> StepSample:
    turns = {t.index: t for t in traj.turns}
    if plan.stop:
        prev = turns[plan.turn - 1]
        reasoning, instruction, result = traj.final_reasoning or "", prev.instruction, None
    else:
        prev, cur = turns[plan.turn - 1], turns[plan.turn]
        reasoning, instruction = cur.reasoning or "", cur.instruction
        result = Scores(cur.semantic, cur.quality)
    return StepSample(
        key=plan.key,
        trajectory=traj.key,
        turn=plan.turn,
        task_type=traj.task_type,
        editor=traj.editor,
        source_instruction=traj.source_instruction,
        previous_instruction=prev.instruction,
        reasoning=reasoning,
        scores=Scores(prev.semantic, prev.quality),
        instruction=instruction,
        stop=plan.stop,
        result_scores=result,
        split=plan.split,
        prompt_templates=templates or {},
        provenance=provenance or {},
        source_image=source,
        previous_image=images[f"{traj.key}_t{prev.index}"],
    )


def run_write_steps(cfg: BuildConfig, storage: Storage, partition: int) -> dict[str, Any]:
    unit = part_name(partition)
    templates = prompt_templates(cfg.backend_specs())
    plans = [
        StepPlan(**r) for r in read_parquet(storage, STEPS_FILE, filters=[("partition", "=", partition)])
    ]
    plans.sort(key=lambda p: p.key)
    summaries = {s.key: s for s in load_trajectory_summaries(storage, [partition])}
    gen = read_marker(storage, "generate", unit, cfg.fingerprint())
    images = _read_turn_images(storage, [s["url"] for s in gen["shards"]]) if gen and plans else {}
    entries = {e.key: e for e in load_partition(storage, partition)}
    sinks = {
        split: ShardSink(
            storage, f"steps/{split}/{unit}", cfg.output.shard_max_samples, cfg.output.shard_max_bytes
        )
        for split in ("sft", "rl")
    }
    sources: dict[str, Any] = {}
    counts: Counter[str] = Counter()
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
        )
        sinks[plan.split].write(sample.to_wds())
        counts[plan.split] += 1
    shards = {split: [s.to_dict() for s in sink.close()] for split, sink in sinks.items()}
    return {"partition": partition, "samples": dict(counts), "shards": shards}


# ---------------------------------------------------------------- finalize


def finalize(
    cfg: BuildConfig,
    storage: Storage,
    pool_report: dict[str, Any],
    generate_reports: list[dict[str, Any]],
    select_report: dict[str, Any],
    write_reports: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """manifest.json (every shard) and stats.json (every stage), written last."""
    generate = StageStats()
    stop_reasons: Counter[str] = Counter()
    failures = list(pool_report["failures"])
    shards: dict[str, list[dict[str, Any]]] = {"trajectories": [], "sft": [], "rl": []}
    for r in sorted(generate_reports, key=lambda r: r["partition"]):
        generate = generate.merge(StageStats.from_dict(r["stats"]))
        stop_reasons.update(r["stop_reasons"])
        failures.extend(r["failures"])
        shards["trajectories"].extend(r["shards"])
    for r in sorted(write_reports, key=lambda r: r["partition"]):
        for split in ("sft", "rl"):
            shards[split].extend(r["shards"][split])
    stats = {
        "config_fingerprint": cfg.fingerprint(),
        "stages": {
            "pool": pool_report["stats"],
            "generate": generate.to_dict(),
            "trajectory_filter": select_report["trajectory_filter"],
            "balance": select_report["balance"],
            "steps": select_report["steps"],
        },
        "splits": select_report["splits"],
        "trajectory_splits": select_report["trajectory_splits"],
        "by_task_type": select_report["by_task_type"],
        "selection": select_report["selection"],
        "stop_reasons": dict(sorted(stop_reasons.items())),
        "pool_by_task_type": pool_report["by_task_type"],
        "pool_by_editor": pool_report["by_editor"],
        "pool_by_source": pool_report.get("by_source", {}),
        "licences": pool_report.get("licences", {}),
        "licence_warnings": pool_report.get("licence_warnings", []),
        "failures": len(failures),
        **(extra or {}),
    }
    write_failures(storage, failures)
    storage.write_bytes("config.json", cfg.model_dump_json(indent=2).encode())
    manifest = {
        "name": cfg.name,
        "config_fingerprint": cfg.fingerprint(),
        "shards": shards,
        "totals": {k: sum(s["samples"] for s in v) for k, v in shards.items()},
    }
    for split, items in shards.items():  # wids shard indexes: wids.ShardListDataset("sft.wids.json")
        storage.write_json(
            f"{split}.wids.json",
            {
                "__kind__": "wids-shard-index-v1",
                "wids_version": 1,
                "name": f"{cfg.name}-{split}",
                "shardlist": [{"url": s["url"], "nsamples": s["samples"]} for s in items],
            },
        )
    # stats.json and the trajectory indexes hold timings, so they would make rebuilds differ
    manifest["files"] = describe(storage, [*TABLE_FILES, *(f"{split}.wids.json" for split in shards)])
    storage.write_json("stats.json", stats)
    storage.write_json("manifest.json", manifest)
    return {"stats": stats, "manifest": manifest}
