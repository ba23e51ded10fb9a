"""Small fixture files in every source format, each with malformed records, written by
the tests (nothing from the network). `write_sources(root)` returns a config's
`source.inputs` and the counts a pool of them must show."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def image(seed: int, size: int = 128) -> Image.Image:
    """Smooth random pictures: distinct perceptual hashes that survive re-encoding."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    return small.resize((size, size), Image.BILINEAR)


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    image(seed).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(seed: int, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image(seed).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _jsonl(path: Path, rows: list) -> Path:
    return _write(path, "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")


def write_sources(root: Path) -> tuple[list[dict], dict[str, dict]]:
    """Fixture datasets under root; (inputs, expected {name: {read, unusable, duplicates, ...}}).

    Every registered format has at least one fixture here (`tests/unit/sources/test_sources.py` checks),
    and tests that count over all of them sum these per-fixture counts: a new format's
    fixture changes no other test. `embedded` counts kept pairs whose image came inside the
    file (stored under pool/images/); `filtered` counts pairs dropped for a reason of the
    fixture's own (an exact or near duplicate of another fixture is in `duplicates`)."""
    expected: dict[str, dict] = {}

    # Pico-Banana SFT: local_input_image, the Open Images mapping, and bad records.
    pico = root / "pico"
    _write(pico / "local" / "a.png", png(1))
    _write(pico / "openimages" / "train_0" / "0001abc.jpg", jpeg(2))
    with open(_write(pico / "oi.csv", ""), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageID", "Subset", "OriginalURL"])
        w.writerow(["0001abc", "train", "https://farm.example/2_o.jpg"])
    sft = dict(text="A long, detailed instruction that describes the edit at length.")
    _jsonl(
        pico / "sft.jsonl",
        [
            {**sft, "summarized_text": "Turn it into a Van Gogh painting.", "output_image": "images/positive-edit/1.png",
             "open_image_input_url": "https://farm.example/1_o.jpg", "local_input_image": "local/a.png",
             "edit_type": "Strong artistic style transfer (e.g., Van Gogh/anime/etc.)"},
            {**sft, "summarized_text": "Remove the lamp post.", "output_image": "images/positive-edit/2.png",
             "open_image_input_url": "https://farm.example/2_o.jpg", "edit_type": "Remove an existing object"},
            {**sft, "summarized_text": "Make it snow.", "output_image": "images/positive-edit/3.png",
             "open_image_input_url": "https://farm.example/404_o.jpg", "edit_type": "Change weather conditions (sunny/rainy/snowy)"},
            {**sft, "summarized_text": "Add a cat.", "open_image_input_url": "https://farm.example/2_o.jpg"},
            '{"text": "truncated',
            # a real label of another dataset (ImgEdit's "extract"): no Pico-Banana table maps
            # it, so the instruction classifier decides (unknown_label only with strict_labels)
            {**sft, "summarized_text": "Do the thing.", "output_image": "images/positive-edit/6.png",
             "local_input_image": "local/a.png", "edit_type": "extract"},
        ],
    )  # fmt: skip
    expected["pico"] = dict(
        read=6, kept=3, duplicates=0, unmapped_labels={"extract": 1},
        unusable={"source_image_unresolved": 1, "missing_field": 1, "malformed_line": 1},
    )  # fmt: skip
    # Pico-Banana multi-turn: read as single pairs from the first turn.
    _write(pico / "local" / "m.png", png(3))
    _jsonl(
        pico / "multi-turn.jsonl",
        [
            {"files": [{"id": "original_input_image", "url": "https://farm.example/9_o.jpg"},
                       {"id": "edit_turn1", "url": "images/multi/7_1.png"},
                       {"id": "final_image", "url": "images/multi/7_2.png"}],
             "metadata_edit_turn_prompts": ["Replace the bicycle with a horse.", "Make it sunset."],
             "local_input_image": "local/m.png", "edit_type": "Replace one object category with another"},
            {"files": "nope", "metadata_edit_turn_prompts": ["x"]},
        ],
    )  # fmt: skip
    expected["pico_multi"] = dict(read=2, kept=1, duplicates=0, unusable={"bad_field": 1})

    # OpenGPT-4o-Image editing.json (a JSON array).
    og = root / "opengpt"
    _write(og / "input" / "o1.png", png(10))
    _write(og / "input" / "o2.png", png(11))
    _write(og / "input" / "o3.png", png(12))
    _write(
        og / "editing.json",
        json.dumps(
            [
                {"input_prompt": "Change the sky to a starry night.", "input_image": ["input/o1.png"], "output_image": "output/o1.png"},
                {"input_prompt": "Add a red umbrella to the table.", "input_image": ["input/o2.png"], "output_image": "output/o2.png"},
                {"input_prompt": "Blend these.", "input_image": ["input/o1.png", "input/o2.png"], "output_image": "output/o4.png"},
                {"input_image": ["input/o3.png"], "output_image": "output/o5.png"},
                {"input_prompt": "Rotate the lamp.", "input_image": 7, "output_image": "output/o6.png"},
            ]
        ),
    )  # fmt: skip
    expected["opengpt"] = dict(
        read=5,
        kept=2,
        duplicates=0,
        unusable={"multiple_input_images": 1, "missing_field": 1, "bad_field": 1},
    )

    # ShareGPT-4o-Image (JSON lines): an exact duplicate of an OpenGPT pair, a malformed line.
    sg = root / "sharegpt"
    _write(sg / "input" / "s1.png", png(20))
    _write(sg / "input" / "dup.png", png(11))
    _jsonl(
        sg / "text_and_image_to_image.json",
        [
            {"input_prompt": "Make it look like a watercolor painting.", "input_image": ["input/s1.png"], "output_image": "out/s1.png"},
            {"input_prompt": "add a red  umbrella to the table.", "input_image": ["input/dup.png"], "output_image": "out/s2.png"},
            "{oops",
        ],
    )  # fmt: skip
    expected["sharegpt"] = dict(read=3, kept=1, duplicates=1, unusable={"malformed_line": 1})

    # GEdit-Bench parquet: embedded images, English and Chinese rows.
    gd = root / "gedit"
    gd.mkdir(parents=True)
    rows = [
        ("g1", "background_change", "Change the background to a beach.", "en", png(30)),
        ("g2", "subject-add", "Add a dog next to the bench.", "en", png(31)),
        ("g1", "background_change", "把背景换成海滩。", "cn", png(30)),
        ("g3", "color_alter", "Make the car green.", "en", None),
        ("g4", "style_change", "Make it look like pixel art.", "en", b"not an image"),
    ]
    pq.write_table(
        pa.table(
            {
                "key": [r[0] for r in rows],
                "task_type": [r[1] for r in rows],
                "instruction": [r[2] for r in rows],
                "instruction_language": [r[3] for r in rows],
                "input_image": [None if r[4] is None else {"bytes": r[4], "path": None} for r in rows],
            }
        ),
        gd / "train-00000.parquet",
    )
    expected["gedit"] = dict(
        read=5, kept=2, duplicates=0, unusable={"missing_field": 1, "image_unreadable": 1},
        filtered={"other_language": 1}, embedded=2,
    )  # fmt: skip

    # ImgEdit-Bench basic_edit.json: key -> {id: image path, prompt, edit_type}.
    ie = root / "imgedit"
    _write(ie / "animal" / "i1.jpg", jpeg(40))
    _write(ie / "scene" / "i2.jpg", jpeg(41))
    _write(
        ie / "basic_edit.json",
        json.dumps(
            {
                "1": {"id": "animal/i1.jpg", "prompt": "Add a hat to the cat.", "edit_type": "add"},
                "2": {"id": "scene/i2.jpg", "prompt": "Replace the background with mountains.", "edit_type": "background"},
                "3": {"id": "scene/i2.jpg", "edit_type": "remove"},
                "4": {"id": "scene/missing.jpg", "prompt": "Remove the tree.", "edit_type": "remove"},
                "5": {"id": "scene/i2.jpg", "prompt": "Adjust the tree.", "edit_type": 7},
            }
        ),
    )  # fmt: skip
    expected["imgedit"] = dict(
        read=5, kept=2, duplicates=0, unusable={"missing_field": 1, "image_missing": 1, "bad_field": 1}
    )

    # KRIS-Bench: per-category annotation.json.
    kr = root / "kris"
    _write(kr / "count_change" / "k1.png", png(50))
    _write(kr / "temporal" / "k2.png", png(51))
    _write(
        kr / "count_change" / "annotation.json",
        json.dumps(
            {
                "1": {
                    "ori_img": "k1.png",
                    "ins_en": "Add as many apples as there are plates.",
                    "explain_en": "...",
                },
                "2": {"ori_img": ["k1.png", "k2.png"], "ins_en": "Combine them."},
            }
        ),
    )
    _write(
        kr / "temporal" / "annotation.json",
        json.dumps(
            {
                "1": {"ori_img": "k2.png", "ins_en": "Show this tree fifty years later."},
                "2": {"ori_img": "k2.png"},
            }
        ),
    )
    _write(kr / "broken" / "annotation.json", '{"1": {"ori_img": ')  # cut short: one error, not fatal
    expected["kris"] = dict(
        read=5,
        kept=2,
        duplicates=0,
        unusable={"multiple_input_images": 1, "missing_field": 1, "unreadable_file": 1},
    )

    # RISEBench: a list; a JPEG re-encode of an OpenGPT image with its instruction.
    rs = root / "rise"
    _write(rs / "data" / "r1.png", png(60))
    _write(rs / "data" / "near.jpg", jpeg(10, quality=85))
    _write(
        rs / "data.json",
        json.dumps(
            [
                {"index": 1, "category": "causal", "instruction": "Show the glass after it falls.", "image": "data/r1.png"},
                {"index": 2, "category": "temporal", "instruction": "Change the sky to a starry night.", "image": "data/near.jpg"},
                {"category": "logical", "instruction": "Solve the maze.", "image": "data/r1.png"},
            ]
        ),
    )  # fmt: skip
    expected["rise"] = dict(read=3, kept=1, duplicates=1, unusable={"missing_field": 1})

    # The skeleton's JSONL manifest.
    mj = root / "manifest"
    _write(mj / "img" / "m1.png", png(70))
    _jsonl(
        mj / "manifest.jsonl",
        [
            {
                "id": "m1",
                "image": "img/m1.png",
                "instruction": "Make the scene look like a sketch.",
                "task_type": "style",
            },
            {"id": "m2", "image": "img/m1.png", "instruction": "Remove it.", "task_type": "cooking"},
        ],
    )
    expected["manifest"] = dict(read=2, kept=1, duplicates=0, unusable={"bad_task_type": 1})

    # Generic parquet: an image path and image bytes; an instruction of the wrong type.
    pqd = root / "table"
    _write(pqd / "img" / "p1.png", png(80))
    pq.write_table(
        pa.table(
            {
                "id": ["p1", "p2", "p3"],
                "image": [{"bytes": None, "path": "img/p1.png"}, {"bytes": png(81), "path": None},
                          {"bytes": png(82), "path": None}],
                "instruction": ["Change the wall color to yellow.", "Add snow on the roof.", None],
            }
        ),
        pqd / "pairs.parquet",
    )  # fmt: skip
    expected["table"] = dict(read=3, kept=2, duplicates=0, unusable={"missing_field": 1}, embedded=1)

    # WebDataset tar: json + png members; a sample without an image; bad JSON.
    wd = root / "wds"
    wd.mkdir()
    with tarfile.open(wd / "shard-000000.tar", "w") as tar:
        members = [
            ("w1.json", json.dumps({"instruction": "Make the ball blue.", "label": "recolor"}).encode()),
            ("w1.png", png(90)),
            ("w2.txt", b"Make it look like an oil painting."),
            ("w2.png", png(91)),
            ("w3.json", json.dumps({"instruction": "Remove the cup."}).encode()),
            ("w4.json", b"{not json"),
            ("w4.png", png(92)),
        ]
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    expected["wds"] = dict(
        read=4, kept=2, duplicates=0, unusable={"missing_field": 1, "bad_field": 1}, embedded=2
    )

    # A Hugging Face datasets folder (save_to_disk), Image feature.
    import datasets

    hf = root / "hf"
    ds = datasets.Dataset.from_dict(
        {
            "id": ["h1", "h2", "h3"],
            "image": [{"bytes": png(100), "path": None}, {"bytes": png(101), "path": None}, {"bytes": png(102), "path": None}],
            "instruction": ["Change the car to a bicycle.", "Give it a cyberpunk style.", None],
        },
        features=datasets.Features(
            {"id": datasets.Value("string"), "image": datasets.Image(), "instruction": datasets.Value("string")}
        ),
    )  # fmt: skip
    ds.save_to_disk(str(hf))
    expected["hf"] = dict(read=3, kept=2, duplicates=0, unusable={"missing_field": 1}, embedded=2)

    inputs = [
        {"format": "jsonl", "path": str(mj / "manifest.jsonl"), "name": "manifest"},
        {"format": "pico_banana", "path": str(pico / "sft.jsonl"), "name": "pico",
         "options": {"openimages_mapping": str(pico / "oi.csv"), "openimages_dir": str(pico / "openimages")}},
        {"format": "pico_banana", "path": str(pico / "multi-turn.jsonl"), "name": "pico_multi"},
        {"format": "opengpt4o", "path": str(og / "editing.json"), "name": "opengpt", "licence": "cc-by-4.0"},
        {"format": "sharegpt4o", "path": str(sg / "text_and_image_to_image.json"), "name": "sharegpt"},
        {"format": "gedit", "path": str(gd), "name": "gedit"},
        {"format": "imgedit", "path": str(ie / "basic_edit.json"), "name": "imgedit"},
        {"format": "kris", "path": str(kr), "name": "kris"},
        {"format": "rise", "path": str(rs / "data.json"), "name": "rise"},
        {"format": "parquet", "path": str(pqd / "pairs.parquet"), "name": "table"},
        {"format": "webdataset", "path": str(wd), "name": "wds", "label_map": {"recolor": "subject-driven"}},
        {"format": "hf_disk", "path": str(hf), "name": "hf"},
    ]  # fmt: skip
    return inputs, expected
