"""Source readers and pooling across them: every format, its malformed records counted by
name and reason, label mapping, licences, dedup, balance, determinism."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from editthinker_data import stages
from editthinker_data.config import ConfigError, parse_config
from editthinker_data.core.layout import POOL_UNIT
from editthinker_data.execution.base import LocalExecutor
from editthinker_data.io.imagesig import SignatureCache
from editthinker_data.io.storage import LocalStorage
from editthinker_data.pipeline.pooling import pool
from editthinker_data.pipeline.preflight import preflight
from editthinker_data.pipeline.quotas import water_fill
from editthinker_data.sources import read_input
from editthinker_data.sources.base import RecordError, SourceRecord
from editthinker_data.sources.defaults import licence_warnings
from editthinker_data.sources.formats import FORMATS
from editthinker_data.sources.labels import LabelMapper
from editthinker_data.stages.pool import PoolStage
from tests.support.source_fixtures import png, write_sources


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    inputs, expected = write_sources(root)
    return root, inputs, expected


def cfg_for(inputs, **source):
    return parse_config(
        {
            "source": {"inputs": inputs, **source},
            "editors": [{"name": "a"}, {"name": "b"}],
            "run": {"partition_size": 4},
        },
        environ={},
    )


@pytest.fixture(scope="module")
def pooled(sources, tmp_path_factory):
    _, inputs, _ = sources
    out = tmp_path_factory.mktemp("pool-out")
    cfg = cfg_for(inputs)
    return out, cfg, LocalExecutor().run_one(PoolStage(cfg), LocalStorage(out), POOL_UNIT)


def test_every_format_is_read_and_its_bad_records_counted_by_reason(pooled, sources):
    _, _, report = pooled
    _, _, expected = sources
    for name, want in expected.items():
        got = report.by_source[name]
        assert got["read"] == want["read"], name
        assert got["unusable"] == want["unusable"], name
        assert got["duplicates"] == want["duplicates"], name
        assert got["kept"] == want["kept"], name
        assert got["filtered"] == want.get("filtered", {}), name
        assert got["unmapped_labels"] == want.get("unmapped_labels", {}), name
    s = report.stats
    assert s["input"] == sum(w["read"] for w in expected.values())
    assert report.pairs == sum(w["kept"] for w in expected.values())
    assert s["input"] == s["kept"] + sum(s["filtered"].values()) + sum(s["failed"].values())
    assert s["filtered"] == {"duplicate": 1, "near_duplicate": 1, "other_language": 1}


def test_every_registered_format_has_a_fixture(sources):
    _, inputs, _ = sources
    missing = sorted(set(FORMATS) - {i["format"] for i in inputs})
    assert not missing, f"formats without a fixture in tests/support/source_fixtures.py: {missing}"


def test_failures_name_the_record_and_the_source(pooled):
    _, _, report = pooled
    by_reason = {(f["source"], f["reason"]): f for f in report.failures}
    assert by_reason[("pico", "source_image_unresolved")]["record"] == "pico:images/positive-edit/3"
    assert ("pico", "unknown_label") not in by_reason  # classified, see unmapped_labels
    assert by_reason[("opengpt", "multiple_input_images")]["record"] == "opengpt:output/o4"
    assert by_reason[("imgedit", "image_missing")]["record"] == "imgedit:4"
    assert by_reason[("gedit", "image_unreadable")]["record"] == "gedit:g4"
    assert by_reason[("kris", "multiple_input_images")]["record"] == "kris:count_change/2"
    assert by_reason[("kris", "unreadable_file")]["origin"] == "broken/annotation.json"
    assert by_reason[("sharegpt", "malformed_line")]["origin"] == "text_and_image_to_image.json:3"


def test_snapshot_keeps_provenance_labels_licences_and_embedded_images(pooled, sources):
    out, _, report = pooled
    _, _, expected = sources
    rows = {r["id"]: r for r in pq.read_table(out / stages.POOL_FILE).to_pylist()}
    assert len(rows) == report.pairs == sum(w["kept"] for w in expected.values()) >= 21
    pico = rows["pico:images/positive-edit/1"]
    assert pico["source"] == "pico" and pico["original_id"] == "images/positive-edit/1"
    assert pico["task_type"] == "style" and pico["label"].startswith("Strong artistic style")
    assert pico["licence"] == "cc-by-nc-nd-4.0"
    assert rows["pico:images/positive-edit/2"]["image_path"].endswith("train_0/0001abc.jpg")
    unmapped = rows["pico:images/positive-edit/6"]  # label kept as provenance, type classified
    assert unmapped["label"] == "extract" and unmapped["task_type"] == "other"
    assert rows["pico_multi:images/multi/7_1"]["instruction"] == "Replace the bicycle with a horse."
    assert rows["gedit:g1"]["task_type"] == "background" and rows["gedit:g1"]["label"] == "background_change"
    assert rows["imgedit:2"]["task_type"] == "background"
    assert {rows["kris:count_change/1"]["task_type"], rows["rise:1"]["task_type"]} == {"reasoning"}
    assert rows["wds:w1"]["task_type"] == "subject-driven"  # the input's label_map
    assert rows["opengpt:output/o1"]["licence"] == "cc-by-4.0"
    # Embedded images (parquet, tar, HF datasets) are written once, by content, and only if kept.
    stored = sorted(p.name for p in (out / "pool" / "images").iterdir())
    embedded = [r for r in rows.values() if "/pool/images/" in r["image_path"]]
    assert sorted(r["image_path"].rsplit("/", 1)[1] for r in embedded) == stored
    for name, want in expected.items():
        assert sum(1 for r in embedded if r["source"] == name) == want.get("embedded", 0), name
    assert len(embedded) >= 7
    for r in embedded:
        assert (out / "pool" / "images" / r["image_path"].rsplit("/", 1)[1]).stat().st_size > 0


def test_licences_listed_with_warnings(pooled):
    _, _, report = pooled
    assert report.licences["pico"] == "cc-by-nc-nd-4.0" and report.licences["opengpt"] == "cc-by-4.0"
    warnings = "\n".join(report.licence_warnings)
    assert "non-commercial: pico (cc-by-nc-nd-4.0), pico_multi (cc-by-nc-nd-4.0);" in warnings
    assert "no derivatives: pico (cc-by-nc-nd-4.0)" in warnings
    assert "licence not set: " in warnings and "sharegpt" in warnings.split("licence not set: ")[1]
    assert "opengpt" not in warnings
    assert licence_warnings({"x": "apache-2.0", "y": "cc-by-sa-4.0"}) == []


def test_rerun_reads_signatures_from_the_cache(sources, tmp_path):
    _, inputs, _ = sources
    cfg = cfg_for(inputs)
    cache = tmp_path / "sig.sqlite"
    first = LocalExecutor().run_one(PoolStage(cfg), LocalStorage(tmp_path / "a"), POOL_UNIT, sig_cache=cache)
    again = LocalExecutor().run_one(PoolStage(cfg), LocalStorage(tmp_path / "b"), POOL_UNIT, sig_cache=cache)
    assert first.signature_cache["misses"] > 0 and again.signature_cache["misses"] == 0
    assert again.signature_cache["hits"] == first.signature_cache["misses"]
    a = pq.read_table(tmp_path / "a" / stages.POOL_FILE).to_pylist()
    b = pq.read_table(tmp_path / "b" / stages.POOL_FILE).to_pylist()
    strip = [{k: v for k, v in r.items() if k != "image_path"} for r in a]
    assert strip == [{k: v for k, v in r.items() if k != "image_path"} for r in b]


def test_quotas_and_ratios_balance_by_task_type_deterministically(tmp_path):
    from tests.support.source_fixtures import _jsonl, _write

    rows = []
    kinds = {"subject-driven": 10, "style": 2, "background": 4}
    n = 0
    for task_type, count in kinds.items():
        for _ in range(count):
            _write(tmp_path / "img" / f"{n}.png", png(1000 + n))
            rows.append({"id": f"r{n}", "image": f"img/{n}.png", "instruction": f"Edit number {n} please.",
                         "task_type": task_type})  # fmt: skip
            n += 1
    _jsonl(tmp_path / "a.jsonl", rows)
    _jsonl(tmp_path / "b.jsonl", [{**r, "id": "b" + r["id"]} for r in rows])  # exact duplicates of a
    cfg = cfg_for([{"format": "jsonl", "path": str(tmp_path / "a.jsonl"), "name": "a", "quota": 9}])
    result = pool(read_input(cfg.source.inputs[0], prefix_ids=False), cfg)
    kept = {t: c["kept"] for t, c in result.by_source["a"]["by_task_type"].items() if c["kept"]}
    assert kept == {"subject-driven": 4, "style": 2, "background": 3}
    assert result.stats.filtered["over_source_quota"] == 7
    again = pool(read_input(cfg.source.inputs[0], prefix_ids=False), cfg)
    assert [e.id for e in again.entries] == [e.id for e in result.entries]
    other_seed = cfg.model_copy(update={"seed": 5})
    assert {e.id for e in pool(read_input(cfg.source.inputs[0], False), other_seed).entries} != {
        e.id for e in result.entries
    }

    cfg = cfg_for(
        [{"format": "jsonl", "path": str(tmp_path / "a.jsonl"), "name": "a", "ratio": 2},
         {"format": "jsonl", "path": str(tmp_path / "b.jsonl"), "name": "b", "ratio": 1}],
        max_pairs=6, near_duplicate_distance=None,
    )  # fmt: skip
    result = pool(stages.pool_records(cfg), cfg)
    assert result.by_source["a"]["kept"] == 4 and result.by_source["b"]["duplicates"] == 16
    assert result.by_source["b"]["kept"] == 0


def test_water_fill_spreads_a_quota_evenly():
    assert water_fill({"subject-driven": 10, "style": 2, "background": 4}, 9) == {
        "subject-driven": 4, "style": 2, "background": 3,
    }  # fmt: skip
    assert water_fill({"style": 3, "other": 3}, 100) == {"style": 3, "other": 3}
    assert sum(water_fill({t: 50 for t in ("style", "other", "reasoning")}, 10).values()) == 10


def test_label_tables_cover_the_benchmarks_and_fall_back_to_keywords():
    gedit, imgedit, pico = (LabelMapper(FORMATS[f]) for f in ("gedit", "imgedit", "pico_banana"))
    assert (
        len(
            {
                gedit(k)
                for k in (
                    "background_change",
                    "color_alter",
                    "material_alter",
                    "motion_change",
                    "ps_human",
                    "style_change",
                    "subject-add",
                    "subject-remove",
                    "subject-replace",
                    "text_change",
                    "tone_transfer",
                )
            }
        )
        == 4
    )
    assert None not in {
        imgedit(k)
        for k in (
            "add",
            "remove",
            "replace",
            "alter",
            "adjust",
            "extract",
            "background",
            "style",
            "compose",
            "action",
        )
    }
    assert (
        pico("Change the season of the scene") == "background"
        and pico("Translate text on the sign") == "other"
    )
    assert pico("Juggle the quux") is None  # the pool classifies it (tests/unit/sources/test_labels.py)
    assert LabelMapper(FORMATS["kris"])("anything at all") == "reasoning"
    assert LabelMapper(FORMATS["gedit"], {"style_change": "other"})("style_change") == "other"
    assert LabelMapper(FORMATS["gedit"], use_defaults=False)("style_change") is None


def test_near_duplicates_need_the_same_instruction(tmp_path):
    from tests.support.source_fixtures import _jsonl, _write, jpeg

    _write(tmp_path / "a.png", png(7))
    _write(tmp_path / "b.jpg", jpeg(7, quality=80))
    _jsonl(tmp_path / "m.jsonl", [
        {"id": "a", "image": "a.png", "instruction": "Make the sky purple."},
        {"id": "b", "image": "b.jpg", "instruction": "Make the sky purple."},
        {"id": "c", "image": "b.jpg", "instruction": "Remove the tree on the left."},
    ])  # fmt: skip
    cfg = parse_config({"source": {"manifest": str(tmp_path / "m.jsonl")}}, environ={})
    result = pool(stages.pool_records(cfg), cfg, sigs=SignatureCache())
    assert sorted(e.id for e in result.entries) == ["a", "c"] and result.stats.filtered == {
        "near_duplicate": 1
    }
    cfg = parse_config(
        {"source": {"manifest": str(tmp_path / "m.jsonl"), "near_duplicate_distance": None}}, environ={}
    )
    assert len(pool(stages.pool_records(cfg), cfg).entries) == 3


def test_preflight_names_the_bad_input_and_the_fix(sources, tmp_path):
    _, inputs, _ = sources
    with pytest.raises(ConfigError, match="source input 'x': unknown format 'csv'; use one of"):
        preflight(cfg_for([{"format": "csv", "path": str(tmp_path), "name": "x"}]))
    with pytest.raises(ConfigError, match="source input 'kris': .* not found; fix the path"):
        preflight(cfg_for([{**inputs[7], "path": str(tmp_path / "nope")}]))
    with pytest.raises(ConfigError, match="format kris reads a folder"):
        preflight(cfg_for([{**inputs[7], "path": inputs[6]["path"]}]))
    with pytest.raises(ConfigError, match="options.openimages_dir .* not found"):
        preflight(cfg_for([{**inputs[1], "options": {"openimages_dir": str(tmp_path / "none")}}]))
    with pytest.raises(
        ConfigError, match=r"unknown options \['languge'\] for format gedit \(it takes: language\)"
    ):
        preflight(cfg_for([{**inputs[5], "options": {"languge": "en"}}]))
    with pytest.raises(ConfigError, match="options.instruction is 'medium'; use short"):
        preflight(cfg_for([{**inputs[1], "options": {**inputs[1]["options"], "instruction": "medium"}}]))
    with pytest.raises(ConfigError, match="maps to 'cooking'"):
        cfg_for([{**inputs[5], "label_map": {"x": "cooking"}}])
    with pytest.raises(ConfigError, match="set source.max_pairs"):
        cfg_for([{**inputs[5], "ratio": 1}])
    with pytest.raises(ConfigError, match="names .* repeat"):
        cfg_for([inputs[5], inputs[5]])
    with pytest.raises(ConfigError, match="no source"):
        parse_config({"source": {}}, environ={})
    preflight(cfg_for(inputs))


def test_relative_input_paths_resolve_against_the_config_file(tmp_path):
    cfg = parse_config(
        {"source": {"inputs": [{"format": "rise", "path": "rise/data.json", "options": {"image_root": "rise"}}]}},
        base_dir=tmp_path, environ={},
    )  # fmt: skip
    spec = cfg.source.inputs[0]
    assert spec.path == str(tmp_path / "rise" / "data.json") and spec.options["image_root"] == str(
        tmp_path / "rise"
    )
    assert spec.name == "rise"


def test_long_or_short_pico_instruction(sources):
    root, inputs, _ = sources
    spec = cfg_for([{**inputs[1], "options": {**inputs[1]["options"], "instruction": "long"}}]).source.inputs[
        0
    ]
    recs = [r for r in read_input(spec, prefix_ids=False) if isinstance(r, SourceRecord)]
    assert recs and all(r.instruction.startswith("A long, detailed instruction") for r in recs)


def test_an_unreadable_input_is_one_error_and_the_others_are_read(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    cfg = cfg_for([{"format": "parquet", "path": str(tmp_path / "bad.parquet"), "name": "t"}])
    out = list(read_input(cfg.source.inputs[0], prefix_ids=False))
    assert len(out) == 1 and isinstance(out[0], RecordError) and out[0].reason == "unreadable_file"
    assert "bad.parquet" in out[0].detail


def test_fast_phash_matches_imagehash_bit_for_bit():
    import io

    import imagehash
    from PIL import Image

    from editthinker_data.io.imagesig import THUMB, phash
    from tests.support.source_fixtures import image, jpeg

    for seed in range(40):
        for data in (png(seed), jpeg(seed, quality=70)):
            img = Image.open(io.BytesIO(data))
            img.thumbnail((THUMB, THUMB))
            assert phash(img) == imagehash.phash(img), seed
    big = image(3, size=300).convert("L")
    assert phash(big) == imagehash.phash(big)


def test_signature_cache_keys_files_by_identity_and_bytes_by_content(tmp_path):
    from editthinker_data.io.imagesig import ImageProblem

    path = tmp_path / "a.png"
    path.write_bytes(png(1))
    cache = SignatureCache(tmp_path / "c.sqlite")
    first = cache.of_file(str(path))
    assert cache.of_file(str(path)) == first and (cache.hits, cache.misses) == (1, 1)
    path.write_bytes(png(2))  # a changed file is hashed again
    assert cache.of_file(str(path)).sha256 != first.sha256 and cache.misses == 2
    assert cache.of_bytes(png(1), "x") == first and cache.misses == 3
    results = cache.many(
        [(str(tmp_path / "nope.png"), None, "nope"), (None, b"junk", "junk"), (str(path), None, "p")]
    )
    assert [getattr(r, "reason", None) for r in results] == ["image_missing", "image_unreadable", None]
    with pytest.raises(ImageProblem, match="junk does not decode"):
        cache.of_bytes(b"junk", "junk")
    cache.close()
    again = SignatureCache(tmp_path / "c.sqlite")
    assert again.of_file(str(path)).sha256 != first.sha256 and again.misses == 0
    again.close()


def test_gedit_reads_arrow_streams_as_saved_by_datasets(tmp_path):
    import pyarrow as pa

    from editthinker_data.sources.gedit import read_gedit

    table = pa.table(
        {
            "key": ["a", "a"],
            "task_type": ["tone_transfer", "tone_transfer"],
            "instruction": ["Give it a warm evening tone.", "给它一个温暖的色调。"],
            "instruction_language": ["en", "cn"],
            "input_image": [{"bytes": png(5), "path": None}, {"bytes": png(5), "path": None}],
        }
    )
    with pa.ipc.new_stream(tmp_path / "data-00000-of-00001.arrow", table.schema) as writer:
        writer.write_table(table)
    recs = list(read_gedit(str(tmp_path)))
    assert [type(r).__name__ for r in recs] == ["SourceRecord", "RecordError"]
    assert recs[0].label == "tone_transfer" and recs[0].image_bytes == png(5) and recs[1].filtered
    both = [r for r in read_gedit(str(tmp_path), language=None) if isinstance(r, SourceRecord)]
    assert [r.id for r in both] == ["a-en", "a-cn"]


def test_pico_multi_turn_source_resolves_through_the_open_images_mapping(tmp_path):
    import json

    from editthinker_data.sources.pico_banana import read_pico_banana
    from tests.support.source_fixtures import _write, jpeg

    _write(tmp_path / "oi" / "train_1" / "ffee01.jpg", jpeg(9))
    _write(
        tmp_path / "map.csv",
        "ImageID,OriginalURL\nffee01,https://farm.example/x_o.jpg\nother,https://farm.example/y_o.jpg\n",
    )
    turn = {
        "files": [{"id": "original_input_image", "url": "https://farm.example/x_o.jpg"}, {"id": "edit_turn1", "url": "m/1.png"}],
        "metadata_edit_turn_prompts": ["Make the door red.", "Now add a wreath."],
    }  # fmt: skip
    _write(tmp_path / "multi.jsonl", json.dumps(turn) + "\n")
    recs = list(
        read_pico_banana(
            str(tmp_path / "multi.jsonl"),
            openimages_mapping=str(tmp_path / "map.csv"),
            openimages_dir=str(tmp_path / "oi"),
        )
    )
    assert len(recs) == 1 and recs[0].image_path.endswith("train_1/ffee01.jpg")
    assert recs[0].instruction == "Make the door red." and recs[0].id == "m/1"
