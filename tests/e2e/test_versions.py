"""Changed sources are never reused silently, and dataset versions rerun only what changed:
the source content fingerprint, a rerun on a cut manifest, versions over a shared
trajectory store and answer cache (requests counted by the loopback OpenAI server, edits
by the editors themselves), and the changes each version records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from editthinker_data import stages
from editthinker_data.cli import app
from editthinker_data.config import parse_config
from editthinker_data.core.layout import POOL_UNIT, part_name, part_range_name
from editthinker_data.core.reports import PoolReport
from editthinker_data.demo.generate import write_demo_source
from editthinker_data.execution.base import LocalExecutor
from editthinker_data.execution.local_rollouts import local_backends, local_runner
from editthinker_data.io.pool_snapshot import load_partition
from editthinker_data.io.storage import LocalStorage
from editthinker_data.release.card import render_card
from editthinker_data.sources.content import HashCache, input_content, source_content, with_source_content
from editthinker_data.stages.generate import GenerateStage
from editthinker_data.stages.pool import PoolStage
from editthinker_data.stages.select import SelectStage
from editthinker_data.stages.versions import finish_version, plan_version
from editthinker_data.stages.write_steps import WriteStepsStage
from tests.support.openai_server import ChatServer

runner = CliRunner()
# 10 demo pairs, 2 per task type, each with its task type given (so an edited instruction keeps it)
PAIRS = {
    "subj-recolor": "subject-driven", "subj-remove": "subject-driven", "style-mono": "style",
    "style-sepia": "style", "bg-sunset": "background", "bg-green": "background",
    "reason-largest": "reasoning", "reason-round": "reasoning", "other-brighter": "other", "other-flip": "other",
}  # fmt: skip


@pytest.fixture(scope="module")
def demo_src(tmp_path_factory) -> Path:
    return write_demo_source(tmp_path_factory.mktemp("src")).parent


def manifest_lines(demo_src: Path) -> list[str]:
    return (demo_src / "manifest.jsonl").read_text().splitlines()


def sourced_cfg(demo_cfg, manifest: Path, **overrides):
    data = demo_cfg.model_dump()
    data["source"]["manifest"] = str(manifest)
    for section, values in overrides.items():
        data[section].update(values)
    return parse_config(data, environ={})


# ---------------------------------------------------------------- changed sources


def test_content_is_hashed_once_and_a_changed_file_is_seen(demo_cfg, demo_src, tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(manifest_lines(demo_src)) + "\n")
    spec = sourced_cfg(demo_cfg, manifest).source.all_inputs()[0]
    cache = HashCache(tmp_path / "cache.json")
    first = input_content(spec, cache)
    assert first["files"] == 1 and first["bytes"] == manifest.stat().st_size and cache.misses == 1
    cache.save()
    again = HashCache(tmp_path / "cache.json")
    assert input_content(spec, again) == first and (again.hits, again.misses) == (1, 0)  # stat only
    os.utime(manifest, ns=(1, 1))  # touched, same bytes: rehashed, same content
    assert input_content(spec, again) == first and again.misses == 1
    manifest.write_text("\n".join(manifest_lines(demo_src)[:25]) + "\n")
    assert input_content(spec, again)["sha256"] != first["sha256"]


def test_a_rerun_on_a_cut_manifest_pools_the_new_content_and_says_what_changed(demo_cfg, demo_src, tmp_path):
    """The issue's case: pool from 45 lines, cut the manifest to 25, run again."""
    manifest = demo_src / f"{tmp_path.name}.jsonl"  # beside images/, so its paths resolve
    lines = manifest_lines(demo_src)
    manifest.write_text("\n".join(lines) + "\n")
    cache = tmp_path / "content.json"
    cfg = with_source_content(sourced_cfg(demo_cfg, manifest), cache)
    storage = LocalStorage(tmp_path / "out")
    assert stages.check_output(cfg, storage) == []
    first = LocalExecutor().run_one(PoolStage(cfg), storage, POOL_UNIT, sig_cache=tmp_path / "sig.sqlite")
    assert first.pairs == 40 and first.sources == cfg.source_content
    storage.write_json(
        "_markers/generate/part-00000.json", {"fingerprint": cfg.fingerprint()}
    )  # a later stage

    manifest.write_text("\n".join(lines[:25]) + "\n")
    same = sourced_cfg(demo_cfg, manifest)  # the same config file: only the content differs
    assert same.fingerprint() == cfg.fingerprint(content=False)
    cut = with_source_content(same, cache)
    assert cut.fingerprint() != cfg.fingerprint()
    assert stages.read_marker(storage, "pool", "all", cut.fingerprint(), PoolReport) is None  # never reused
    notes = stages.check_output(cut, storage)
    text = "\n".join(notes)
    before, after = cfg.source_content["manifest"], cut.source_content["manifest"]
    assert f"input 'manifest' changed: {manifest}" in text
    assert f"{before['bytes']:,} bytes, sha256 {before['sha256']} -> {after['bytes']:,} bytes" in text
    assert "pooling runs again, then generate, select, write steps and finalize" in text
    assert storage.list("_markers") == []  # the old build's markers and data are gone
    again = LocalExecutor().run_one(PoolStage(cut), storage, POOL_UNIT, sig_cache=tmp_path / "sig.sqlite")
    ids = {json.loads(line)["id"] for line in lines[:25]}
    assert again.pairs == 25 and {e.id for p in again.partitions for e in load_partition(storage, p)} == ids
    assert stages.check_output(cut, storage) == []  # the rerun of the new content is a plain resume


