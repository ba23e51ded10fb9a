"""Unit bodies with the plain-loop executor: markers, reruns, and refusing mixed configs."""

import pytest

from editthinker_data import units
from editthinker_data.config import ConfigError
from editthinker_data.local import local_executor
from editthinker_data.storage import LocalStorage


def counting(executor):
    calls = []

    def run(items, make, on_done, **kw):
        calls.append(len(items))
        return executor(items, make, on_done, **kw)

    return run, calls


def test_finished_units_are_not_redone(demo_cfg, tmp_path):
    storage = LocalStorage(tmp_path)
    pool = units.run_pool(demo_cfg, storage)
    run, calls = counting(local_executor(demo_cfg))
    first = units.run_generate(demo_cfg, storage, 0, run)
    again = units.run_generate(demo_cfg, storage, 0, run)
    assert calls == [12] and again == first
    assert units.run_pool(demo_cfg, storage) == pool
    assert storage.exists("_markers/generate/part-00000.json")


def test_manifest_licence_travels_and_silences_the_unset_warning(demo_cfg, tmp_path):
    report = units.run_pool(demo_cfg, LocalStorage(tmp_path / "a"))
    assert report["licences"] == {"manifest": "Apache-2.0"} and report["licence_warnings"] == []
    unset = demo_cfg.model_copy(
        update={"source": demo_cfg.source.model_copy(update={"manifest_licence": None})}
    )
    report = units.run_pool(unset, LocalStorage(tmp_path / "b"))
    assert report["licences"] == {"manifest": ""}
    assert any("licence not set: manifest" in w for w in report["licence_warnings"])


def test_another_config_on_the_same_output_is_refused(demo_cfg, tmp_path):
    storage = LocalStorage(tmp_path)
    units.run_pool(demo_cfg, storage)
    units.check_output(demo_cfg, storage)  # same config: fine
    other = demo_cfg.model_copy(update={"seed": 1})
    with pytest.raises(ConfigError, match="another config.*--overwrite"):
        units.check_output(other, storage)
    (tmp_path / "_state").mkdir(exist_ok=True)  # pooling keeps its image-signature cache there
    (tmp_path / "_state" / "keep").write_text("run state")
    storage.write_json("cache/llm/ab/abcd.json", {"answer": "paid for"})
    assert units.clear_output(storage) == 2  # pool/pairs.parquet and its marker
    left = storage.list("")
    assert "_state/keep" in left and "cache/llm/ab/abcd.json" in left  # run state and answer cache stay
    assert all(n.startswith(("_state/", "cache/llm/")) for n in left)
    units.check_output(other, storage)  # nothing left to conflict with


def test_unreadable_source_image_fails_only_its_pair(demo_cfg, tmp_path):
    import shutil

    from editthinker_data.config import parse_config
    from editthinker_data.demo.generate import write_demo_source

    write_demo_source(tmp_path / "src")
    data = demo_cfg.model_dump()
    data["source"]["manifest"] = str(tmp_path / "src" / "manifest.jsonl")
    cfg = parse_config(data, environ={})
    storage = LocalStorage(tmp_path / "out")
    pool = units.run_pool(cfg, storage)
    victim = next(e for e in units.load_partition(storage, 0) if e.key != "style-pop")
    shutil.copy(tmp_path / "src" / "images" / "style-pop.png", victim.image_path)  # changed after pooling
    report = units.run_generate(cfg, storage, 0, local_executor(cfg))
    assert report["stats"] == {"input": 12, "kept": 11, "filtered": {}, "failed": {"image_unreadable": 1}}
    [failure] = report["failures"]
    assert failure["record"] == victim.id and "changed since pooling" in failure["detail"]
    assert pool["pairs"] == 40


class Crash(Exception):
    pass


def test_crash_mid_unit_resumes_without_redoing_and_gives_the_same_bytes(demo_cfg, tmp_path):
    cfg = demo_cfg.model_copy(update={"run": demo_cfg.run.model_copy(update={"journal_every": 3})})
    clean = LocalStorage(tmp_path / "clean")
    units.run_pool(cfg, clean)
    expected = units.run_generate(cfg, clean, 0, local_executor(cfg))

    storage = LocalStorage(tmp_path / "crashed")
    units.run_pool(cfg, storage)
    plain = local_executor(cfg)

    def crashing(items, make, on_done, **kw):
        def done(i, traj):
            on_done(i, traj)
            if i == 7:
                raise Crash  # the process dies after 8 trajectories, 6 of them journaled

        return plain(items, make, done, **kw)

    with pytest.raises(Crash):
        units.run_generate(cfg, storage, 0, crashing)
    assert not storage.exists("_markers/generate/part-00000.json")
    assert len(storage.list("_journal/generate/part-00000")) == 2

    run, calls = counting(plain)
    report = units.run_generate(cfg, storage, 0, run)
    assert report["resumed"] == 6 and calls == [12 - 6]
    assert [s["sha256"] for s in report["shards"]] == [s["sha256"] for s in expected["shards"]]
    assert storage.list("_journal") == [] and not (tmp_path / "crashed" / "_journal").exists()


@pytest.mark.slow
def test_a_failing_unit_fails_alone_and_a_rerun_finishes(
    demo_cfg, tmp_path, state_dir, ray_cluster, monkeypatch
):
    from flows.build_dataset import BuildIncomplete, build_dataset

    real = units.run_generate

    def flaky(cfg, storage, partition, executor):
        if partition == 1:
            raise OSError("SlowDown: please reduce your request rate (retries exhausted)")
        return real(cfg, storage, partition, executor)

    data = demo_cfg.model_dump()
    data["run"]["unit_retries"] = 0
    monkeypatch.setattr(units, "run_generate", flaky)
    with pytest.raises(BuildIncomplete) as err:
        build_dataset(data, str(tmp_path), str(state_dir))
    assert err.value.failed.keys() == {1} and "part-00001: OSError: SlowDown" in str(err.value)
    assert "Run the same command again" in str(err.value)
    markers = sorted(p.name for p in (tmp_path / "_markers" / "generate").iterdir())
    assert markers == ["part-00000.json", "part-00002.json", "part-00003.json"]
    assert not (tmp_path / "stats.json").exists()

    monkeypatch.setattr(units, "run_generate", real)
    result = build_dataset(data, str(tmp_path), str(state_dir))
    assert result["stats"]["stages"]["generate"]["input"] == 40


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
        units.run_pool(cfg, storage)
        units.run_generate(cfg, storage, 0, local_executor(cfg))
        runs[label] = [
            (t.key, t.stop_reason, [(x.instruction, round(x.overall, 4)) for x in t.turns])
            for t in units.load_trajectory_summaries(storage, [0])
        ]
    # The thinker's only way to stop is to repeat the instruction, so "could not improve"
    # and "satisfied" read the same; everything else is identical.
    same = {"unchanged_instruction": "expert_satisfied"}
    assert runs["thinker"] == [(k, same.get(r, r), turns) for k, r, turns in runs["pair"]]
