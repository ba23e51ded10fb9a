"""Label mapping: a dataset's own edit-category label -> the pipeline's task type, through
the format's table and keyword rules (formats.py, defaults.py) under the config's
label_map. Labels and table keys are folded alike (case, unicode forms, arrows,
punctuation, plurals), so spellings that differ only in those still match."""

from __future__ import annotations

import re
import unicodedata

from editthinker_data.sources.formats import FormatSpec

_ARROW_TO = re.compile(r"\s*(?:→|⟶|➔|->|=>)\s*")  # "Photo → cartoon" reads "photo to cartoon"
_ARROW_BOTH = re.compile(r"\s*(?:↔|⟷|⇄|<->|<=>)\s*")  # "summer ↔ winter": two options
_APOSTROPHES = re.compile(r"['’‘`´]")


def fold_label(label: str) -> str:
    """Case, unicode forms, arrows and punctuation folded: the text the keyword rules see."""
    text = unicodedata.normalize("NFKC", label).casefold()
    text = _APOSTROPHES.sub("", _ARROW_TO.sub(" to ", _ARROW_BOTH.sub(" ", text)))  # "<->" before "->"
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def normalise_label(label: str) -> str:
    """The table key: `fold_label` with each word's plural folded ("expressions" ==
    "expression", "object's" == "objects" == "object"). Both sides fold alike, so the fold
    need not be good English, only the same."""
    return " ".join(_singular(w) for w in fold_label(label).split())


class LabelMapper:
    """Maps one source's labels to task types: the config's label_map over its format's
    table and keyword rules (none for a format without them, or `spec` None)."""

    def __init__(
        self, spec: FormatSpec | None, overrides: dict[str, str] | None = None, use_defaults: bool = True
    ):
        table = dict(spec.labels) if use_defaults and spec else {}
        table.update(overrides or {})
        self.wildcard = table.pop("*", None)
        self.table = {normalise_label(k): v for k, v in table.items()}
        self.rules = [(re.compile(p), t) for p, t in spec.label_rules] if use_defaults and spec else []

    def __call__(self, label: str) -> str | None:
        key = normalise_label(label)
        if key in self.table:
            return self.table[key]
        return self.by_rules(label) or self.wildcard

    def by_rules(self, label: str) -> str | None:
        """The keyword rules alone (the table aside)."""
        folded = fold_label(label)
        for pattern, task_type in self.rules:
            if pattern.search(folded):
                return task_type
        return None
