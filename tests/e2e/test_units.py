"""Unit bodies with the plain-loop executor: markers, reruns, and refusing mixed configs."""

import shutil

import pytest

from editthinker_data import stages
from editthinker_data.config import ConfigError
from editthinker_data.core.layout import POOL_UNIT, part_name, part_range_name
from editthinker_data.execution.base import LocalExecutor
from editthinker_data.execution.local_rollouts import local_runner
from editthinker_data.io.pool_snapshot import load_partition
from editthinker_data.io.storage import LocalStorage
from editthinker_data.io.trajectory_index import load_trajectory_summaries
from editthinker_data.stages.generate import GenerateStage
from editthinker_data.stages.pool import PoolStage
from editthinker_data.stages.select import SelectStage
from editthinker_data.stages.write_steps import WriteStepsStage


def counting(executor):
    calls = []

    def run(items, make, on_done, **kw):
        calls.append(len(items))
        return executor(items, make, on_done, **kw)

    return run, calls


def test_finished_units_are_not_redone(demo_cfg, tmp_path):
    storage = LocalStorage(tmp_path)
    pool = LocalExecutor().run_one(PoolStage(demo_cfg), storage, POOL_UNIT)
    run, calls = counting(local_runner(demo_cfg))
    first = LocalExecutor().run_one(GenerateStage(demo_cfg), storage, part_name(0), runner=run)
    again = LocalExecutor().run_one(GenerateStage(demo_cfg), storage, part_name(0), runner=run)
    assert calls == [12] and again == first
    assert LocalExecutor().run_one(PoolStage(demo_cfg), storage, POOL_UNIT) == pool
    assert storage.exists("_markers/generate/part-00000.json")


def test_manifest_licence_travels_and_silences_the_unset_warning(demo_cfg, tmp_path):
    report = LocalExecutor().run_one(PoolStage(demo_cfg), LocalStorage(tmp_path / "a"), POOL_UNIT)
    assert report.licences == {"manifest": "Apache-2.0"} and report.licence_warnings == []
    unset = demo_cfg.model_copy(
        update={"source": demo_cfg.source.model_copy(update={"manifest_licence": None})}
    )
    report = LocalExecutor().run_one(PoolStage(unset), LocalStorage(tmp_path / "b"), POOL_UNIT)
    assert report.licences == {"manifest": ""}
    assert any("licence not set: manifest" in w for w in report.licence_warnings)


def test_another_config_on_the_same_output_is_refused(demo_cfg, tmp_path):
    storage = LocalStorage(tmp_path)
    LocalExecutor().run_one(PoolStage(demo_cfg), storage, POOL_UNIT)
    stages.check_output(demo_cfg, storage)  # same config: fine
    other = demo_cfg.model_copy(update={"seed": 1})
    with pytest.raises(ConfigError, match="another config.*--overwrite"):
        stages.check_output(other, storage)
    (tmp_path / "_state").mkdir(exist_ok=True)  # pooling keeps its image-signature cache there
    (tmp_path / "_state" / "keep").write_text("run state")
    storage.write_json("cache/llm/ab/abcd.json", {"answer": "paid for"})
    assert stages.clear_output(storage) == 3  # pool/pairs.parquet, its marker, failures.jsonl
    left = storage.list("")
    assert "_state/keep" in left and "cache/llm/ab/abcd.json" in left  # run state and answer cache stay
    assert all(n.startswith(("_state/", "cache/llm/")) for n in left)
    stages.check_output(other, storage)  # nothing left to conflict with


def test_unreadable_source_image_fails_only_its_pair(demo_cfg, tmp_path):
    import shutil

    from editthinker_data.config import parse_config
    from editthinker_data.demo.generate import write_demo_source

    write_demo_source(tmp_path / "src")
    data = demo_cfg.model_dump()
    data["source"]["manifest"] = str(tmp_path / "src" / "manifest.jsonl")
    cfg = parse_config(data, environ={})
    storage = LocalStorage(tmp_path / "out")
    pool = LocalExecutor().run_one(PoolStage(cfg), storage, POOL_UNIT)
    victim = next(e for e in load_partition(storage, 0) if e.key != "style-pop")
    shutil.copy(tmp_path / "src" / "images" / "style-pop.png", victim.image_path)  # changed after pooling
    report = LocalExecutor().run_one(GenerateStage(cfg), storage, part_name(0), runner=local_runner(cfg))
    assert report.stats == {"input": 12, "kept": 11, "filtered": {}, "failed": {"image_unreadable": 1}}
    [failure] = report.failures
    assert failure["record"] == victim.id and "changed since pooling" in failure["detail"]
    assert pool.pairs == 40


