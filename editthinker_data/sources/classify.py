"""Rule-based task type for instructions whose source gives none.

Order matters: a reasoning cue ("the largest", "accordingly", "the shape with three
corners") wins over the verb, because such instructions need the editor to infer its
target; background and style cues come next; object verbs make it subject-driven.
"""

from __future__ import annotations

import re

_RULES: list[tuple[str, str]] = [
    (
        "reasoning",
        r"\b(?:largest|biggest|smallest|tiniest|leftmost|rightmost|highest|lowest|closest|farthest|"
        r"accordingly|as if|what would|would look|after|before|because|so that|the one that|which|"
        r"corners|sides|match(?:es|ing)?|same colou?r as)\b",
    ),
    ("background", r"\b(?:background|backdrop|scenery|setting|sky behind|behind the)\b"),
    (
        "style",
        r"\b(?:style|styled|sepia|monochrome|black and white|grayscale|greyscale|pop art|comic|cartoon|"
        r"sketch|drawing|painting|watercolou?r|oil|pixel|8-bit|vintage|old photo|anime|ghibli|"
        r"van gogh|impressionist|negative|dreamy|retro)\b",
    ),
    (
        "subject-driven",
        r"\b(?:add|insert|remove|delete|erase|replace|move|shift|put|place|draw|swap|recolou?r|"
        r"(?:turn|make|paint|change|colou?r) the (?!image|photo|picture|whole|colou?rs|scene))\b",
    ),
]


def classify(instruction: str) -> str:
    text = instruction.lower()
    for task_type, pattern in _RULES:
        if re.search(pattern, text):
            return task_type
    return "other"
