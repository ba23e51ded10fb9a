"""Release artefacts of the demo build, checked the way the trainers' loaders check them."""

import hashlib
import json
import re
from html.parser import HTMLParser

import pytest
import yaml
from PIL import Image

pytestmark = pytest.mark.slow

ANSWER = re.compile(r"^<think>(.+)</think><score>(\{.*\})</score><answer>(.+)</answer>$", re.S)


def test_llamafactory_sharegpt_export(demo_build):
    out, result = demo_build
    root = out / "exports" / "llamafactory"
    info = json.loads((root / "dataset_info.json").read_text())
    [(name, entry)] = info.items()
    assert entry == {
        "file_name": "sft_train.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
        },
    }
    rows = json.loads((root / entry["file_name"]).read_text())
    assert len(rows) == result["manifest"]["totals"]["sft"] > 0
    for row in rows:
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["user", "assistant"]  # LLaMA-Factory: user/assistant alternate, user first
        tokens = sum(m["content"].count("<image>") for m in row["messages"])
        assert tokens == len(row["images"]) == 2
        assert all((root / p).is_file() for p in row["images"])
        m = ANSWER.match(row["messages"][1]["content"])
        assert m, row["messages"][1]["content"][:80]
        score = json.loads(m.group(2))
        assert set(score) == {"semantic", "quality"} and all(0 <= v <= 10 for v in score.values())
        assert "Original instruction:" in row["messages"][0]["content"]
    assert json.loads((root / "export_info.json").read_text())["template"] == "thinker_user_v1"
    files = list((root / "images").iterdir())
    hashes = {hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    assert len(hashes) == len(files)  # each image written once
    assert {p for r in rows for p in r["images"]} == {f"images/{f.name}" for f in files}


def test_easyr1_export(demo_build):
    out, result = demo_build
    root = out / "exports" / "easyr1"
    rows = [json.loads(line) for line in (root / "rl_train.jsonl").read_text().splitlines()]
    assert json.loads((root / "export_info.json").read_text())["rows"] == len(rows)
    assert len(rows) == result["manifest"]["totals"]["rl"] > 0
    for r in rows:
        assert isinstance(r["origin_prompt"], str) and isinstance(r["rewritten_prompt"], str)
        for key in ("origin_image_path", "edited_image_path"):
            assert not r[key].startswith("/") and (root / "images" / r[key]).is_file()
        assert set(r["evaluation"]) == {"semantics", "quality"}
        assert all(isinstance(v, float) and 0 <= v <= 10 for v in r["evaluation"].values())


def test_step_shards_load_with_datasets(demo_build):
    import datasets

    out, result = demo_build
    for split in ("sft", "rl"):
        files = sorted(str(p) for p in (out / "steps" / split).glob("*.tar"))
        ds = datasets.load_dataset(
            "webdataset", data_files={"train": files}, split="train", cache_dir=str(out / "_hf")
        )
        assert ds.num_rows == result["manifest"]["totals"][split]
        assert set(ds.features) >= {"json", "src.png", "prev.png"}
        row = ds[0]
        assert row["src.png"].size == (128, 128) and row["json"]["target"].startswith("<think>")


def test_card_front_matter_and_figures(demo_build):
    out, result = demo_build
    text = (out / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["license"] == "cc-by-4.0" and meta["size_categories"] == ["n<1K"]
    for cfg in meta["configs"]:
        for files in cfg["data_files"]:
            assert list(out.glob(files["path"])), files
    assert "thinker_user_v1" in body and "| trajectory_filter |" in body
    figures = result["release"]["figures"]
    assert len(figures) == 5
    for f in figures:
        assert f"]({f})" in body
        with Image.open(out / f) as img:
            assert img.width > 300 and img.height > 200


class _Gallery(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections, self.images, self.kept = 0, [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and a.get("class") == "trajectory":
            self.sections += 1
            self.kept += a.get("data-kept") == "true"
        if tag == "img":
            self.images.append(a["src"])


def test_gallery_shows_every_trajectory_with_its_images(demo_build):
    out, result = demo_build
    page = _Gallery()
    page.feed((out / "gallery" / "index.html").read_text())
    stats = result["stats"]["stages"]
    assert page.sections == stats["trajectory_filter"]["input"] == 40
    assert page.kept == stats["balance"]["kept"]  # released: passed the filter and the balancing
    assert len(page.images) == 40 + result["manifest"]["totals"]["trajectories"]  # sources + every turn
    assert all((out / "gallery" / src).is_file() for src in page.images)
