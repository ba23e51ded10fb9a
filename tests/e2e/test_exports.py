"""Release artefacts of the demo build, checked the way the trainers' loaders check them."""

import hashlib
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from PIL import Image

from editthinker_data.io.storage import open_storage
from editthinker_data.prompts import user_turn
from editthinker_data.release.common import iter_steps

TRAINING_DOC = Path(__file__).resolve().parents[2] / "docs" / "output.md"

pytestmark = pytest.mark.slow

ANSWER = re.compile(r"^<think>(.+)</think><score>(\{.*\})</score><answer>(.+)</answer>$", re.S)


def _check_files(root, export_info):
    """export_info.json names each data file with its sha256, size and row count."""
    for name, entry in export_info["files"].items():
        data = (root / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"], name


def _check_command(export_info):
    """The docs' "Training with the exports" (docs/output.md) gives the same command as
    export_info.json."""
    command = export_info["trainer"]["command"]
    assert command in re.sub(r" *\\\n *", " ", TRAINING_DOC.read_text(encoding="utf-8"))
    return command


def test_llamafactory_rows_load_as_llamafactory_reads_them(demo_build):
    out, result = demo_build
    root = out / "exports" / "llamafactory"
    export_info = json.loads((root / "export_info.json").read_text())
    settings = export_info["trainer"]["settings"]
    assert settings == {"dataset_dir": ".", "dataset": "editthinker_sft", "template": "qwen3_vl"}
    command = _check_command(export_info)
    for key, value in settings.items():
        assert f"--{key} {'$EXPORT' if key == 'dataset_dir' else value}" in command
    # LLaMA-Factory reads `dataset_info.json` in `dataset_dir` and the entry named by `dataset`
    dataset_dir = root / settings["dataset_dir"]
    entry = json.loads((dataset_dir / "dataset_info.json").read_text())[settings["dataset"]]
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
    rows = json.loads((dataset_dir / entry["file_name"]).read_text())
    assert len(rows) == export_info["rows"] == result.manifest["totals"]["sft"] > 0
    _check_files(root, export_info)
    # hiyouga/LLaMA-Factory src/llamafactory/data/converter.py: SharegptDatasetConverter takes
    # the columns and tags of the entry, user/assistant alternate from the user; _find_medias
    # joins each image path to media_dir, which hparams/data_args.py defaults to dataset_dir;
    # mm_plugin.py rejects a row whose <image> tokens do not match its images.
    tags, media_dir = entry["tags"], dataset_dir
    for row in rows:
        messages, images = row[entry["columns"]["messages"]], row[entry["columns"]["images"]]
        assert [m[tags["role_tag"]] for m in messages] == [tags["user_tag"], tags["assistant_tag"]]
        tokens = sum(m[tags["content_tag"]].count("<image>") for m in messages)
        assert tokens == len(images) == 2
        for path in images:
            assert not os.path.isabs(path) and os.path.isfile(os.path.join(media_dir, path))
        m = ANSWER.match(messages[1][tags["content_tag"]])
        assert m, messages[1]["content"][:80]
        score = json.loads(m.group(2))
        assert set(score) == {"semantic", "quality"} and all(0 <= v <= 10 for v in score.values())
        assert "Original instruction:" in messages[0]["content"]
    assert export_info["prompt_template"] == "thinker_user_v1"
    files = list((root / "images").iterdir())
    assert export_info["image_files"]["count"] == export_info["images"] == len(files)
    hashes = {hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    assert len(hashes) == len(files)  # each image written once
    assert {p for r in rows for p in r["images"]} == {f"images/{f.name}" for f in files}


def test_easyr1_rows_load_as_the_editthinker_fork_reads_them(demo_build):
    """Reads the rows the way appletea233/EditThinker train/EasyR1/verl/utils/dataset.py
    (RLHFDataset) does, with the settings export_info.json gives."""
    import datasets

    out, result = demo_build
    root = out / "exports" / "easyr1"
    export_info = json.loads((root / "export_info.json").read_text())
    settings = export_info["trainer"]["settings"]
    assert settings["data.answer_key"] == "evaluation"
    command = _check_command(export_info)
    for key, value in settings.items():
        assert f"{key}={value if key == 'data.answer_key' else '$EXPORT/' + value}" in command
    _check_files(root, export_info)
    # __init__: a .jsonl file is read by the `json` builder; format_prompt is a file path
    ds = datasets.load_dataset(
        "json",
        data_files=str(root / settings["data.train_files"]),
        split="train",
        cache_dir=str(out / "_hf_rl"),
    )
    assert ds.num_rows == export_info["rows"] == result.manifest["totals"]["rl"] > 0
    with open(root / settings["data.format_prompt"], encoding="utf-8") as f:
        format_prompt = f.read()
    assert "{original_instruction}" in format_prompt and "{rewritten_prompt}" in format_prompt
    assert format_prompt.count("<image>") == 2
    image_dir = str(root / settings["data.image_dir"])
    steps = {s["json"]["key"]: s for s in iter_steps(open_storage(out), "rl")}
    for index in range(len(ds)):
        example = dict(ds[index])
        # _build_messages: plain text replacement, then one image part per <image> token
        prompt_str = (
            format_prompt.strip()
            .replace("{original_instruction}", example.get("origin_prompt", ""))
            .replace("{rewritten_prompt}", example.get("rewritten_prompt", ""))
        )
        content = []
        for i, part in enumerate(prompt_str.split("<image>")):
            if i != 0:
                content.append({"type": "image"})
            if part:
                content.append({"type": "text", "text": part})
        # the RL prompt is the SFT user turn of the same step
        meta = {
            "source_instruction": example["origin_prompt"],
            "previous_instruction": example["rewritten_prompt"],
        }
        assert prompt_str == user_turn(meta)
        # __getitem__: relative paths are joined to image_dir, then opened and made RGB
        images = []
        for key in ("origin_image_path", "edited_image_path"):
            assert not os.path.isabs(example[key])
            with Image.open(os.path.join(image_dir, example[key])) as img:
                img.load()
                images.append(img.convert("RGB"))
        assert sum(c["type"] == "image" for c in content) == len(images) == 2
        ground_truth = example.pop(settings["data.answer_key"])
        assert settings["data.answer_key"] not in example
        # edit_thinker_reward.py reads ground_truth["semantics"] and ["quality"] as numbers
        assert set(ground_truth) == {"semantics", "quality"}
        assert all(isinstance(v, float) and 0 <= v <= 10 for v in ground_truth.values())
        # the ground truth is the score of the edit the thinker sees (the step's prev.png)
        step = steps[example["id"]]
        assert example["edited_image_path"][:20] == hashlib.sha256(step["prev.png"]).hexdigest()[:20]
        assert ground_truth == {
            "semantics": step["json"]["scores"]["semantic"],
            "quality": step["json"]["scores"]["quality"],
        }


def test_step_shards_load_with_datasets(demo_build):
    import datasets

    out, result = demo_build
    for split in ("sft", "rl"):
        files = sorted(str(p) for p in (out / "steps" / split).glob("*.tar"))
        ds = datasets.load_dataset(
            "webdataset", data_files={"train": files}, split="train", cache_dir=str(out / "_hf")
        )
        assert ds.num_rows == result.manifest["totals"][split]
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
    figures = result.release.figures
    assert len(figures) == 5
    for f in figures:
        assert f"]({f})" in body
        with Image.open(out / f) as img:
            assert img.width > 300 and img.height > 200


class _Gallery(HTMLParser):
    """Sections (with their data- attributes), turn figures (image and the critique under
    it), links and scripts of one gallery page."""

    def __init__(self, path):
        super().__init__()
        self.sections, self.turns, self.images, self.links, self.scripts = [], [], [], [], 0
        self.nav_current, self._crit_depth, self._div_depth, self._in_a = [], None, 0, None
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "section" and a.get("class") == "trajectory":
            self.sections.append(a)
        if tag == "figure" and "turn" in a.get("class", "").split():
            self.turns.append({"section": self.sections[-1]["data-id"], "turn": int(a["data-turn"])})
        if tag == "img":
            self.images.append(a["src"])
            if self.turns and "src" not in self.turns[-1]:
                self.turns[-1]["src"] = a["src"]
        if tag == "a":
            self.links.append(a["href"])
            self._in_a = a if "aria-current" in a else None
        if tag == "div":
            self._div_depth += 1
            if a.get("class", "").startswith("critique"):
                self.turns[-1].update(about=int(a["data-about-turn"]), critique="")
                self._crit_depth = self._div_depth

    def handle_endtag(self, tag):
        if tag == "div":
            if self._crit_depth == self._div_depth:
                self._crit_depth = None
            self._div_depth -= 1
        if tag == "a":
            self._in_a = None

    def handle_data(self, data):
        if self._crit_depth is not None:
            self.turns[-1]["critique"] += data
        if self._in_a is not None:
            self.nav_current.append((self._in_a["href"], data))


def test_gallery_shows_every_trajectory_with_its_images_and_links(demo_build):
    out, result = demo_build
    gallery = out / "gallery"
    page = _Gallery(gallery / "index.html")
    stats = result.stats["stages"]
    assert len(page.sections) == stats["trajectory_filter"]["input"] == 40
    assert sum(s["data-kept"] == "true" for s in page.sections) == stats["balance"]["kept"]  # released
    assert len(page.images) == 40 + result.manifest["totals"]["trajectories"]  # sources + every turn
    assert all((gallery / src).is_file() for src in page.images)
    assert page.scripts == 0  # the whole gallery is static HTML
    # links to the card and to every figure, relative, so they work from a download or a bucket
    assert "../README.md" in page.links
    for fig in result.release.figures:
        assert f"../{fig}" in page.links and (gallery / f"../{fig}").is_file()
    # every section is an anchor the table of contents links to
    assert {f"#t-{s['data-id']}" for s in page.sections} <= set(page.links)


def test_gallery_shows_each_image_with_the_critique_of_that_image(demo_build):
    """The reasoning stored with turn t critiques turn t-1's image; the gallery shows turn
    t's image with the critique written at turn t+1 (or the final one), and says so."""
    import numpy as np

    from editthinker_data.release.report import Build

    out, _ = demo_build
    build = Build(str(out))
    page = _Gallery(out / "gallery" / "index.html")
    by_section = {}
    for t in page.turns:
        by_section.setdefault(t["section"], []).append(t)
    for key, figures in by_section.items():
        rows = build.trajectory(key)["rows"]
        assert [f["turn"] for f in figures] == [r["turn"] for r in rows]
        for f, r, nxt in zip(figures, rows, rows[1:] + [None], strict=True):
            assert f["about"] == f["turn"] and f["src"] == f"img/{r['sample_key']}.png"
            if nxt is not None:
                assert (
                    f"critique of this image (expert, turn {nxt['turn']}): {nxt['reasoning']}"
                    == f["critique"]
                )
            elif r["final_reasoning"]:
                assert f["critique"].endswith(f"(expert's final critique): {r['final_reasoning']}")
            else:
                assert f["critique"].startswith("no critique:")
    # against the pixels: in subj-three-step the expert calls the black circle gone exactly
    # under the images that hold no black pixels
    seen = set()
    for f in by_section["subj-three-step"]:
        with Image.open(out / "gallery" / f["src"]) as img:
            black = int((np.asarray(img.convert("RGB")).max(axis=2) < 40).sum())
        gone, remains = "the black circle is gone" in f["critique"], "100% of it remains" in f["critique"]
        assert gone != remains and gone == (black == 0), (f["turn"], black, f["critique"])
        seen.add(gone)
    assert seen == {True, False}


def test_gallery_filter_pages_work_without_javascript(demo_build):
    out, _ = demo_build
    gallery = out / "gallery"
    index = _Gallery(gallery / "index.html")
    pages = [h for h in index.links if h.endswith(".html") and "/" not in h]
    assert {"index.html", "kept.html", "filtered.html"} <= set(pages)
    groups = {"task": 0, "editor": 0, "kept": 0, "filtered": 0}
    task_types = {s["data-task-type"] for s in index.sections}
    editors = {s["data-editor"] for s in index.sections}
    assert sum(p.startswith("task-") for p in pages) == len(task_types) >= 4
    assert sum(p.startswith("editor-") for p in pages) == len(editors) >= 2
    for name in pages:
        page = _Gallery(gallery / name)
        assert page.scripts == 0
        [(current, text)] = page.nav_current  # the page marks its own link, and only it
        assert current == name
        count = int(text.rsplit("(", 1)[1].rstrip(")"))
        assert count == len(page.sections) > 0, name
        if name == "kept.html" or name == "filtered.html":
            assert {s["data-kept"] for s in page.sections} == {str(name == "kept.html").lower()}
            groups[name[:-5]] += len(page.sections)
        elif name.startswith("task-"):
            assert len({s["data-task-type"] for s in page.sections}) == 1
            groups["task"] += len(page.sections)
        elif name.startswith("editor-"):
            assert len({s["data-editor"] for s in page.sections}) == 1
            groups["editor"] += len(page.sections)
        assert all((gallery / src).is_file() for src in page.images)
    # each filter splits the same 40 trajectories
    assert groups == {"task": 40, "editor": 40, "kept": groups["kept"], "filtered": 40 - groups["kept"]}
