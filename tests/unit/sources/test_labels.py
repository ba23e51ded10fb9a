"""Each dataset's own label strings, pooled from files shaped like the published ones: every
label maps to its intended task type (none is dropped), spellings fold, and a label no
table knows is classified by default or counted `unknown_label` with `strict_labels`.

The strings are the datasets' own (see editthinker_data/sources/defaults.py for where each
list comes from); the intended types are written here, apart from the tables."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from editthinker_data.config import ConfigError, parse_config
from editthinker_data.io.imagesig import SignatureCache
from editthinker_data.pipeline.pooling import pool
from editthinker_data.sources import read_input
from editthinker_data.sources.defaults import (
    GEDIT,
    IMGEDIT,
    PICO_BANANA,
)
from editthinker_data.sources.formats import FORMATS, LABEL_TABLES
from editthinker_data.sources.labels import LabelMapper, normalise_label
from tests.support.source_fixtures import _jsonl, _write, jpeg, png

SUBJ, STYLE, BG, OTHER = "subject-driven", "style", "background", "other"

# Pico-Banana-400K `edit_type`, as sft.jsonl spells them, by the paper's 8 categories.
PICO_INTENDED = {
    # Pixel & Photometric
    "Change overall color tone (warm ↔ cool)": STYLE,
    "Add film grain or vintage filter": STYLE,
    # Object-Level Semantic
    "Add a new object to the scene": SUBJ,
    "Remove an existing object": SUBJ,
    "Replace one object category with another": SUBJ,
    "Change an object's attribute (e.g., color/material)": SUBJ,
    "Relocate an object (change its position/spatial relation)": SUBJ,
    "Change the size/shape/orientation of an object": SUBJ,
    # Scene Composition & Multi-Subject
    "Add new scene context/background": BG,
    "Apply seasonal transformation (summer ↔ winter)": BG,
    "Change weather conditions (sunny/rainy/snowy)": BG,
    "Adjust global lighting (golden hour/fluorescent)": BG,
    # Stylistic
    "Strong artistic style transfer (e.g., Van Gogh/anime/etc.)": STYLE,
    "Photo to cartoon/sketch/comic": STYLE,
    "Modern ↔ historical style/look": STYLE,
    # Text & Symbol
    "Replace text in signs/posters/billboards": OTHER,
    "Add new (handwritten/printed/etc) text": OTHER,
    "Change font style or color of visible text if there is text": OTHER,
    "Translate written text into other languages": OTHER,
    # Human-Centric
    "Add/Remove/Replace Accessories (glasses, hats, jewelry, masks)": SUBJ,
    "Clothing edit (change color/outfit)": SUBJ,
    "Pose tweak (minor plausible change)": SUBJ,
    "Modify expressions (smile, frown, neutral)": SUBJ,
    "Change age / gender": SUBJ,
    "Convert person to 2D anime/manga style (identity-preserving)": STYLE,
    "Convert person to Pixar/Disney-like 3D cartoon look": STYLE,
    "Convert person to Western comic cel-shaded style": STYLE,
    "Line-art ink sketch of the person": STYLE,
    "Sticker-ify the person with bold outline and white border": STYLE,
    "Caricature with mild feature exaggeration (keep identity)": STYLE,
    "Funko-Pop–style toy figure of the person": STYLE,
    "LEGO-minifigure rendition of the person": STYLE,
    "Simpsonize the person (yellow-skin cartoon style)": STYLE,
    # Scale; Spatial/Layout
    "Zoom in": OTHER,
    "Outpainting (extend canvas beyond boundaries)": OTHER,
}

# GEdit-Bench `task_type` (stepfun-ai/GEdit-Bench).
GEDIT_INTENDED = {
    "background_change": BG,
    "color_alter": SUBJ,
    "material_alter": SUBJ,
    "motion_change": SUBJ,
    "ps_human": SUBJ,
    "style_change": STYLE,
    "subject-add": SUBJ,
    "subject-remove": SUBJ,
    "subject-replace": SUBJ,
    "text_change": OTHER,
    "tone_transfer": STYLE,
}

# ImgEdit-Bench basic_edit.json `edit_type`: `alter` in the first published file, `adjust`
# since its 2025-06-16 update; `compose` in both.
IMGEDIT_INTENDED = {
    "add": SUBJ,
    "remove": SUBJ,
    "replace": SUBJ,
    "alter": SUBJ,
    "adjust": SUBJ,
    "extract": SUBJ,
    "action": SUBJ,
    "background": BG,
    "style": STYLE,
    "compose": SUBJ,
}


def cfg_for(inputs, **source):
    return parse_config({"source": {"inputs": inputs, **source}, "editors": [{"name": "a"}]}, environ={})


def pool_input(spec: dict, **source):
    cfg = cfg_for([spec], **source)
    records = read_input(cfg.source.inputs[0], prefix_ids=False)
    return pool(records, cfg, sigs=SignatureCache(), store=lambda sha, ext, _: f"images/{sha}.{ext}")


def kept_by_label(result) -> dict[str, str]:
    return {e.label: e.task_type for e in result.entries}


def test_the_tables_hold_each_published_set_complete():
    assert len(PICO_INTENDED) == 35 and len(GEDIT_INTENDED) == 11
    assert set(PICO_BANANA) == set(PICO_INTENDED)
    assert set(GEDIT) == set(GEDIT_INTENDED)
    assert set(IMGEDIT_INTENDED) <= set(IMGEDIT)
    for fmt, table in LABEL_TABLES.items():  # no two spellings fold together with two types
        folded: dict[str, str] = {}
        for label, task_type in table.items():
            key = normalise_label(label)
            assert folded.setdefault(key, task_type) == task_type, (fmt, label)


def test_pico_banana_35_edit_types_pool_to_their_intended_types(tmp_path):
    rows = []
    for n, label in enumerate(PICO_INTENDED):
        _write(tmp_path / "local" / f"{n}.jpg", jpeg(2000 + n))
        rows.append({
            "text": "A long instruction.", "summarized_text": f"Edit number {n} of the picture.",
            "output_image": f"images/positive-edit/{n}.png", "local_input_image": f"local/{n}.jpg",
            "open_image_input_url": f"https://farm.example/{n}_o.jpg", "edit_type": label,
        })  # fmt: skip
    _jsonl(tmp_path / "sft.jsonl", rows)
    result = pool_input({"format": "pico_banana", "path": str(tmp_path / "sft.jsonl"), "name": "pico"})
    assert result.failures == [] and result.by_source["pico"]["unmapped_labels"] == {}
    assert kept_by_label(result) == PICO_INTENDED


def test_gedit_11_task_types_pool_to_their_intended_types(tmp_path):
    keys = list(GEDIT_INTENDED)
    pq.write_table(
        pa.table({
            "key": [f"g{n}" for n in range(len(keys))],
            "task_type": keys,
            "instruction": [f"Edit number {n} of the picture." for n in range(len(keys))],
            "instruction_language": ["en"] * len(keys),
            "input_image": [{"bytes": png(3000 + n), "path": None} for n in range(len(keys))],
        }),
        tmp_path / "train-00000.parquet",
    )  # fmt: skip
    result = pool_input({"format": "gedit", "path": str(tmp_path), "name": "gedit"})
    assert result.failures == [] and kept_by_label(result) == GEDIT_INTENDED


def test_imgedit_published_edit_types_pool_to_their_intended_types(tmp_path):
    entries = {}
    for n, label in enumerate(IMGEDIT_INTENDED):
        _write(tmp_path / "animal" / f"{n}.jpg", jpeg(4000 + n))
        entries[str(n)] = {
            "id": f"animal/{n}.jpg",
            "prompt": f"Edit number {n} of the picture.",
            "edit_type": label,
        }
    _write(tmp_path / "basic_edit.json", json.dumps(entries))
    result = pool_input({"format": "imgedit", "path": str(tmp_path / "basic_edit.json"), "name": "imgedit"})
    assert result.failures == [] and kept_by_label(result) == IMGEDIT_INTENDED


@pytest.mark.parametrize(
    "spelling, task_type",
    [
        # the paper's Table 1 spellings of the file strings
        ("Photo → cartoon/sketch/comic", STYLE),
        ("Adjust global lighting (e.g., golden hour, fluorescent)", BG),
        ("Change font style or color of visible text (if present)", OTHER),
        ("Sticker-ify the person (bold outline, white border)", STYLE),
        ("“Simpsonize” the person (yellow-skin cartoon style)", STYLE),
        ("Change an object’s attribute (e.g., color/material)", SUBJ),
        ("Add new (handwritten/printed/etc.) text", OTHER),
        ("Change age/gender", SUBJ),
        # case, arrows written in ASCII, singular for plural
        ("MODERN <-> HISTORICAL STYLE/LOOK", STYLE),
        ("apply seasonal transformation (summer -> winter)", BG),
        ("Modify expression (smile, frown, neutral)", SUBJ),
        ("add/remove/replace accessory (glasses, hats, jewelry, masks)", SUBJ),
        # shortened names: the keyword rules
        ("Change weather conditions", BG),
        ("Apply seasonal transformation", BG),
        ("Modify expressions", SUBJ),
        ("Change font style or color of visible text", OTHER),
        ("LEGO minifigure", STYLE),
        ("Sticker-ify the person", STYLE),
        ("Outpainting", OTHER),
    ],
)
def test_pico_banana_spellings_fold_to_the_same_type(spelling, task_type):
    assert LabelMapper(FORMATS["pico_banana"])(spelling) == task_type


def test_the_keyword_rules_alone_agree_with_the_table():
    rules = LabelMapper(FORMATS["pico_banana"])
    assert {label: rules.by_rules(label) for label in PICO_INTENDED} == PICO_INTENDED


def test_benchmark_labels_fold_case_and_separators():
    gedit, imgedit = LabelMapper(FORMATS["gedit"]), LabelMapper(FORMATS["imgedit"])
    assert gedit("Subject_Add") == gedit("subject add") == SUBJ and gedit("Tone-Transfer") == STYLE
    assert imgedit("Alter") == imgedit("ADJUST") == SUBJ and imgedit("Hybrid") == SUBJ


@pytest.fixture
def unknown_labels(tmp_path):
    _write(tmp_path / "a.jpg", jpeg(5000))
    _write(tmp_path / "b.jpg", jpeg(5001))
    _write(
        tmp_path / "basic_edit.json",
        json.dumps({
            "1": {"id": "a.jpg", "prompt": "Make it look like a watercolor painting.", "edit_type": "restyle"},
            "2": {"id": "b.jpg", "prompt": "Add a red umbrella to the table.", "edit_type": "add"},
        }),
    )  # fmt: skip
    return {"format": "imgedit", "path": str(tmp_path / "basic_edit.json"), "name": "ie"}


def test_an_unknown_label_goes_to_the_classifier_and_is_counted(unknown_labels):
    result = pool_input(unknown_labels)
    assert result.failures == []
    assert kept_by_label(result) == {"restyle": STYLE, "add": SUBJ}  # by its instruction
    assert result.by_source["ie"]["unmapped_labels"] == {"restyle": 1}
    assert result.by_source["ie"]["unusable"] == {}


def test_strict_labels_count_an_unknown_label_unusable(unknown_labels):
    result = pool_input({**unknown_labels, "strict_labels": True})
    assert kept_by_label(result) == {"add": SUBJ}
    assert result.by_source["ie"]["unusable"] == {"unknown_label": 1}
    (err,) = result.failures
    assert err.record == "1" and "'restyle'" in err.detail and "label_map" in err.detail
    assert result.by_source["ie"]["unmapped_labels"] == {}
    # task types that must be given are never guessed either
    given = pool_input(unknown_labels, task_type="given")
    assert given.by_source["ie"]["unusable"] == {"unknown_label": 1}


def test_strict_labels_without_any_table_is_refused_with_the_fix(unknown_labels):
    with pytest.raises(ConfigError, match="strict_labels but no label table.*add a label_map"):
        cfg_for([{**unknown_labels, "strict_labels": True, "default_labels": False}])
    cfg_for([{**unknown_labels, "strict_labels": True, "default_labels": False, "label_map": {"add": SUBJ}}])
    with pytest.raises(ConfigError, match="strict_labels"):
        cfg_for([{**unknown_labels, "strict_labels": "sometimes"}])


def test_every_format_is_one_registry_entry_whose_reader_and_options_exist():
    """A FormatSpec names an importable reader; its image-root and path options are known to
    config (resolved against the config file) and taken by the format."""
    from editthinker_data.config import PATH_OPTIONS

    for name, spec in FORMATS.items():
        assert callable(spec.load_reader()), name
        assert set(spec.image_roots) <= set(spec.options), name
        assert set(spec.image_roots) <= set(PATH_OPTIONS), name
