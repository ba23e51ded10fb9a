from pathlib import Path

from editthinker_data.core.schema import TASK_TYPES
from editthinker_data.demo.generate import PAIRS, write_demo_source

BUNDLED = Path(__file__).resolve().parents[3] / "editthinker_data" / "demo" / "source"


def test_bundled_demo_source_regenerates_byte_for_byte(tmp_path):
    write_demo_source(tmp_path)
    assert (tmp_path / "manifest.jsonl").read_bytes() == (BUNDLED / "manifest.jsonl").read_bytes()
    for png in sorted((BUNDLED / "images").glob("*.png")):
        assert (tmp_path / "images" / png.name).read_bytes() == png.read_bytes(), png.name


def test_demo_covers_every_task_type_with_24_or_more_pairs():
    from editthinker_data.sources.classify import classify

    types = {t or classify(instr) for _, _, _, instr, t in PAIRS}
    assert len(PAIRS) >= 24 and types == set(TASK_TYPES)
