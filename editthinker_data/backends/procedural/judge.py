"""Measures an edit against the intent of an instruction, from pixels only.

Shared by the procedural scorer (which turns the measurements into VIEScore-style scores)
and the procedural expert (which turns them into a critique and a rewrite). The intent is
read with the full vocabulary and rendered exactly (`render_intent`); each clause is then
checked in the region it should change, and everything outside those regions must stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from editthinker_data.backends.procedural.intent import FULL, Parsed, Resolved, describe, resolve
from editthinker_data.backends.procedural.ops import (
    MOVE_DISTANCE,
    grow,
    move_offset,
    render_intent,
)
from editthinker_data.backends.procedural.scene import WHERE, Scene, analyze, to_array

CHANGED = 45.0  # max-channel difference that counts as a visible change
SUCCESS_OK = 0.75
OVER_EDIT_OK = 0.04
ARTIFACTS_OK = 3.0
COLOUR_CAST_OK = 12.0


@dataclass
class Judgement:
    parsed: Parsed
    resolved: list[Resolved]
    source_scene: Scene
    clause_success: list[float]
    over_edit: float  # share of pixels that should not change but did
    noise: float  # residual noise above the intended result
    colour_shift: float  # mean colour distance from the intended result
    notes: list[str] = field(default_factory=list)

    @property
    def success(self) -> float:
        return float(np.mean(self.clause_success)) if self.clause_success else 0.0

    @property
    def failed(self) -> list[int]:
        return [i for i, s in enumerate(self.clause_success) if s < SUCCESS_OK]

    @property
    def satisfied(self) -> bool:
        return (
            bool(self.resolved)
            and not self.failed
            and self.over_edit < OVER_EDIT_OK
            and self.noise < ARTIFACTS_OK
            and self.colour_shift < COLOUR_CAST_OK
        )

    def scores(self) -> tuple[float, float, dict[str, float]]:
        """(semantic, quality, sub-scores) on 0-10, VIEScore style."""
        success = 10.0 * self.success
        no_over = 10.0 * float(np.clip(1 - self.over_edit / 0.3, 0, 1))
        natural = 10.0 * float(np.clip(1 - self.colour_shift / 50.0, 0, 1))
        no_art = 10.0 * float(np.clip(1 - self.noise / 12.0, 0, 1))
        details = {
            "success": success,
            "no_over_editing": no_over,
            "naturalness": natural,
            "no_artifacts": no_art,
        }
        return min(success, no_over), min(natural, no_art), details


def _residual_noise(px: np.ndarray) -> float:
    gray = px.mean(axis=2)
    return float(np.abs(gray - ndimage.median_filter(gray, size=3)).mean())


def _colour_cast(edited: np.ndarray, source: np.ndarray, target: np.ndarray) -> float:
    """Distance of the edit's mean colour from the segment between source and intended
    result: a half-done edit is not unnatural, a colour cast that neither has is."""
    e, s, t = (a.reshape(-1, 3).mean(0) for a in (edited, source, target))
    d = t - s
    k = float(np.clip(np.dot(e - s, d) / max(float(np.dot(d, d)), 1e-6), 0, 1))
    return float(np.linalg.norm(e - (s + k * d)))


def _denoise(px: np.ndarray) -> np.ndarray:
    return ndimage.median_filter(px, size=(3, 3, 1))


def _fraction_done(edited: np.ndarray, source: np.ndarray, target: np.ndarray, region: np.ndarray) -> float:
    """How much of the intended change in `region` happened: 1 - |E-T| / |S-T|."""
    if not region.any():
        return 0.0
    want = np.abs(source[region] - target[region]).mean()
    if want < 1.0:
        return 1.0
    got = np.abs(edited[region] - target[region]).mean()
    return float(np.clip(1 - got / want, 0, 1))


def _check_add(r: Resolved, src: Scene, out: Scene) -> tuple[float, np.ndarray]:
    c = r.clause
    w, h = src.size
    new = [
        o
        for o in out.objects
        if not any(
            s.color == o.color and s.shape == o.shape and abs(s.cx - o.cx) + abs(s.cy - o.cy) < 8
            for s in src.objects
        )
    ]
    region = np.zeros(src.foreground.shape, bool)
    for o in new:
        region |= grow(o.mask, 2)
    best = 0.0
    for o in new:
        if o.color != c.color:
            continue
        score = 0.4
        if o.shape == c.shape:
            score = 0.6
            fx, fy = WHERE[c.where] if c.where else (o.cx / w, o.cy / h)
            if abs(o.cx / w - fx) < 0.2 and abs(o.cy / h - fy) < 0.2:
                score = 1.0
        best = max(best, score)
    return best, region


def _check_move(r: Resolved, src: Scene, out: Scene) -> tuple[float, np.ndarray]:
    dx, dy = move_offset(r.clause.require("direction"), src.size)
    dist = MOVE_DISTANCE * src.size[0]
    region = np.zeros(src.foreground.shape, bool)
    scores = []
    for i in r.targets:
        o = src.objects[i]
        region |= grow(o.mask, 2)
        same = [e for e in out.objects if e.color == o.color and e.shape == o.shape]
        if not same:
            scores.append(0.0)
            continue
        e = min(same, key=lambda e: abs(e.cx - (o.cx + dx)) + abs(e.cy - (o.cy + dy)))
        region |= grow(e.mask, 2)
        along = ((e.cx - o.cx) * np.sign(dx) + (e.cy - o.cy) * np.sign(dy)) / (0.6 * dist)
        scores.append(float(np.clip(along, 0, 1)))
    return float(np.mean(scores)) if scores else 0.0, region


# The judge looks at images of at most this many pixels on the long side, as a VLM's image
# processor bounds its input: at 1024^2 a full-size look took 1-7 s and 476 MB a call.
ANALYSIS_SIDE = 512


def _bounded(image: Image.Image) -> Image.Image:
    w, h = image.size
    if max(w, h) <= ANALYSIS_SIDE:
        return image
    k = ANALYSIS_SIDE / max(w, h)
    # Nearest: the scenes' flat colours stay exact, so objects segment as at full size.
    return image.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.NEAREST)


def judge(source: Image.Image, edited: Image.Image, instruction: str) -> Judgement:
    source, edited = _bounded(source), _bounded(edited)
    src = analyze(source)
    parsed = FULL.parse(instruction)
    resolved = resolve(parsed, src)
    if edited.size != source.size:
        edited = edited.resize(source.size, Image.Resampling.BICUBIC)
    e_raw = to_array(edited)
    e = _denoise(e_raw)
    target = render_intent(src.pixels, src, resolved)
    out_scene = analyze(edited)

    allowed = np.zeros(src.foreground.shape, bool)
    success: list[float] = []
    for r in resolved:
        op = r.clause.op
        if op in ("recolor", "remove"):
            region = np.zeros_like(allowed)
            for i in r.targets:
                region |= src.objects[i].mask
            core = ndimage.binary_erosion(region)
            success.append(_fraction_done(e, src.pixels, target, core if core.any() else region))
            allowed |= grow(region, 2)
        elif op == "add":
            s, region = _check_add(r, src, out_scene)
            success.append(s)
            allowed |= region
        elif op == "move":
            s, region = _check_move(r, src, out_scene)
            success.append(s)
            allowed |= region
        elif op == "background":
            region = ~grow(src.foreground, 2)
            success.append(_fraction_done(e, src.pixels, target, region))
            allowed |= ~src.foreground
        else:  # global edits: the whole image is theirs
            success.append(_fraction_done(e, src.pixels, target, np.ones_like(allowed)))
            allowed[:] = True

    changed = np.abs(e - src.pixels).max(axis=2) > CHANGED
    keep = ~allowed
    over = float(changed[keep].mean()) if keep.any() else 0.0
    noise = max(0.0, _residual_noise(e_raw) - _residual_noise(target))
    colour_shift = _colour_cast(e, src.pixels, target)

    j = Judgement(parsed, resolved, src, success, over, noise, colour_shift)
    j.notes = _notes(j, out_scene)
    return j


def _notes(j: Judgement, out: Scene) -> list[str]:
    notes = []
    for r, s in zip(j.resolved, j.clause_success, strict=True):
        c = r.clause
        names = " and ".join(describe(j.source_scene, i) for i in r.targets)
        pct = f"{100 * s:.0f}%"
        if s >= SUCCESS_OK:
            what = {
                "recolor": f"{names} is now {c.color}",
                "remove": f"{names} is gone",
                "add": f"a {c.color} {c.shape} was added",
                "move": f"{names} moved {c.direction}",
                "background": f"the background shows {c.value}",
                "style": f"the {c.value} style is applied",
                "adjust": f"the image is adjusted ({c.value})",
                "flip": "the image is flipped",
            }[c.op]
            notes.append(f"done: {what}")
        else:
            what = {
                "recolor": f"{names} should be {c.color} but only {pct} of it is",
                "remove": f"{names} should be removed but {100 - 100 * s:.0f}% of it remains",
                "add": f"no {c.color} {c.shape} appears {('in the ' + c.where) if c.where else ''}".rstrip(),
                "move": f"{names} did not move {c.direction} far enough ({pct} of the way)",
                "background": f"the background should show {c.value} ({pct} there)",
                "style": f"the {c.value} style is missing or too weak ({pct})",
                "adjust": f"the {c.value} adjustment is missing ({pct})",
                "flip": f"the image is not flipped ({pct})",
            }[c.op]
            notes.append(f"missing: {what}")
    if j.over_edit >= OVER_EDIT_OK:
        notes.append(f"over-edited: {100 * j.over_edit:.0f}% of the area that should stay the same changed")
    if j.colour_shift >= COLOUR_CAST_OK:
        notes.append(f"colour cast: the whole image took on a tint ({j.colour_shift:.0f} levels)")
    if j.noise >= ARTIFACTS_OK:
        notes.append(f"artifacts: the result is noisy (residual {j.noise:.1f})")
    return notes
