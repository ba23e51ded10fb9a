"""Instruction grammar of the procedural world: text -> clauses -> targets in a scene.

Two vocabularies model the gap the paper's loop closes. The *basic* vocabulary is what a
single-pass editor follows: plain colour and shape names, explicit verbs. The *full*
vocabulary is what a strong MLLM expert understands as well: colour synonyms (crimson),
shape paraphrases (the shape with three corners), relations (the largest shape) and idioms
(make it pop, make it look old). The expert rewrites an instruction into the basic
vocabulary; that rewrite is what makes refinement pay off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from editthinker_data.backends.procedural.scene import BACKGROUNDS, COLORS, WHERE, Scene, SceneObject

COLOR_SYNONYMS = {
    "crimson": "red", "scarlet": "red", "ruby": "red", "cherry": "red",
    "navy": "blue", "azure": "blue", "cobalt": "blue", "sapphire": "blue",
    "emerald": "green", "lime": "green", "olive": "green", "jade": "green",
    "golden": "yellow", "gold": "yellow", "lemon": "yellow", "mustard": "yellow",
    "violet": "purple", "lavender": "purple", "magenta": "purple", "plum": "purple",
    "teal": "cyan", "turquoise": "cyan", "aqua": "cyan",
    "tangerine": "orange", "amber": "orange", "apricot": "orange",
    "ivory": "white", "cream": "white",
    "charcoal": "black", "ebony": "black", "jet": "black",
    "chocolate": "brown", "tan": "brown", "coffee": "brown",
    "silver": "gray", "slate": "gray",
    "rose": "pink", "salmon": "pink", "coral": "pink",
}  # fmt: skip

SHAPE_PARAPHRASES = [
    (r"shape with (?:three|3) (?:corners|sides)|three-sided shape|pyramid", "triangle"),
    (r"shape with (?:four|4) (?:equal sides|corners|sides)|\bbox\b|\bblock\b|\bcube\b", "square"),
    (r"shape with no corners|round shape|\bball\b|\bdisc\b|\bdot\b|\bring\b", "circle"),
]

BASIC_RELATIONS = [
    (r"\bon the left\b", "leftmost"),
    (r"\bon the right\b", "rightmost"),
    (r"\bat the top\b", "topmost"),
    (r"\bat the bottom\b", "bottommost"),
]
FULL_RELATIONS = [
    (r"\b(?:largest|biggest)\b", "largest"),
    (r"\b(?:smallest|tiniest)\b", "smallest"),
    (r"\b(?:leftmost|far left|closest to the left)\b", "leftmost"),
    (r"\b(?:rightmost|far right|closest to the right)\b", "rightmost"),
    (r"\b(?:highest|topmost|closest to the top)\b", "topmost"),
    (r"\b(?:lowest|bottommost|closest to the bottom)\b", "bottommost"),
]

STYLE_BASIC = {
    "monochrome": "monochrome", "grayscale": "monochrome", "sepia": "sepia",
    "pop art": "pop-art", "pencil sketch": "sketch", "sketch": "sketch",
    "pixel art": "pixel-art", "negative": "negative", "soft focus": "soft-focus",
}  # fmt: skip
STYLE_FULL = {
    "vintage": "sepia", "old photo": "sepia", "look old": "sepia", "antique": "sepia",
    "comic": "pop-art", "cartoon": "pop-art", "poster": "pop-art",
    "drawing": "sketch", "line art": "sketch",
    "8-bit": "pixel-art", "retro game": "pixel-art", "pixelated": "pixel-art",
    "x-ray": "negative", "inverted": "negative", "invert": "negative",
    "dreamy": "soft-focus", "out of focus": "soft-focus", "watercolor": "soft-focus", "blurry": "soft-focus",
}  # fmt: skip
STYLE_TEXT = {
    "monochrome": "black and white", "sepia": "sepia", "pop-art": "pop art", "sketch": "pencil sketch",
    "pixel-art": "pixel art", "negative": "negative", "soft-focus": "soft focus",
}  # fmt: skip

ADJUST_BASIC = [
    (r"\bbrighter\b|\bbrighten\b|\blighter\b", "brighter"),
    (r"\bdarker\b|\bdarken\b", "darker"),
    (r"\bcontrast\b", "contrast"),
    (r"\bsaturation\b|\bsaturate\b", "saturation"),
]
ADJUST_FULL = [
    (r"\bmake it pop\b|\bvibrant\b|\bcolou?rful\b|\bpunchy\b|\bvivid\b", "saturation"),
    (r"\bmoody\b|\bdim\b|\bgloomy\b", "darker"),
    (r"\bsunnier\b|\bcheerful\b|\bairy\b", "brighter"),
    (r"\bcrisp\b|\bdramatic\b", "contrast"),
]
ADJUST_TEXT = {
    "brighter": "Make the image brighter",
    "darker": "Make the image darker",
    "contrast": "Increase the contrast",
    "saturation": "Increase the color saturation",
}

BACKGROUND_FULL = {
    "beach": "sand", "desert": "sand", "dusk": "sunset", "evening": "sunset",
    "nighttime": "night", "midnight": "night", "starry": "night", "lawn": "grass", "meadow": "grass",
    "field": "grass", "winter": "snow", "blue sky": "sky", "clear sky": "sky", "neutral": "studio",
}  # fmt: skip
BACKGROUND_TEXT = {"sky": "a blue sky", "sunset": "a sunset", "night": "a night sky", "grass": "grass",
                   "snow": "snow", "sand": "sand", "studio": "a gray studio backdrop"}  # fmt: skip

KEEP_REST = "Keep everything else unchanged."
NO_ARTIFACTS = "Avoid noise and artifacts."
WHERE_FULL = {"upper left": "top left", "upper right": "top right", "lower left": "bottom left",
              "lower right": "bottom right", "middle": "center", "centre": "center"}  # fmt: skip


@dataclass(frozen=True)
class Ref:
    color: str | None = None
    shape: str | None = None
    relation: str | None = None
    understood: bool = True  # False: the reader saw a reference it could not resolve


@dataclass(frozen=True)
class Clause:
    op: str  # recolor remove add move background style adjust flip
    ref: Ref | None = None
    color: str | None = None
    shape: str | None = None
    where: str | None = None
    direction: str | None = None
    value: str | None = None
    sentence: int = 0  # clauses in separate sentences are followed more reliably

    def require(self, name: str, override: str | None = None) -> str:
        """`override`, else the field `name` that this clause's op cannot do without (a
        recolour's colour, a move's direction). resolve() drops clauses that lack it, so a
        None here is a reader bug: named here rather than a KeyError deep in the pixels."""
        value = override or getattr(self, name)
        if not isinstance(value, str):
            raise ValueError(f"a {self.op!r} clause without its {name}: {self}")
        return value


@dataclass(frozen=True)
class Parsed:
    clauses: tuple[Clause, ...]
    unknown: tuple[str, ...]  # clause texts the reader could not parse
    keep_rest: bool
    no_artifacts: bool


@dataclass(frozen=True)
class Resolved:
    clause: Clause
    targets: tuple[int, ...]  # indices into scene.objects


def _normalize(text: str) -> str:
    t = text.lower().replace("colour", "color").replace("grey", "gray").replace("centre", "center")
    t = re.sub(r"black[- ]and[- ]white", "monochrome", t)
    return re.sub(r"\s+", " ", t).strip()


def _split(text: str) -> list[tuple[str, int]]:
    parts: list[tuple[str, int]] = []
    for s_idx, sentence in enumerate(re.split(r"[.;!?]\s*", text)):
        for piece in re.split(
            r",\s*(?:and\s+)?(?:then\s+)?|\s+and\s+(?:then\s+)?|\s+then\s+|\s+also\s+", sentence
        ):
            piece = piece.strip(" ,")
            if piece:
                parts.append((piece, s_idx))
    return parts


def _find_first(patterns, text: str) -> str | None:
    for pattern, value in patterns:
        if re.search(pattern, text):
            return value
    return None


class Reader:
    """Parses instructions with the basic (editor) or full (expert, scorer) vocabulary."""

    def __init__(self, full: bool):
        self.full = full
        self.colors = dict({c: c for c in COLORS}, **(COLOR_SYNONYMS if full else {}))
        self.styles = dict(STYLE_BASIC, **(STYLE_FULL if full else {}))
        self.adjust = ADJUST_BASIC + (ADJUST_FULL if full else [])
        self.relations = BASIC_RELATIONS + (FULL_RELATIONS if full else [])
        self.backgrounds = dict({b: b for b in BACKGROUNDS}, **(BACKGROUND_FULL if full else {}))
        self.where = dict({w: w for w in WHERE}, **(WHERE_FULL if full else {}))

    def _colors_in(self, text: str) -> list[str]:
        found = []
        for m in re.finditer(r"[a-z]+", text):
            if m.group(0) in self.colors:
                found.append((m.start(), self.colors[m.group(0)]))
        return [c for _, c in sorted(found)]

    def _shape_in(self, text: str) -> str | None:
        m = re.search(r"\b(circle|square|triangle)s?\b", text)
        if m:
            return m.group(1)
        if self.full:
            return _find_first(SHAPE_PARAPHRASES, text)
        return None

    def _ref(self, text: str, exclude_last_color: bool) -> Ref:
        colors = self._colors_in(text)
        if exclude_last_color and colors:
            colors = colors[:-1]
        relation = _find_first(self.relations, text)
        shape = self._shape_in(text)
        # Words a reader does not know leave the reference unresolved ("largest", "three corners").
        understood = True
        if not self.full:
            vague = re.search(
                r"largest|biggest|smallest|tiniest|corners|sides|closest|far |highest|lowest|round shape",
                text,
            )
            understood = vague is None
        return Ref(colors[0] if colors else None, shape, relation, understood)

    def _keyed(self, table: dict[str, str], text: str) -> str | None:
        for key in sorted(table, key=len, reverse=True):
            if re.search(rf"\b{re.escape(key)}\b", text):
                return table[key]
        return None

    def parse_clause(self, text: str, sentence: int) -> Clause | None:
        if (
            "background" in text
            or "backdrop" in text
            or (self.full and re.search(r"\bat night\b|\bnighttime\b", text))
        ):
            value = self._keyed(self.backgrounds, text) or (
                "night" if "night" in text and self.full else None
            )
            if value is None:
                colors = self._colors_in(text)
                value = colors[-1] if colors else None
            return Clause("background", value=value, sentence=sentence)
        style = self._keyed(self.styles, text)
        if style:
            return Clause("style", value=style, sentence=sentence)
        if re.search(r"\b(?:remove|delete|erase|get rid of|take out|take away)\b", text):
            return Clause("remove", ref=self._ref(text, False), sentence=sentence)
        if re.search(r"\b(?:add|insert|place|put|draw)\b", text):
            colors = self._colors_in(text)
            where = self._keyed(self.where, text)
            return Clause(
                "add",
                color=colors[-1] if colors else None,
                shape=self._shape_in(text),
                where=where,
                sentence=sentence,
            )
        move = re.search(r"\b(?:move|shift|slide|push)\b", text)
        if move:
            dm = re.search(r"\b(left|right|up|down|higher|lower)\b(?!.*\b(left|right|up|down)\b)", text)
            direction = {"higher": "up", "lower": "down"}.get(dm.group(1), dm.group(1)) if dm else None
            if direction in ("higher", "lower") and not self.full:
                direction = None
            ref_text = text[: dm.start()] if dm else text
            ref_text = re.sub(r"\b(?:to|toward|towards)\s+the\s*$", "", ref_text)
            return Clause("move", ref=self._ref(ref_text, False), direction=direction, sentence=sentence)
        if re.search(r"\b(?:flip|mirror)\b", text):
            return Clause("flip", sentence=sentence)
        adjust = _find_first(self.adjust, text)
        if adjust:
            return Clause("adjust", value=adjust, sentence=sentence)
        if re.search(r"\b(?:make|turn|change|paint|color|recolor|dye)\b", text):
            colors = self._colors_in(text)
            ref = self._ref(text, exclude_last_color=True)
            if (
                ref.shape
                or ref.color
                or ref.relation
                or (colors and re.search(r"\b(?:shape|object|it)\b", text))
            ):
                return Clause("recolor", ref=ref, color=colors[-1] if colors else None, sentence=sentence)
        return None

    def parse(self, instruction: str) -> Parsed:
        text = _normalize(instruction)
        keep_rest = bool(
            re.search(r"keep everything else|everything else unchanged|only the|nothing else", text)
        )
        no_art = bool(re.search(r"avoid noise|no artifacts|without artifacts|clean", text))
        text = re.sub(r"keep everything else unchanged|avoid noise and artifacts", "", text)
        clauses: list[Clause] = []
        unknown: list[str] = []
        for piece, sentence in _split(text):
            clause = self.parse_clause(piece, sentence)
            if clause is None:
                unknown.append(piece)
            elif all(
                (c.op, c.ref, c.color, c.shape, c.value)
                != (clause.op, clause.ref, clause.color, clause.shape, clause.value)
                for c in clauses
            ):
                clauses.append(clause)  # "darker and more moody" asks for one darkening, not two
        return Parsed(tuple(clauses), tuple(unknown), keep_rest, no_art)


BASIC = Reader(full=False)
FULL = Reader(full=True)


def select_targets(scene: Scene, ref: Ref | None) -> list[int]:
    if ref is None:
        return []
    idx = [
        i
        for i, o in enumerate(scene.objects)
        if (ref.color in (None, o.color)) and (ref.shape in (None, o.shape))
    ]
    if not idx or ref.relation is None:
        return idx
    key = {
        "largest": lambda i: -scene.objects[i].area,
        "smallest": lambda i: scene.objects[i].area,
        "leftmost": lambda i: scene.objects[i].cx,
        "rightmost": lambda i: -scene.objects[i].cx,
        "topmost": lambda i: scene.objects[i].cy,
        "bottommost": lambda i: -scene.objects[i].cy,
    }[ref.relation]
    return [min(idx, key=key)]


def resolve(parsed: Parsed, scene: Scene) -> list[Resolved]:
    """The intent against this scene. Clauses that name nothing that exists are dropped."""
    out = []
    for clause in parsed.clauses:
        if clause.op in ("recolor", "remove", "move"):
            targets = select_targets(scene, clause.ref)
            if not targets or (clause.op == "recolor" and clause.color is None):
                continue
            if clause.op == "move" and clause.direction is None:
                continue
            out.append(Resolved(clause, tuple(targets)))
        elif clause.op == "add" and (clause.color is None or clause.shape is None):
            continue
        elif clause.op in ("background", "style", "adjust") and clause.value is None:
            continue
        else:
            out.append(Resolved(clause, ()))
    return out


def describe(scene: Scene, index: int) -> str:
    """An explicit name for one object in basic words, with a position if its name repeats."""
    obj: SceneObject = scene.objects[index]
    same = [i for i, o in enumerate(scene.objects) if o.color == obj.color and o.shape == obj.shape]
    name = f"the {obj.color} {obj.shape}"
    if len(same) > 1:
        xs = [scene.objects[i].cx for i in same]
        if obj.cx == min(xs):
            name += " on the left"
        elif obj.cx == max(xs):
            name += " on the right"
    return name


def canonical_sentences(resolved: Resolved, scene: Scene) -> list[str]:
    c = resolved.clause
    if c.op in ("recolor", "remove", "move"):
        out = []
        for i in resolved.targets:
            name = describe(scene, i)
            if c.op == "recolor":
                out.append(f"Make {name} {c.color}.")
            elif c.op == "remove":
                out.append(f"Remove {name}.")
            else:
                out.append(
                    f"Move {name} {'to the ' + c.direction if c.direction in ('left', 'right') else c.direction}."
                )
        return out
    if c.op == "add":
        where = f" in the {c.where}" if c.where else ""
        return [f"Add a {c.color} {c.shape}{where}."]
    if c.op == "background":
        value = c.require("value")
        return [f"Change the background to {BACKGROUND_TEXT.get(value, value)}."]
    if c.op == "style":
        return [f"Apply a {STYLE_TEXT[c.require('value')]} style to the whole image."]
    if c.op == "adjust":
        return [ADJUST_TEXT[c.require("value")] + "."]
    return ["Flip the image horizontally."]


def canonical_instruction(
    resolved: list[Resolved], scene: Scene, first: list[int], keep_rest: bool, no_artifacts: bool
) -> str:
    """Explicit sentences in basic words; the clauses listed in `first` lead."""
    order = list(first) + [i for i in range(len(resolved)) if i not in first]
    sentences = [s for i in order for s in canonical_sentences(resolved[i], scene)]
    if keep_rest:
        sentences.append(KEEP_REST)
    if no_artifacts:
        sentences.append(NO_ARTIFACTS)
    return " ".join(sentences)