def test_pool_command_on_changed_sources_says_what_changed(demo_cfg, demo_src, tmp_path, monkeypatch):
    manifest = demo_src / f"{tmp_path.name}.jsonl"
    lines = manifest_lines(demo_src)
    manifest.write_text("\n".join(lines) + "\n")
    config = tmp_path / "c.yaml"
    data = json.loads(demo_cfg.model_dump_json())
    data["source"]["manifest"] = str(manifest)
    del data["source_content"]
    config.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "out"
    first = runner.invoke(app, ["pool", str(config), "--output", str(out)])
    assert first.exit_code == 0, first.output
    assert "40 pairs" in first.output and "sources changed" not in first.output
    unchanged = runner.invoke(app, ["pool", str(config), "--output", str(out)])
    assert unchanged.exit_code == 0 and "sources changed" not in unchanged.output  # reused, nothing to say
    manifest.write_text("\n".join(lines[:25]) + "\n")
    second = runner.invoke(app, ["pool", str(config), "--output", str(out)])
    assert second.exit_code == 0, second.output
    assert "the sources changed since this output was built" in second.output
    assert "input 'manifest' changed" in second.output and "25 pairs" in second.output


def test_a_manifest_on_s3_is_fingerprinted_by_its_etag(demo_cfg, s3_endpoint):
    import boto3

    from tests.support.paths import BUCKET

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.put_object(Bucket=BUCKET, Key="content/manifest.jsonl", Body=b'{"id": "a"}\n')
    cfg = sourced_cfg(demo_cfg, Path("x"))  # replaced below: the path is an s3:// URL
    cfg = cfg.model_copy(
        update={"source": cfg.source.model_copy(update={"manifest": f"s3://{BUCKET}/content/manifest.jsonl"})}
    )
    first = source_content(cfg)["manifest"]
    assert first["files"] == 1 and first["bytes"] == 12
    s3.put_object(Bucket=BUCKET, Key="content/manifest.jsonl", Body=b'{"id": "b"}\n')  # same size
    assert source_content(cfg)["manifest"]["sha256"] != first["sha256"]


# ---------------------------------------------------------------- versions


class CountingEditor:
    """The real editor backend, with its edits counted."""

    def __init__(self, backend, edits: list[str]):
        self.backend, self.edits = backend, edits

    def run_batch(self, requests):
        self.edits.extend(r.instruction for r in requests)
        return self.backend.run_batch(requests)

    def stats(self):
        return self.backend.stats() if hasattr(self.backend, "stats") else {}