class Crash(Exception):
    pass


def test_crash_mid_unit_resumes_without_redoing_and_gives_the_same_bytes(demo_cfg, tmp_path):
    cfg = demo_cfg.model_copy(update={"run": demo_cfg.run.model_copy(update={"journal_every": 3})})
    clean = LocalStorage(tmp_path / "clean")
    LocalExecutor().run_one(PoolStage(cfg), clean, POOL_UNIT)
    expected = LocalExecutor().run_one(GenerateStage(cfg), clean, part_name(0), runner=local_runner(cfg))

    storage = LocalStorage(tmp_path / "crashed")
    LocalExecutor().run_one(PoolStage(cfg), storage, POOL_UNIT)
    plain = local_runner(cfg)

    def crashing(items, make, on_done, **kw):
        def done(i, traj):
            on_done(i, traj)
            if i == 7:
                raise Crash  # the process dies after 8 trajectories, 6 of them journaled

        return plain(items, make, done, **kw)

    with pytest.raises(Crash):
        LocalExecutor().run_one(GenerateStage(cfg), storage, part_name(0), runner=crashing)
    assert not storage.exists("_markers/generate/part-00000.json")
    assert len(storage.list("_journal/generate/part-00000")) == 2

    run, calls = counting(plain)
    report = LocalExecutor().run_one(GenerateStage(cfg), storage, part_name(0), runner=run)
    assert report.resumed == 6 and calls == [12 - 6]
    assert [s.sha256 for s in report.shards] == [s.sha256 for s in expected.shards]
    assert storage.list("_journal") == [] and not (tmp_path / "crashed" / "_journal").exists()


@pytest.mark.slow
def test_a_failing_unit_fails_alone_and_a_rerun_finishes(demo_cfg, tmp_path, state_dir, ray_cluster):
    from editthinker_data.core.outcome import BuildIncomplete
    from flows.build_dataset import build_dataset

    # A real storage failure on the worker that runs partition 1: a folder where its first
    # trajectory shard must go, so writing the shard fails (the unit runs in a Ray task, out
    # of reach of a monkeypatch).
    blocker = tmp_path / "trajectories" / "part-00001-000000.tar"
    blocker.mkdir(parents=True)
    (blocker / "in-the-way").write_text("x")
    data = demo_cfg.model_dump()
    data["run"]["unit_retries"] = 0
    with pytest.raises(BuildIncomplete) as err:
        build_dataset(data, str(tmp_path), str(state_dir))
    assert err.value.failed.keys() == {1} and "part-00001: IsADirectoryError" in str(err.value)
    assert "Run the same command again" in str(err.value)
    markers = sorted(p.name for p in (tmp_path / "_markers" / "generate").iterdir())
    assert markers == ["part-00000.json", "part-00002.json", "part-00003.json"]
    assert not (tmp_path / "stats.json").exists()

    shutil.rmtree(blocker)
    result = build_dataset(data, str(tmp_path), str(state_dir))
    assert result.stats["stages"]["generate"]["input"] == 40


def test_a_thinker_in_place_of_expert_and_scorer_gives_the_same_trajectories(demo_cfg, tmp_path):
    """The procedural thinker is the procedural expert and scorer in one answer: the turns
    (instructions, scores) must not change."""
    from editthinker_data.config import BuildConfig

    data = demo_cfg.model_dump()
    data["thinker"] = {"kind": "procedural", "name": "procedural-expert"}
    thinker_cfg = BuildConfig.model_validate(data)
    runs = {}
    for label, cfg in (("pair", demo_cfg), ("thinker", thinker_cfg)):
        storage = LocalStorage(tmp_path / label)
        LocalExecutor().run_one(PoolStage(cfg), storage, POOL_UNIT)
        LocalExecutor().run_one(GenerateStage(cfg), storage, part_name(0), runner=local_runner(cfg))
        runs[label] = [
            (t.key, t.stop_reason, [(x.instruction, round(x.overall, 4)) for x in t.turns])
            for t in load_trajectory_summaries(storage, [0])
        ]
    # The thinker's only way to stop is to repeat the instruction, so "could not improve"
    # and "satisfied" read the same; everything else is identical.
    same = {"unchanged_instruction": "expert_satisfied"}
    assert runs["thinker"] == [(k, same.get(r, r), turns) for k, r, turns in runs["pair"]]


