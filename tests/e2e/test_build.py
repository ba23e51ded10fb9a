"""One demo build through Prefect and Ray, read back with webdataset and checked against
the paper's rules."""

import hashlib
import json
import statistics

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from editthinker_data.core.layout import part_name
from editthinker_data.execution.base import LocalExecutor
from editthinker_data.pipeline.selection import decide
from editthinker_data.release.report import Build
from editthinker_data.stages.generate import GenerateStage

pytestmark = pytest.mark.slow


def shards(out, manifest, split):
    return [str(out / s["url"]) for s in manifest["shards"][split]]


def test_every_stage_accounts_for_its_input(demo_build):
    out, result = demo_build
    stats = json.loads((out / "stats.json").read_text())
    for name, s in stats["stages"].items():
        assert s["input"] == s["kept"] + sum(s["filtered"].values()) + sum(s["failed"].values()), name
    pool, gen, filt, steps = (stats["stages"][k] for k in ("pool", "generate", "trajectory_filter", "steps"))
    assert pool["input"] == 45 and pool["kept"] == 40  # 40 good pairs, 5 bad lines in the demo manifest
    assert pool["filtered"] == {"duplicate": 1}
    assert gen["input"] == pool["kept"] and filt["input"] == gen["kept"]
    assert filt["filtered"].get("no_improvement", 0) > 0 and filt["filtered"].get("single_turn", 0) > 0
    assert steps["kept"] == stats["splits"]["sft"] + stats["splits"]["rl"]
    assert stats["splits"]["sft"] > 0 and stats["splits"]["rl"] > 0
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert {f["record"] for f in failures} >= {"missing-image", "empty-instruction", "absurd-instruction"}