def build_version(cfg, root: Path, state: Path, edits: list[str], ran: list[str]):
    """What `build --versions` does, with the plain-loop executor: plan, the stages, latest."""
    plan = plan_version(cfg, str(root), str(state))
    if plan.up_to_date:
        return plan, None
    storage = LocalStorage(plan.output)
    assert stages.check_output(plan.cfg, storage) == []
    pool = LocalExecutor().run_one(PoolStage(plan.cfg), storage, POOL_UNIT, sig_cache=state / "sig.sqlite")
    backends = local_backends(plan.cfg, stages.backend_context(plan.cfg, plan.output, str(state)))
    for key in [k for k in backends if k[0] == "editor"]:
        backends[key] = CountingEditor(backends[key], edits)
    plain = local_runner(plan.cfg, backends)

    def counting(items, make, on_done, **kw):
        ran.extend(p.id for p in items)
        return plain(items, make, on_done, **kw)

    generate = [
        LocalExecutor().run_one(GenerateStage(plan.cfg), storage, part_name(p), runner=counting)
        for p in pool.partitions
    ]
    select = LocalExecutor().run_one(SelectStage(plan.cfg), storage, "all", partitions=pool.partitions)
    writes = [
        LocalExecutor().run_one(WriteStepsStage(plan.cfg), storage, part_range_name(run[0], run[-1]))
        for run in select.write_runs
    ]
    result = stages.finalize(plan.cfg, storage, pool, generate, select, writes)
    finish_version(plan)
    return plan, result


def shard_hashes(result) -> dict[str, list[str]]:
    return {kind: [s["sha256"] for s in items] for kind, items in result.manifest["shards"].items()}


def test_versions_rerun_only_new_or_changed_pairs(demo_cfg, demo_src, tmp_path):
    by_id = {r["id"]: r for r in map(json.loads, manifest_lines(demo_src)[:40])}  # the good lines
    records = [{**by_id[i], "task_type": t} for i, t in PAIRS.items()]
    manifest = demo_src / f"{tmp_path.name}.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    root, state = tmp_path / "dataset", tmp_path / "state"

    with ChatServer(canned=True, canned_turns=2) as server:  # answers without model work: fast
        data = demo_cfg.model_dump()
        data["source"]["manifest"] = str(manifest)
        data["loop"]["max_turns"] = 2
        for role in ("expert", "scorer"):
            data[role] = {"kind": "openai", "name": f"vlm-{role}", "base_url": server.base_url, "model": "m",
                          "params": {"backoff_s": 0.01, "max_retries": 2}, "batch_size": 4}  # fmt: skip
        data["output"].update(exports=[], report=False, versions=True)
        data["run"].update(partition_size=5)
        cfg = parse_config(data, environ={})

        edits, ran = [], []
        v1, first = build_version(cfg, root, state, edits, ran)
        assert v1.name == "v0001" and (root / "latest").read_text() == "v0001\n"
        assert len(ran) == 10 and len(edits) >= 10 and server.requests > 0
        first_requests = server.requests
        assert first.stats["changes"] == {
            "version": "v0001", "previous": None, "pairs": 10, "added": 10, "removed": 0, "rebuilt": 0,
            "unchanged": 0, "reused": 0, "examples": {"added": sorted(PAIRS)[:5], "removed": [], "rebuilt": []},
        }  # fmt: skip
        assert (root / "cache" / "llm").is_dir() and (root / "_store" / "trajectories").is_dir()

        # the same config and sources: nothing to build
        again, none = build_version(cfg, root, state, edits, ran)
        assert again.up_to_date and none is None and not (root / "v0002").exists()

        # a selection setting changed: a new version, not one model request nor one edit
        server.requests, edits[:], ran[:] = 0, [], []
        data["selection"]["min_gain"] = 0.5
        v2, second = build_version(parse_config(data, environ={}), root, state, edits, ran)
        assert v2.name == "v0002" and "the config changed" in "\n".join(v2.notes)
        assert (server.requests, len(edits), ran) == (0, 0, [])
        assert second.stats["changes"]["unchanged"] == 10 and second.stats["changes"]["reused"] == 10
        assert shard_hashes(second)["trajectories"] == shard_hashes(first)["trajectories"]

        # five pairs changed: exactly those run, their requests only
        changed = sorted(PAIRS)[::2]
        for r in records:
            if r["id"] in changed:
                r["instruction"] = r["instruction"].rstrip(".") + " now."
        manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
        v3, third = build_version(parse_config(data, environ={}), root, state, edits, ran)
        assert v3.name == "v0003" and (root / "latest").read_text() == "v0003\n"
        assert "since v0002: input 'manifest' changed" in "\n".join(v3.notes)
        assert sorted(ran) == changed and 0 < server.requests < first_requests  # the 5 changed pairs' calls
        assert {r["instruction"] for r in records if r["id"] in changed} <= set(edits)  # turn 1: T_s
        assert not {r["instruction"] for r in records if r["id"] not in changed} & set(edits)
        assert len(edits) <= 5 * 2  # at most 2 turns each
        c = third.stats["changes"]
        assert (c["rebuilt"], c["unchanged"], c["added"], c["removed"]) == (5, 5, 0, 0)
        assert c["examples"]["rebuilt"] == changed

        # the incremental version is byte for byte a fresh build of the same content
        run = {**data["run"], "llm_cache": str(root / "cache" / "llm")}  # its answers are paid for
        fresh_cfg = parse_config(
            {**data, "output": {**data["output"], "versions": False}, "run": run}, environ={}
        )
        fresh = LocalStorage(tmp_path / "fresh")
        pool = LocalExecutor().run_one(PoolStage(fresh_cfg), fresh, POOL_UNIT, sig_cache=state / "sig.sqlite")
        plain = local_runner(
            fresh_cfg, local_backends(fresh_cfg, stages.backend_context(fresh_cfg, fresh.url))
        )
        gen = [
            LocalExecutor().run_one(GenerateStage(fresh_cfg), fresh, part_name(p), runner=plain)
            for p in pool.partitions
        ]
        sel = LocalExecutor().run_one(SelectStage(fresh_cfg), fresh, "all", partitions=pool.partitions)
        writes = [
            LocalExecutor().run_one(WriteStepsStage(fresh_cfg), fresh, part_range_name(run[0], run[-1]))
            for run in sel.write_runs
        ]
        assert shard_hashes(stages.finalize(fresh_cfg, fresh, pool, gen, sel, writes)) == shard_hashes(third)

    from editthinker_data.release.report import Build

    card = render_card(Build(str(root / "v0003")), [])
    assert "## Changelog" in card and "v0003, since v0002: 10 pairs; 0 added, 0 removed" in card
    assert f"`{changed[0]}`" in card


