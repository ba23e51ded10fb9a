"""`editthinker-data pool CONFIG`: pooling alone, its table, and a build that starts from
the pool it wrote."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import webdataset as wds
import yaml
from typer.testing import CliRunner

from editthinker_data.cli import app
from tests.support.paths import ROOT
from tests.support.source_fixtures import write_sources

runner = CliRunner()


@pytest.fixture(scope="module")
def pool_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool-cli")
    inputs, expected = write_sources(root / "data")
    demo = {
        "format": "jsonl",
        "path": str(ROOT / "editthinker_data/demo/source/manifest.jsonl"),
        "name": "demo",
    }
    config = {
        "name": "pooled",
        "source": {"inputs": [demo, *inputs], "per_type_quota": 8},
        "editors": [
            {"name": "careful", "params": {"skill": 0.8}},
            {"name": "sloppy", "params": {"skill": 0.4}},
        ],
        "loop": {"max_turns": 3},
        "output": {"exports": [], "report": True, "license": "cc-by-nc-4.0"},
        "run": {"partition_size": 10},
    }
    path = root / "pool.yaml"
    path.write_text(yaml.safe_dump(config))
    return root, path, expected


def test_pool_prints_a_table_per_source_and_task_type(pool_config, monkeypatch):
    from editthinker_data import cli

    monkeypatch.setattr(cli.console, "width", 250)
    root, path, expected = pool_config
    out = root / "out"
    result = runner.invoke(app, ["pool", str(path), "-o", str(out)], terminal_width=220)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "pool per source" in text and "pool per source and task type" in text
    for name in expected:
        assert name in text
    assert "source_image_unresolved 1" in text and "multiple_input_images 1" in text
    assert "pico cc-by-nc-nd-4.0" in text and "non-commercial: pico" in text and "licence not set" in text
    marker = json.loads((out / "_markers/pool/all.json").read_text())
    rows = pq.read_table(out / "pool/pairs.parquet").to_pylist()
    assert len(rows) == marker["pairs"] and f"{marker['pairs']} pairs" in text
    kept = {t: c["kept"] for t, c in marker["by_task_type"].items()}
    assert max(kept.values()) <= 8 and sum(kept.values()) == marker["pairs"]
    again = runner.invoke(app, ["pool", str(path), "-o", str(out)], terminal_width=220)
    assert again.exit_code == 0 and f"{marker['pairs']} pairs" in again.output  # the same snapshot


def pool_failure_lines(out) -> list[str]:
    return (out / "failures.jsonl").read_text().splitlines()


def test_pool_alone_names_unusable_records_in_failures_jsonl(pool_config, monkeypatch):
    from editthinker_data import cli

    monkeypatch.setattr(cli.console, "width", 400)
    root, path, expected = pool_config
    out = root / "out-failures"
    result = runner.invoke(app, ["pool", str(path), "-o", str(out)], terminal_width=220)
    assert result.exit_code == 0, result.output
    assert f"unusable records named in {out}/failures.jsonl" in result.output
    marker = json.loads((out / "_markers/pool/all.json").read_text())
    lines = pool_failure_lines(out)
    # the same lines a build's finalize writes: the marker's records, keys sorted
    assert lines == [json.dumps(f, sort_keys=True) for f in marker["failures"]]
    rows = [json.loads(x) for x in lines]
    assert {r["stage"] for r in rows} == {"pool"}
    assert all(list(r) == sorted(r) and {"origin", "record", "reason", "detail"} <= set(r) for r in rows)
    want = {n: sum(e["unusable"].values()) for n, e in expected.items()}
    got = {n: sum(1 for r in rows if r["source"] == n) for n in expected}
    assert got == want and len(rows) == sum(marker["stats"]["failed"].values()) > 0
    bad = next(r for r in rows if r["reason"] == "source_image_unresolved")
    assert bad["record"] == "pico:images/positive-edit/3" and "openimages_mapping" in bad["detail"]
    # a label no table maps is classified, not failed, and the pool says which
    assert not any(r["reason"] == "unknown_label" for r in rows)
    assert "labels not in the table" in result.output and "'extract' 1" in result.output
    # a rerun reuses the pool and leaves the file; an output pooled before the file existed gets it
    again = runner.invoke(app, ["pool", str(path), "-o", str(out)], terminal_width=220)
    assert again.exit_code == 0 and pool_failure_lines(out) == lines
    (out / "failures.jsonl").unlink()
    assert runner.invoke(app, ["pool", str(path), "-o", str(out)]).exit_code == 0
    assert pool_failure_lines(out) == lines


def test_pool_refuses_a_bad_input_with_the_fix(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"source": {"inputs": [{"format": "rise", "path": "nope.json"}]}}))
    result = runner.invoke(app, ["pool", str(path), "-o", str(tmp_path / "out")])
    assert (
        result.exit_code == 2 and "source input 'rise'" in result.output and "fix the path" in result.output
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_build_runs_from_the_pool(pool_config, ray_cluster, state_dir, monkeypatch):
    from editthinker_data import cli
    from editthinker_data.config import load_config
    from flows.build_dataset import build_dataset

    root, path, _ = pool_config
    out = root / "out"
    if not (out / "_markers/pool/all.json").exists():
        assert runner.invoke(app, ["pool", str(path), "-o", str(out)]).exit_code == 0
    marker = json.loads((out / "_markers/pool/all.json").read_text())
    pooled_at = (out / "pool/pairs.parquet").stat().st_mtime_ns
    pool_lines = pool_failure_lines(out)
    cfg = load_config(path)
    result = build_dataset(cfg.model_dump(), str(out), str(state_dir))
    assert (
        out / "pool/pairs.parquet"
    ).stat().st_mtime_ns == pooled_at  # the build read the pool, not redid it
    stats = result.stats
    assert (
        stats["stages"]["pool"] == marker["stats"] and stats["stages"]["generate"]["input"] == marker["pairs"]
    )
    assert stats["licences"]["pico"] == "cc-by-nc-nd-4.0" and stats["licence_warnings"]
    # the build's finalize rewrites failures.jsonl whole: the pool's lines, then later stages'
    lines = pool_failure_lines(out)
    assert lines[: len(pool_lines)] == pool_lines and len(lines) == stats["failures"] >= len(pool_lines)
    assert all(json.loads(x)["stage"] != "pool" for x in lines[len(pool_lines) :])
    pool_ids = {r["id"]: r for r in pq.read_table(out / "pool/pairs.parquet").to_pylist()}
    samples = [s for split in ("sft", "rl") for s in result.manifest["shards"][split]]
    seen = 0
    for shard in samples:
        for sample in wds.WebDataset(str(out / shard["url"]), shardshuffle=False).decode():
            meta = sample["json"]
            pair = next(r for r in pool_ids.values() if r["key"] == meta["trajectory"])
            assert meta["provenance"] == {k: pair[k] for k in ("source", "original_id", "label", "licence")}
            seen += 1
    assert seen == stats["splits"]["sft"] + stats["splits"]["rl"] > 0
    turns = 0
    for shard in result.manifest["shards"]["trajectories"]:
        for sample in wds.WebDataset(str(out / shard["url"]), shardshuffle=False).decode():
            pair = pool_ids[sample["json"]["pair_id"]]
            assert sample["json"]["provenance"] == {
                k: pair[k] for k in ("source", "original_id", "label", "licence")
            }
            turns += 1
    assert turns == result.manifest["totals"]["trajectories"] > 0
    monkeypatch.setattr(cli.console, "width", 400)
    shown = runner.invoke(app, ["inspect", str(out)])
    assert "licences: " in shown.output and "pico cc-by-nc-nd-4.0" in shown.output
    assert "licence warning:" in shown.output and "non-commercial" in shown.output
    card = (out / "README.md").read_text()
    assert "| pico | cc-by-nc-nd-4.0 |" in card and "**Warning:**" in card
