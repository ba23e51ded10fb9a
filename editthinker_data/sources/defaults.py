"""Default label tables (each dataset's own edit categories -> the pipeline's coarse task
types) and licences per format. A config's `label_map` and `licence` override these.

Labels are matched after normalising (lower case, runs of non-alphanumerics to one space),
first exactly, then by the keyword rules, so a label spelt slightly differently from the
table still maps; a label that matches nothing is counted as `unknown_label`.
"""

from __future__ import annotations

import re

SUBJ, STYLE, BG, REASON, OTHER = "subject-driven", "style", "background", "reasoning", "other"

# GEdit-Bench's 11 task types.
GEDIT = {
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

# ImgEdit-Bench's 9 edit types.
IMGEDIT = {
    "add": SUBJ,
    "remove": SUBJ,
    "replace": SUBJ,
    "adjust": SUBJ,
    "extract": SUBJ,
    "action": SUBJ,
    "background": BG,
    "style": STYLE,
    "hybrid": OTHER,
}

# Pico-Banana-400K: 35 edit types in 8 categories (Object-Level, Scene Composition,
# Human-Centric, Stylistic, Text & Symbol, Pixel & Photometric, Scale & Perspective,
# Spatial/Layout). The keyword rules below carry the mapping; this table pins the names.
PICO_BANANA = {
    "add a new object to the scene": SUBJ,
    "remove an existing object": SUBJ,
    "replace one object category with another": SUBJ,
    "change an object's attribute (e.g., color/material)": SUBJ,
    "relocate an object (change its position/spatial relation)": SUBJ,
    "change the size/shape/orientation of an object": SUBJ,
    "change a person's facial expression": SUBJ,
    "change a person's clothing": SUBJ,
    "change a person's hairstyle or hair color": SUBJ,
    "modify a person's age": SUBJ,
    "add accessories to a person": SUBJ,
    "change a person's pose or gesture": SUBJ,
    "convert a person into a cartoon/caricature": STYLE,
    "strong artistic style transfer (e.g., van gogh/anime/etc.)": STYLE,
    "modern/historical style remix": STYLE,
    "photo to sketch, painting or illustration": STYLE,
    "add film grain or vintage filter": STYLE,
    "change overall color tone (warm/cool/grading)": STYLE,
    "adjust brightness, contrast or saturation": OTHER,
    "sharpen or blur the image": OTHER,
    "change weather conditions (sunny/rainy/snowy)": BG,
    "change the season": BG,
    "change the time of day": BG,
    "change the lighting of the scene": BG,
    "add new scene context/background": BG,
    "replace the background": BG,
    "add new text (sign/label/poster)": OTHER,
    "replace or modify existing text content": OTHER,
    "translate text into another language": OTHER,
    "change font style or color of visible text": OTHER,
    "zoom in on a region": OTHER,
    "change the camera angle or viewpoint": OTHER,
    "outpainting (extend the canvas beyond boundaries)": OTHER,
    "change the composition or layout": OTHER,
    "swap the positions of two objects": SUBJ,
}

# (regex on the normalised label, task type), tried in order after the exact table.
PICO_BANANA_RULES: list[tuple[str, str]] = [
    (r"\b(background|scene context|weather|season|time of day|lighting|sky)\b", BG),
    (
        r"\b(style|artistic|painting|sketch|cartoon|caricature|anime|film grain|vintage|tone|grading|filter)\b",
        STYLE,
    ),
    (r"\b(text|font|sign|label|translate|symbol|logo)\b", OTHER),
    (r"\b(zoom|outpaint\w*|canvas|camera|viewpoint|perspective|layout|composition|crop)\b", OTHER),
    (r"\b(brightness|contrast|saturation|sharpen|blur|exposure)\b", OTHER),
    (
        r"\b(object|person|people|clothing|hair\w*|expression|age|accessor\w*|pose|gesture|attribute|relocate|replace|remove|add)\b",
        SUBJ,
    ),
]

# Every KRIS-Bench and RISEBench task asks for reasoning.
REASONING_ONLY = {"*": REASON}

LABEL_TABLES: dict[str, dict[str, str]] = {
    "pico_banana": PICO_BANANA,
    "gedit": GEDIT,
    "imgedit": IMGEDIT,
    "kris": REASONING_ONLY,
    "rise": REASONING_ONLY,
}
LABEL_RULES: dict[str, list[tuple[str, str]]] = {"pico_banana": PICO_BANANA_RULES}

# Only licences confirmed from the dataset's own page are defaults; the others stay
# unset, which the summary warns about until the config names one.
LICENCES: dict[str, str] = {
    "pico_banana": "cc-by-nc-nd-4.0",
}

NON_COMMERCIAL = re.compile(r"(^|[-_ ])nc([-_ ]|$)|non-?commercial|research[-_ ]only", re.IGNORECASE)
NO_DERIVATIVES = re.compile(r"(^|[-_ ])nd([-_ ]|$)|no-?deriv", re.IGNORECASE)
UNKNOWN_LICENCES = {"", "unknown", "other"}


def normalise_label(label: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9']+", " ", label.lower()).split())


class LabelMapper:
    """Maps one source's labels to task types: the config's label_map over the defaults."""

    def __init__(self, fmt: str, overrides: dict[str, str] | None = None, use_defaults: bool = True):
        table = dict(LABEL_TABLES.get(fmt, {})) if use_defaults else {}
        table.update(overrides or {})
        self.wildcard = table.pop("*", None)
        self.table = {normalise_label(k): v for k, v in table.items()}
        self.rules = [(re.compile(p), t) for p, t in LABEL_RULES.get(fmt, [])] if use_defaults else []

    def __call__(self, label: str) -> str | None:
        norm = normalise_label(label)
        if norm in self.table:
            return self.table[norm]
        for pattern, task_type in self.rules:
            if pattern.search(norm):
                return task_type
        return self.wildcard


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