def test_build_versions_on_an_up_to_date_root_builds_nothing(demo_cfg, demo_src, tmp_path, monkeypatch):
    """The CLI: `build --versions` says which version holds this config and content, and stops."""
    manifest = demo_src / f"{tmp_path.name}.jsonl"
    manifest.write_text("".join(line + "\n" for line in manifest_lines(demo_src)[:3]))
    config = tmp_path / "c.yaml"
    data = json.loads(demo_cfg.model_dump_json())
    data["source"]["manifest"] = str(manifest)
    data["output"].update(exports=[], report=False)
    del data["source_content"]
    config.write_text(yaml.safe_dump(data))
    root, state = tmp_path / "dataset", tmp_path / "state"
    cfg = parse_config({**data}, environ={})
    plan, _ = build_version(cfg, root, state, [], [])
    monkeypatch.setenv("COLUMNS", "200")
    args = ["build", str(config), "--output", str(root), "--versions", "--state-dir", str(state)]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert (
        "v0001 already holds this config and these sources" in out.output and "nothing to build" in out.output
    )
    assert not (root / "v0002").exists() and (root / "latest").read_text() == "v0001\n"
    refused = runner.invoke(app, [*args, "--overwrite"])
    assert refused.exit_code == 2 and "does not apply to a versioned build" in refused.output

    # The root stands for its latest version wherever one finished build is read.
    shown = runner.invoke(app, ["inspect", str(root)])
    assert shown.exit_code == 0, shown.output
    assert f"reading {root}/v0001 (its latest)" in shown.output and "steps per split" in shown.output
    checked = runner.invoke(app, ["verify", str(root)])
    assert checked.exit_code == 0 and "all match the manifest" in checked.output, checked.output
    # export and report write into the output: not while a build (or another export) holds it
    from editthinker_data.io.lease import OutputLease, holder_info

    with OutputLease(LocalStorage(root / "v0001"), holder_info("other", "f" * 16, "editthinker-data build")):
        busy = runner.invoke(app, ["export", str(root), "--format", "easyr1"])
        assert busy.exit_code == 75 and "editthinker-data build" in busy.output, busy.output
        assert not (root / "v0001" / "exports").exists()
    exported = runner.invoke(app, ["export", str(root), "--format", "easyr1"])
    assert exported.exit_code == 0 and "easyr1:" in exported.output, exported.output
    assert (root / "v0001" / "exports" / "easyr1").is_dir()  # into the version latest names
    assert not (root / "v0001" / "_lease.json").exists()  # released when the command ended
    (root / "latest").write_text("yesterday\n")
    broken = runner.invoke(app, ["inspect", str(root)])
    assert broken.exit_code == 2 and "holds 'yesterday', not a version name" in broken.output


