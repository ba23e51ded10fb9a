"""Pixel operations behind every clause. The exact form (no rng) renders the intended
result for the scorer; the editor calls the same operations with jitter and mistakes."""

from __future__ import annotations

from typing import TypedDict

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps
from scipy import ndimage

from editthinker_data.backends.procedural.intent import Resolved
from editthinker_data.backends.procedural.scene import (
    COLORS,
    SHAPES,
    WHERE,
    Scene,
    background_array,
    draw_shape,
)

ADD_RADIUS = 0.12
MOVE_DISTANCE = 0.22


def to_image(px: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(px), 0, 255).astype(np.uint8))


def grow(mask: np.ndarray, pixels: int = 1) -> np.ndarray:
    return ndimage.binary_dilation(mask, iterations=pixels)


def global_style(img: Image.Image, style: str) -> Image.Image:
    if style == "monochrome":
        return ImageOps.grayscale(img).convert("RGB")
    if style == "sepia":
        return ImageOps.colorize(ImageOps.grayscale(img), black="#2e1f0f", white="#f5e6c8")
    if style == "pop-art":
        return ImageEnhance.Color(ImageOps.posterize(img, 2)).enhance(1.6)
    if style == "sketch":
        edges = ImageOps.grayscale(img).filter(ImageFilter.FIND_EDGES)
        return ImageOps.autocontrast(ImageOps.invert(edges)).convert("RGB")
    if style == "pixel-art":
        w, h = img.size
        return img.resize((max(w // 8, 1), max(h // 8, 1)), Image.Resampling.BOX).resize(
            (w, h), Image.Resampling.NEAREST
        )
    if style == "negative":
        return ImageOps.invert(img)
    if style == "soft-focus":
        return img.filter(ImageFilter.GaussianBlur(2.5))
    raise ValueError(f"unknown style {style!r}")


def adjust(img: Image.Image, kind: str, strength: float = 1.0) -> Image.Image:
    if kind == "brighter":
        return ImageEnhance.Brightness(img).enhance(1 + 0.35 * strength)
    if kind == "darker":
        return ImageEnhance.Brightness(img).enhance(1 - 0.35 * strength)
    if kind == "contrast":
        return ImageEnhance.Contrast(img).enhance(1 + 0.6 * strength)
    if kind == "saturation":
        return ImageEnhance.Color(img).enhance(1 + 0.8 * strength)
    raise ValueError(f"unknown adjustment {kind!r}")


def move_offset(direction: str, size: tuple[int, int], scale: float = 1.0) -> tuple[int, int]:
    w, h = size
    d = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[direction]
    return int(round(d[0] * MOVE_DISTANCE * w * scale)), int(round(d[1] * MOVE_DISTANCE * h * scale))


def shift_mask(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    out = np.zeros_like(mask)
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    ys2, xs2 = ys + dy, xs + dx
    ok = (ys2 >= 0) & (ys2 < h) & (xs2 >= 0) & (xs2 < w)
    out[ys2[ok], xs2[ok]] = True
    return out


class Overrides(TypedDict, total=False):
    """apply_clause's keyword overrides: the editor's own (mis)reading of a clause."""

    color: str
    shape: str
    where: tuple[float, float]
    move_scale: float
    color_jitter: np.ndarray
    value: str
    direction: str


def apply_clause(
    px: np.ndarray,
    scene: Scene,
    r: Resolved,
    targets: tuple[int, ...] | None = None,
    *,
    color: str | None = None,
    shape: str | None = None,
    where: tuple[float, float] | None = None,
    move_scale: float = 1.0,
    color_jitter: np.ndarray | None = None,
    value: str | None = None,
    direction: str | None = None,
) -> np.ndarray:
    """Apply one clause to `px` (H x W x 3 float) laid out as in `scene` (the source).
    Keyword overrides let the editor act on its own reading of the clause."""
    c = r.clause
    targets = r.targets if targets is None else targets
    jitter = np.zeros(3, np.float32) if color_jitter is None else color_jitter
    out = px.copy()
    size = scene.size
    if c.op == "recolor":
        for i in targets:
            out[scene.objects[i].mask] = np.array(COLORS[c.require("color", color)], np.float32) + jitter
    elif c.op == "remove":
        for i in targets:
            m = grow(scene.objects[i].mask, 1)
            out[m] = scene.background[m]
    elif c.op == "move":
        dx, dy = move_offset(c.require("direction", direction), size, move_scale)
        for i in targets:
            m = grow(scene.objects[i].mask, 1)
            pixels = px.copy()
            out[m] = scene.background[m]
            moved = shift_mask(scene.objects[i].mask, dx, dy)
            src = shift_mask(moved, -dx, -dy)
            out[moved] = pixels[src]
    elif c.op == "add":
        img = to_image(out)
        fx, fy = where if where is not None else WHERE[c.where or "center"]
        w, h = size
        draw_shape(
            img, shape or c.shape or SHAPES[0], c.require("color", color), fx * w, fy * h, ADD_RADIUS * w
        )
        out = np.asarray(img, np.float32).copy()
        if jitter.any():
            new = np.any(np.abs(out - px) > 1, axis=2)
            out[new] = np.clip(out[new] + jitter, 0, 255)
    elif c.op == "background":
        bg = background_array(c.require("value", value), size)
        keep = grow(scene.foreground, 1)
        out[~keep] = bg[~keep]
    elif c.op == "style":
        out = np.asarray(global_style(to_image(out), c.require("value", value)), np.float32).copy()
    elif c.op == "adjust":
        out = np.asarray(adjust(to_image(out), c.require("value", value)), np.float32).copy()
    elif c.op == "flip":
        out = out[:, ::-1].copy()
    else:
        raise ValueError(f"unknown clause op {c.op!r}")
    return out


def render_intent(px: np.ndarray, scene: Scene, resolved: list[Resolved]) -> np.ndarray:
    """The intended result: every clause applied exactly, in order."""
    out = px
    for r in resolved:
        out = apply_clause(out, scene, r)
    return out
