"""Pooling: bad records counted by name, dedup, quotas, editor ratios, partitions."""

import json

import pytest

from editthinker_data.backends.procedural.scene import render_scene
from editthinker_data.config import parse_config
from editthinker_data.core.schema import encode_png
from editthinker_data.pipeline.pooling import pool
from editthinker_data.pipeline.quotas import weighted_cycle
from editthinker_data.sources.jsonl import read_jsonl


def write_source(tmp_path, lines):
    (tmp_path / "img").mkdir(exist_ok=True)
    for i, color in enumerate(["red", "blue", "green", "yellow"]):
        (tmp_path / "img" / f"{i}.png").write_bytes(
            encode_png(render_scene("sky", [("circle", color, 0.5, 0.5, 0.15)], 32))
        )
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def cfg_for(manifest, **source):
    return parse_config(
        {
            "source": {"manifest": str(manifest), **source},
            "editors": [{"name": "a", "ratio": 2}, {"name": "b"}],
            "run": {"partition_size": 3},
        },
        environ={},
    )


def rec(id, image, instruction, **kw):
    return json.dumps({"id": id, "image": image, "instruction": instruction, **kw})


def test_bad_records_are_counted_with_reasons_and_named(tmp_path):
    m = write_source(
        tmp_path,
        [
            rec("ok1", "img/0.png", "Make the red circle blue."),
            rec("dup", "img/0.png", "make the red  circle BLUE."),
            rec("missing", "img/nope.png", "Remove the circle."),
            rec("broken", "img/broken.png", "Remove the circle."),
            rec("empty", "img/1.png", "  "),
            rec("absurd", "img/1.png", "?!?!"),
            rec("badtype", "img/1.png", "Remove it.", task_type="cooking"),
            '{"id": "trunc", "image": ',
            json.dumps({"id": "noimage", "instruction": "x"}),
            json.dumps([1, 2]),
            rec("ok1", "img/2.png", "Remove the green circle."),
            rec("ok2", "img/3.png", "Apply a sepia style."),
        ],
    )
    result = pool(read_jsonl(str(m)), cfg_for(m))
    s = result.stats.to_dict()
    assert s["kept"] == 2 and s["filtered"] == {"duplicate": 1}
    assert s["failed"] == {
        "absurd_instruction": 1, "bad_task_type": 1, "duplicate_id": 1, "empty_instruction": 1,
        "image_missing": 1, "image_unreadable": 1, "malformed_line": 2, "missing_field": 1,
    }  # fmt: skip
    assert result.stats.balanced
    by_record = {f.record: f for f in result.failures}
    assert "img/nope.png" in by_record["missing"].detail
    assert by_record["m.jsonl:8"].reason == "malformed_line"
    assert by_record["badtype"].detail.startswith("task_type 'cooking' is not one of")
    row = result.by_source["manifest"]  # the one input, though read without read_input
    assert set(result.by_source) == {"manifest"} and row["read"] == 12 and row["kept"] == 2
    assert row["duplicates"] == 1 and sum(row["unusable"].values()) == 9


def test_quotas_editor_ratio_and_partitions_are_deterministic(tmp_path):
    lines = [rec(f"s{i}", f"img/{i % 4}.png", f"Apply a sepia style number {i}.") for i in range(9)]
    lines += [rec(f"b{i}", f"img/{i % 4}.png", f"Change the background to snow {i}.") for i in range(3)]
    m = write_source(tmp_path, lines)
    cfg = cfg_for(m, quotas={"style": 6})
    r1 = pool(read_jsonl(str(m)), cfg)
    r2 = pool(read_jsonl(str(m)), cfg)
    assert r1.entries == r2.entries
    assert r1.stats.filtered == {"over_quota": 3}
    types = [e.task_type for e in r1.entries]
    assert types.count("style") == 6 and types.count("background") == 3
    editors = [e.editor for e in r1.entries if e.task_type == "style"]
    assert editors.count("a") == 4 and editors.count("b") == 2
    assert sorted({e.partition for e in r1.entries}) == [0, 1, 2]


def test_max_pairs_is_taken_round_robin_over_types(tmp_path):
    lines = [rec(f"s{i}", "img/0.png", f"Apply a sepia style {i}.") for i in range(6)]
    lines += [rec(f"b{i}", "img/1.png", f"Change the background to snow {i}.") for i in range(2)]
    m = write_source(tmp_path, lines)
    r = pool(read_jsonl(str(m)), cfg_for(m, max_pairs=4))
    assert sorted(e.task_type for e in r.entries) == ["background", "background", "style", "style"]
    assert r.stats.filtered == {"over_max_pairs": 4}


@pytest.mark.parametrize("ratios,expected", [([1, 1], "abab"), ([2, 1], "abaaba"), ([3, 1], "aaba")])
def test_weighted_cycle(ratios, expected):
    assert "".join(weighted_cycle(["a", "b"], ratios, len(expected))) == expected