def test_the_store_keeps_exact_scores_and_answers_misses_on_s3(s3_endpoint):
    from PIL import Image

    from editthinker_data.core.schema import Refinement, Scores, SourcePair, Trajectory, Turn
    from editthinker_data.io.storage import open_storage
    from editthinker_data.io.trajectory_store import TrajectoryStore
    from tests.support.paths import BUCKET

    pair = SourcePair("p:1", "Make it red.", Image.new("RGB", (8, 8)), "style", "ab" * 32, editor="careful")
    turns = [
        Turn(i, f"T{i}", Image.new("RGB", (8, 8), (i, 2, 3)), Scores(6.123456789, 7.1 / 3, {"success": 1 / 3}), 0,
             None if i == 1 else "why", "careful", "" if i == 1 else "x", "s", {"edit_s": 0.5})
        for i in (1, 2)
    ]  # fmt: skip
    traj = Trajectory(pair, turns, "expert_satisfied", final=Refinement("ok", "T2", True))
    store = TrajectoryStore(open_storage(f"s3://{BUCKET}/store-test"))
    assert store.get("cd" * 32, pair) is None
    store.put("cd" * 32, traj)
    back = store.get("cd" * 32, pair)
    assert back.pair is pair and back.final == traj.final and back.stop_reason == "expert_satisfied"
    assert [t.scores for t in back.turns] == [
        t.scores for t in turns
    ]  # full precision: selection compares them
    assert [t.image.getpixel((0, 0)) for t in back.turns] == [(1, 2, 3), (2, 2, 3)]
    assert [(t.reasoning, t.expert, t.timings) for t in back.turns] == [
        (t.reasoning, t.expert, t.timings) for t in turns
    ]


def test_a_stored_thinker_final_from_before_the_stop_fix_is_reused_with_its_stop(demo_cfg, tmp_path):
    """Thinker trajectories stored when the loop did not yet record a repeated instruction as
    the stop come back with `stop: true`, as a fresh build writes them; an expert's don't change."""
    from PIL import Image

    from editthinker_data.config import BuildConfig
    from editthinker_data.core.schema import Refinement, Scores, SourcePair, Trajectory, Turn
    from editthinker_data.io.trajectory_store import TrajectoryStore
    from editthinker_data.stages.versions import Reuse

    pair = SourcePair("p:1", "Make it red.", Image.new("RGB", (8, 8)), "style", "ab" * 32, editor="careful")
    turn = Turn(1, "Make it red.", Image.new("RGB", (8, 8), (9, 0, 0)), Scores(6.0, 7.0), 0)
    thinker_cfg = BuildConfig.model_validate({**demo_cfg.model_dump(), "thinker": {"kind": "procedural"}})
    got = {}
    for label, cfg in (("thinker", thinker_cfg), ("expert", demo_cfg)):
        reuse = Reuse(cfg, TrajectoryStore(LocalStorage(tmp_path / label)))
        old = Refinement("fine as it is", "Make it red.", False)  # what the old loop stored
        reuse.put(Trajectory(pair, [turn], "expert_satisfied", final=old))
        finished = {}
        assert reuse.fill([pair], finished) == ["p:1"]
        got[label] = finished[0].final.stop
    assert got == {"thinker": True, "expert": False}