def test_thinker_finals_record_the_stop_their_repeat_means(demo_cfg, tmp_path):
    """In thinker mode a trajectory stops on `expert_satisfied` when the thinker repeats its
    instruction; the final answer stored with it in the trajectory shards says stop."""
    import webdataset as wds

    from editthinker_data.config import BuildConfig

    data = demo_cfg.model_dump()
    data["thinker"] = {"kind": "procedural", "name": "procedural-thinker"}
    cfg = BuildConfig.model_validate(data)
    storage = LocalStorage(tmp_path)
    LocalExecutor().run_one(PoolStage(cfg), storage, POOL_UNIT)
    LocalExecutor().run_one(GenerateStage(cfg), storage, part_name(0), runner=local_runner(cfg))
    finals = {}
    for shard in sorted((tmp_path / "trajectories").glob("part-00000-*.tar")):
        for s in wds.WebDataset(str(shard), shardshuffle=False).decode():
            meta = s["json"]
            if meta["index"] == meta["num_turns"]:
                finals[meta["trajectory"]] = (meta["stop_reason"], meta["final"])
    assert len(finals) == 12
    satisfied = {k: f for k, (r, f) in finals.items() if r == "expert_satisfied"}
    assert satisfied, "no thinker trajectory stopped on expert_satisfied"
    assert all(f["stop"] is True and f["instruction"] for f in satisfied.values()), satisfied
    assert all(f is None for r, f in finals.values() if r == "max_turns")  # no last critique


def _step_shard_counts(out, manifest):
    """(samples, distinct trajectories, {task type: [trajectories, samples]}, samples by
    trajectory) per split, read from the step shards themselves."""
    import webdataset as wds

    found = {}
    for split in ("sft", "rl"):
        metas = [
            s["json"]
            for shard in manifest["shards"][split]
            for s in wds.WebDataset(str(out / shard["url"]), shardshuffle=False).decode()
        ]
        by_type = {}
        for task in {m["task_type"] for m in metas}:
            mine = [m for m in metas if m["task_type"] == task]
            by_type[task] = {"trajectories": len({m["trajectory"] for m in mine}), "steps": len(mine)}
        by_traj = {}
        for m in metas:
            by_traj.setdefault(m["trajectory"], []).append((m["turn"], m["stop"]))
        found[split] = (len(metas), len({m["trajectory"] for m in metas}), by_type, by_traj)
    return found


