"""Default label tables (each dataset's own edit categories -> the pipeline's coarse task
types) and licences per format. A config's `label_map` and `licence` override these.

Every table holds the dataset's published strings, each mapped on purpose; where they come
from is noted above each table. Labels are compared after folding case, unicode forms,
punctuation, arrows ("→" reads "to", "↔" a separator) and plural "s", first against the
table, then (Pico-Banana) against keyword rules written for the same folded text (labels.py). A label
that still matches nothing goes to the instruction classifier (classify.py), or is counted
as `unknown_label` where the input sets `strict_labels: true`.

Mapping policy, the same across datasets: object and person-attribute edits are
subject-driven; whole-image looks (artistic styles, person stylisations such as LEGO or
sticker renditions, colour tone and film filters) are style; scene and environment changes
(background, season, weather, lighting) are background; text, zoom and canvas edits are other.
"""

from __future__ import annotations

import re

SUBJ, STYLE, BG, REASON, OTHER = "subject-driven", "style", "background", "reasoning", "other"

# GEdit-Bench's 11 `task_type` values (stepfun-ai/GEdit-Bench; the evaluator's GROUPS list,
# e.g. EditThinker's eval/gedit/calculate_statistics.py). tone_transfer is a global tone
# change (colour grading), so style like Pico-Banana's colour-tone edits.
GEDIT = {
    "background_change": BG,
    "color_alter": SUBJ,
    "material_alter": SUBJ,
    "motion_change": SUBJ,
    "ps_human": SUBJ,  # portrait retouching of a person
    "style_change": STYLE,
    "subject-add": SUBJ,
    "subject-remove": SUBJ,
    "subject-replace": SUBJ,
    "text_change": OTHER,
    "tone_transfer": STYLE,
}

# ImgEdit-Bench `edit_type` values (PKU-YuanGroup/ImgEdit Benchmark/Basic/basic_edit.json).
# The first published file (2025-05-27) says `alter`; the 2025-06-16 update renamed it
# `adjust` (as do prompts.json and the readme): both are here. `compose` (multi-object,
# multi-operation edits) is what the paper's tables call Hybrid and the data tools `hybrid`.
IMGEDIT = {
    "add": SUBJ,
    "remove": SUBJ,
    "replace": SUBJ,
    "alter": SUBJ,
    "adjust": SUBJ,
    "extract": SUBJ,
    "action": SUBJ,
    "background": BG,
    "style": STYLE,
    "compose": SUBJ,  # several object edits at once: still edits of subjects
    "hybrid": SUBJ,
}

# Pico-Banana-400K's 35 `edit_type` strings as the released JSONL files spell them (paper
# arXiv 2510.19808, Table 1, groups them into the 8 categories in the comments; the file
# strings were checked against code that reads the release, e.g. the edit_type tables of
# XIONGPEILIN/pico-banana-400k-subject_driven and other public readers of sft.jsonl).
PICO_BANANA = {
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
    # Human-Centric: the person's own attributes
    "Add/Remove/Replace Accessories (glasses, hats, jewelry, masks)": SUBJ,
    "Clothing edit (change color/outfit)": SUBJ,
    "Pose tweak (minor plausible change)": SUBJ,
    "Modify expressions (smile, frown, neutral)": SUBJ,
    "Change age / gender": SUBJ,
    # Human-Centric: renditions of the person in another look, all style
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

# The paper's Table 1 words three types differently from the files; the other paper
# spellings ("Photo → cartoon", "Change age/gender", "object’s") fold to the file strings.
PICO_BANANA_PAPER = {
    "Adjust global lighting (e.g., golden hour, fluorescent)": BG,
    "Change font style or color of visible text (if present)": OTHER,
    "Sticker-ify the person (bold outline, white border)": STYLE,
}

# (regex on the folded label, task type), tried in order after the table, for spellings
# the table lacks (shortened names, other releases). Text first: "font style" is a text
# edit; style before subject: "LEGO rendition of the person" is a look, not a person edit.
# Written on folded text without plural folding, so plurals are spelt out (`s?`, `\w*`).
PICO_BANANA_RULES: list[tuple[str, str]] = [
    (
        r"\b(texts?|fonts?|signs?|signage|labels?|translat\w*|symbols?|logos?|typograph\w*|"
        r"lettering|billboards?|posters?|captions?)\b",
        OTHER,
    ),
    (
        r"\b(background|backdrop|scene context|weather|season\w*|summer|winter|autumn|"
        r"time of day|day to night|lighting|sky|skies)\b",
        BG,
    ),
    (
        r"\b(styles?|styli[sz]\w*|artistic|paint\w*|sketch\w*|cartoon\w*|caricature\w*|anime|manga|"
        r"comics?|film grain|vintage|tones?|grading|filters?|lego|minifigure\w*|stickers?|funko|"
        r"simpsoni[sz]\w*|pixar|disney|cel shaded|line art|historical)\b",
        STYLE,
    ),
    (
        r"\b(zoom\w*|outpaint\w*|canvas|camera|viewpoints?|perspective|layout|composition|crop\w*|"
        r"extend\w*)\b",
        OTHER,
    ),
    (r"\b(brightness|contrast|saturation|sharpen\w*|blur\w*|exposure|denois\w*)\b", OTHER),
    (
        r"\b(objects?|person|people|human|faces?|facial|clothing|clothes|outfits?|hair\w*|"
        r"expressions?|age|gender|accessor\w*|pose|poses|gestures?|attributes?|relocat\w*|"
        r"replac\w*|remov\w*|add\w*|size|shapes?|orientation)\b",
        SUBJ,
    ),
]

# Every KRIS-Bench and RISEBench task asks for reasoning.
REASONING_ONLY = {"*": REASON}

NON_COMMERCIAL = re.compile(r"(^|[-_ ])nc([-_ ]|$)|non-?commercial|research[-_ ]only", re.IGNORECASE)
NO_DERIVATIVES = re.compile(r"(^|[-_ ])nd([-_ ]|$)|no-?deriv", re.IGNORECASE)
UNKNOWN_LICENCES = {"", "unknown", "other"}


def licence_warnings(licences: dict[str, str]) -> list[str]:
    """Warnings for a build mixing these licences ({source name: licence id}), one per kind."""
    unset, nc, nd = [], [], []
    for name, lic in sorted(licences.items()):
        if lic.strip().lower() in UNKNOWN_LICENCES:
            unset.append(name)
            continue
        if NON_COMMERCIAL.search(lic):
            nc.append(f"{name} ({lic})")
        if NO_DERIVATIVES.search(lic):
            nd.append(f"{name} ({lic})")
    out = []
    if nc:
        out.append(f"non-commercial: {', '.join(nc)}; the built dataset may not be used commercially")
    if nd:
        out.append(
            f"no derivatives: {', '.join(nd)}; check the terms before redistributing the built dataset"
        )
    if unset:
        out.append(
            f"licence not set: {', '.join(unset)}; check each dataset's terms and set `licence:` on the input"
        )
    return out