def test_stats_counts_equal_what_the_step_shards_hold(demo_build):
    """splits, trajectory_splits, by_task_type and the balance and steps stages, counted
    from the shards; the before-balancing numbers add up to the after and the dropped."""
    out, _ = demo_build
    stats = json.loads((out / "stats.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    released = set()
    for split in ("sft", "rl"):
        metas = [s["json"] for s in wds.WebDataset(shards(out, manifest, split), shardshuffle=False).decode()]
        trajs = {m["trajectory"] for m in metas}
        released |= trajs
        assert stats["splits"][split] == len(metas)
        assert stats["trajectory_splits"][split] == len(trajs)
        by_type = {
            t: {
                "trajectories": len({m["trajectory"] for m in metas if m["task_type"] == t}),
                "steps": sum(1 for m in metas if m["task_type"] == t),
            }
            for t in {m["task_type"] for m in metas}
        }
        assert stats["by_task_type"][split] == by_type
    bal, steps = stats["stages"]["balance"], stats["stages"]["steps"]
    assert bal["kept"] == len(released) and steps["kept"] == sum(stats["splits"].values())
    before = stats["selection"]["before_balance"]
    assert (
        bal["input"]
        == sum(before["trajectory_splits"].values())
        == stats["stages"]["trajectory_filter"]["kept"]
    )
    assert steps["input"] == sum(before["splits"].values())
    decisions = pq.read_table(out / "selection" / "decisions.parquet").to_pylist()
    assert {d["trajectory"] for d in decisions if d["keep"]} == released


def test_manifest_lists_every_shard_with_true_hashes(demo_build):
    out, result = demo_build
    manifest = json.loads((out / "manifest.json").read_text())
    listed = set()
    for items in manifest["shards"].values():
        for s in items:
            data = (out / s["url"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == s["sha256"] and len(data) == s["bytes"]
            listed.add(s["url"])
            assert s["samples"] == sum(1 for _ in wds.WebDataset(str(out / s["url"]), shardshuffle=False))
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*.tar")}
    assert on_disk == listed


def test_step_samples_follow_the_rules(demo_build, demo_cfg):
    out, _ = demo_build
    manifest = json.loads((out / "manifest.json").read_text())
    b = Build(str(out))
    trajs = {t.key: t for t in b.trajectories}
    turn_images, turn_scores = {}, {}
    for s in wds.WebDataset(shards(out, manifest, "trajectories"), shardshuffle=False).decode("rgb8"):
        turn_images[s["__key__"]] = np.asarray(s["png"])
        turn_scores[s["__key__"]] = s["json"]["scores"]
    seen = 0
    for split in ("sft", "rl"):
        members = None
        for s in wds.WebDataset(shards(out, manifest, split), shardshuffle=False).decode("rgb8"):
            keys = frozenset(k for k in s if not k.startswith("__"))
            members = members or keys
            assert keys == members == {"json", "src.png", "prev.png"}
            assert "." not in s["__key__"]
            meta = s["json"]
            t = trajs[meta["trajectory"]]
            d = decide(t, demo_cfg.selection)
            assert d.keep and meta["turn"] <= d.best_turn + (1 if meta["stop"] else 0)
            prev = t.turns[meta["turn"] - 2]
            assert meta["previous_instruction"] == prev.instruction
            assert meta["scores"]["overall"] == pytest.approx(prev.overall, abs=1e-3)
            # the scorer's sub-scores travel with the step, as the trajectory shards hold them
            assert meta["scores"]["details"] == turn_scores[f"{t.key}_t{prev.index}"]["details"]
            assert len(meta["scores"]["details"]) == 4  # the procedural scorer's VIEScore four
            assert np.array_equal(s["prev.png"], turn_images[f"{t.key}_t{prev.index}"])
            assert meta["target"].startswith(f"<think>{meta['reasoning']}</think><score>")
            assert meta["target"].endswith(f"</score><answer>{meta['instruction']}</answer>")
            if not meta["stop"]:
                cur = t.turns[meta["turn"] - 1]
                assert meta["instruction"] == cur.instruction and meta["reasoning"] == cur.reasoning
                assert meta["result_scores"] == turn_scores[f"{t.key}_t{cur.index}"]
            var = statistics.pvariance([x.overall for x in t.turns[: d.best_turn]])
            assert (var > demo_cfg.selection.rl_variance_threshold) == (split == "rl")
            seen += 1
    assert seen == sum(manifest["totals"][k] for k in ("sft", "rl"))


def test_filter_decisions_rederive_from_stored_scores(demo_build):
    out, _ = demo_build
    checked, mismatches = Build(str(out)).recheck_selection()
    assert checked == 40 and mismatches == []


def test_trajectory_index_and_shards_agree(demo_build):
    out, _ = demo_build
    rows = [r for p in sorted((out / "trajectories").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    manifest = json.loads((out / "manifest.json").read_text())
    keys = [s["__key__"] for s in wds.WebDataset(shards(out, manifest, "trajectories"), shardshuffle=False)]
    assert sorted(keys) == sorted(r["sample_key"] for r in rows)
    for r in rows:
        assert r["turn"] <= 5 and r["editor"] in ("careful", "sloppy")


def test_each_actor_set_up_once(demo_build):
    _, result = demo_build
    actors = result.stats["actors"]
    assert len(actors) == 4 and all(a["setups"] == 1 for a in actors)
    assert all(a["calls"] > 0 for a in actors)


def test_stats_report_each_pools_load_and_the_shared_budget(demo_build, demo_cfg):
    """One dispatcher for the build: its in-flight target and every pool's busy fraction,
    idle and dry time land in stats.json; each unit reports its own window too."""
    out, result = demo_build
    sched = json.loads((out / "stats.json").read_text())["scheduler"]
    assert sched["max_in_flight"] == demo_cfg.run.max_in_flight == "auto"
    assert sched["in_flight_target"] >= 2 * 4 * 2  # never below two batches per editor actor
    assert sched["peak_in_flight"] > 0
    editors = {f"editor/{e.name}" for e in demo_cfg.editors}
    assert editors <= set(sched["pools"])
    total_requests = 0
    for name, pool in sched["pools"].items():
        assert 0 < pool["busy"] <= 1 and pool["idle_s"] >= pool["dry_s"] * pool["actors"] >= 0, (name, pool)
        total_requests += pool["requests"]
    turns = result.stats["stages"]["generate"]
    assert total_requests >= turns["kept"]  # at least one call per kept trajectory


def test_rebuild_gives_identical_bytes(demo_build, demo_cfg, tmp_path, state_dir):
    """Same config and seed: same sample keys and shard bytes, whatever the finishing order."""
    from flows.build_dataset import build_dataset

    out, first = demo_build
    again = build_dataset(demo_cfg.model_dump(), str(tmp_path), str(state_dir))
    strip = lambda m: {k: [(s["url"], s["sha256"]) for s in v] for k, v in m["shards"].items()}  # noqa: E731
    assert strip(again.manifest) == strip(first.manifest)
    # and every other download the manifest lists: tables, card, figures, gallery, exports
    assert again.manifest["files"] == first.manifest["files"]
    assert {"README.md", "pool/pairs.parquet", "exports/easyr1/rl_train.jsonl"} <= set(
        first.manifest["files"]
    )


def test_the_local_executor_builds_the_same_bytes_without_ray(demo_build, demo_cfg, tmp_path, state_dir):
    """`run.executor: local`: every stage in this process, rollouts one after another, no Ray
    started by the build; the shards are the Ray build's, byte for byte."""
    from flows.build_dataset import build_dataset

    _, first = demo_build
    data = demo_cfg.model_dump()
    data["run"]["executor"] = "local"
    local = build_dataset(data, str(tmp_path), str(state_dir))
    strip = lambda m: {k: [(s["url"], s["sha256"]) for s in v] for k, v in m["shards"].items()}  # noqa: E731
    assert strip(local.manifest) == strip(first.manifest)
    assert local.stats["actors"] == [] and "pools" not in local.stats["scheduler"]  # no actor pool ran


def test_actor_pool_results_equal_the_plain_loop(demo_build, demo_cfg, tmp_path):
    """The Ray scheduler interleaves many rollouts; the trajectories must not change."""
    import shutil

    from editthinker_data.execution.local_rollouts import local_runner
    from editthinker_data.io.storage import LocalStorage

    out, first = demo_build
    (tmp_path / "pool").mkdir()
    shutil.copy(out / "pool" / "pairs.parquet", tmp_path / "pool" / "pairs.parquet")
    report = LocalExecutor().run_one(
        GenerateStage(demo_cfg), LocalStorage(tmp_path), part_name(1), runner=local_runner(demo_cfg)
    )
    ray_shards = [s for s in first.manifest["shards"]["trajectories"] if "part-00001" in s["url"]]
    assert [s.sha256 for s in report.shards] == [s["sha256"] for s in ray_shards]


def test_wids_shard_indexes(demo_build):
    """The wids index format (wids-shard-index-v1): shardlist urls relative to the index."""
    out, result = demo_build
    for split in ("trajectories", "sft", "rl"):
        index = json.loads((out / f"{split}.wids.json").read_text())
        assert index["__kind__"] == "wids-shard-index-v1" and index["wids_version"] == 1
        assert [(s["url"], s["nsamples"]) for s in index["shardlist"]] == [
            (s["url"], s["samples"]) for s in result.manifest["shards"][split]
        ]
        for s in index["shardlist"]:
            assert sum(1 for _ in wds.WebDataset(str(out / s["url"]), shardshuffle=False)) == s["nsamples"]


def test_samples_record_prompt_template_versions(demo_build):
    out, result = demo_build
    manifest = result.manifest
    step = next(iter(wds.WebDataset(shards(out, manifest, "sft"), shardshuffle=False).decode()))
    turn = next(iter(wds.WebDataset(shards(out, manifest, "trajectories"), shardshuffle=False).decode()))
    assert (
        step["json"]["prompt_templates"]
        == turn["json"]["prompt_templates"]
        == {"expert": "procedural", "scorer": "procedural"}
    )