def test_stats_equal_the_step_shards_under_heavy_balancing_min_gain_and_a_failed_turn(demo_cfg, tmp_path):
    """The whole chain without Ray: every count in stats.json is what the shards hold."""
    import json

    from typer.testing import CliRunner

    from editthinker_data.cli import app
    from editthinker_data.core.schema import Trajectory
    from editthinker_data.pipeline.selection import best_gain
    from editthinker_data.release.card import render_card
    from editthinker_data.release.report import Build

    data = demo_cfg.model_dump()
    data["selection"]["min_gain"] = 0.5
    data["selection"]["balance"]["max_cell_ratio"] = 1.0
    cfg = type(demo_cfg).model_validate(data)
    storage = LocalStorage(tmp_path)
    pool = LocalExecutor().run_one(PoolStage(cfg), storage, POOL_UNIT)
    plain = local_runner(cfg)
    victims = []

    def one_refine_fails(items, make, on_done, **kw):
        def done(i, traj):
            if not victims and len(traj.turns) >= 3:  # what loop.py returns when turn 3's refine fails
                victims.append(traj.key)
                traj = Trajectory(traj.pair, traj.turns[:3], "failed", error="turn 3 refine: unparseable")
            on_done(i, traj)

        return plain(items, make, done, **kw)

    gens = [
        LocalExecutor().run_one(GenerateStage(cfg), storage, part_name(p), runner=one_refine_fails)
        for p in pool.partitions
    ]
    select = LocalExecutor().run_one(SelectStage(cfg), storage, "all", partitions=pool.partitions)
    writes = [
        LocalExecutor().run_one(WriteStepsStage(cfg), storage, part_range_name(run[0], run[-1]))
        for run in select.write_runs
    ]
    stages.finalize(cfg, storage, pool, gens, select, writes)
    stats = json.loads((tmp_path / "stats.json").read_text())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    found = _step_shard_counts(tmp_path, manifest)

    for split in ("sft", "rl"):
        samples, trajectories, by_type, by_traj = found[split]
        assert stats["splits"][split] == samples == manifest["totals"][split]
        assert stats["trajectory_splits"][split] == trajectories
        assert stats["by_task_type"][split] == by_type
        assert stats["selection"]["after_balance"]["by_task_type"][split] == by_type
        for turns in by_traj.values():  # whole: refinements 2..k, then at most the stop sample
            k = max(t for t, stop in turns if not stop)
            assert sorted(turns) == [(t, False) for t in range(2, k + 1)] + (
                [(k + 1, True)] if len(turns) == k else []
            )
    stage_stats = stats["stages"]
    assert stage_stats["steps"]["kept"] == sum(found[s][0] for s in ("sft", "rl"))
    assert stage_stats["balance"]["kept"] == sum(found[s][1] for s in ("sft", "rl"))
    assert stage_stats["balance"]["input"] == stage_stats["trajectory_filter"]["kept"]
    assert stage_stats["balance"]["filtered"]["balanced_out"] > 0  # the cap really bit
    before = stats["selection"]["before_balance"]
    assert stage_stats["steps"]["input"] == sum(before["splits"].values()) > stage_stats["steps"]["kept"]

    [victim] = victims
    summaries = {t.key: t for t in load_trajectory_summaries(storage, pool.partitions)}
    assert summaries[victim].error == "turn 3 refine: unparseable"
    decisions = {r["trajectory"]: r for r in stages.read_parquet(storage, stages.DECISIONS_FILE)}
    assert decisions[victim]["reason"] == "turn_failed" and not decisions[victim]["keep"]
    below = [
        k
        for k, t in summaries.items()
        if not t.error and len(t.turns) > 1 and 0 <= best_gain(t, "overall") < 0.5
    ]
    assert below and stage_stats["trajectory_filter"]["filtered"]["below_min_gain"] == len(below)
    assert stage_stats["trajectory_filter"]["filtered"]["turn_failed"] == 1
    assert stats["selection"]["after_balance"]["zero_gain"] == 0  # min_gain 0.5 leaves none
    released = {t for s in ("sft", "rl") for t in found[s][3]}
    assert released == {k for k, d in decisions.items() if d["keep"]}

    after = stats["selection"]["after_balance"]
    bal = stage_stats["balance"]
    card = render_card(Build(str(tmp_path)), [])
    assert (
        f"| balance | {bal['input']} | {bal['kept']} | balanced_out {bal['filtered']['balanced_out']} |"
        in card
    )
    for split in ("sft", "rl"):
        row = (
            f"| {split} | {before['trajectory_splits'][split]} | {after['trajectory_splits'][split]} | "
            f"{before['splits'][split]} | {after['splits'][split]} |"
        )
        assert row in card
    assert f"Released trajectories: {bal['kept']}; with zero gain" in card and "min_gain` = 0.5): 0;" in card
    shown = CliRunner().invoke(app, ["inspect", str(tmp_path)], terminal_width=160)
    assert shown.exit_code == 0, shown.output
    assert "balancing (whole trajectories)" in shown.output
    assert f"zero gain (best S_t = S_1): 0 of {bal['kept']}" in shown.output
    assert "selection re-check: all 40 decisions follow" in shown.output

    first = (tmp_path / stages.STEPS_FILE).read_bytes()
    LocalExecutor().run_one(SelectStage(cfg), storage, "all", partitions=pool.partitions)
    assert (tmp_path / stages.STEPS_FILE).read_bytes() == first  # the same seed, the same selection
