"""Scenes of simple coloured shapes on a background: drawing them and reading them back
from pixels.

The procedural backends never see a scene description, only pixels: `analyze` segments an
image into a background model and objects (colour name, shape, box, mask), the way a
vision model would have to. That keeps the demo honest: a bad edit is visible to the
expert and scorer only through the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "orange": (245, 140, 30),
    "purple": (140, 60, 190),
    "pink": (240, 130, 190),
    "cyan": (40, 200, 210),
    "white": (248, 248, 248),
    "black": (22, 22, 22),
    "brown": (125, 78, 38),
    "gray": (128, 128, 128),
}
SHAPES = ("circle", "square", "triangle")

# Backgrounds are vertical gradients (top colour, bottom colour).
BACKGROUNDS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "sky": ((120, 180, 240), (200, 225, 250)),
    "sunset": ((250, 150, 70), (120, 60, 140)),
    "night": ((10, 15, 45), (35, 40, 85)),
    "grass": ((110, 190, 90), (50, 120, 40)),
    "snow": ((235, 240, 248), (205, 215, 230)),
    "sand": ((235, 210, 160), (200, 170, 110)),
    "studio": ((170, 170, 175), (110, 110, 115)),
}

WHERE = {
    "top left": (0.27, 0.27),
    "top right": (0.73, 0.27),
    "bottom left": (0.27, 0.73),
    "bottom right": (0.73, 0.73),
    "center": (0.5, 0.5),
}


def background_array(name_or_color: str, size: tuple[int, int]) -> np.ndarray:
    """H x W x 3 float array for a named background or a plain colour name."""
    w, h = size
    if name_or_color in BACKGROUNDS:
        top, bottom = (np.array(c, dtype=np.float32) for c in BACKGROUNDS[name_or_color])
    else:
        top = bottom = np.array(COLORS[name_or_color], dtype=np.float32)
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    return np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).copy()


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    if shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    return None


def draw_shape(img: Image.Image, shape: str, color: str, cx: float, cy: float, r: float) -> None:
    draw = ImageDraw.Draw(img)
    rgb = COLORS[color]
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
    else:
        points = shape_polygon(shape, cx, cy, r)
        if points is None:
            raise ValueError(f"unknown shape {shape!r}; shapes: {', '.join(SHAPES)}")
        draw.polygon(points, fill=rgb)


def render_scene(
    background: str, objects: list[tuple[str, str, float, float, float]], size: int = 128
) -> Image.Image:
    """objects: (shape, colour, cx, cy, radius) with centre and radius as fractions of size."""
    img = Image.fromarray(background_array(background, (size, size)).astype(np.uint8))
    for shape, color, cx, cy, r in objects:
        draw_shape(img, shape, color, cx * size, cy * size, r * size)
    return img


@dataclass
class SceneObject:
    color: str
    shape: str
    mask: np.ndarray
    area: int
    cx: float
    cy: float
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 inclusive


@dataclass
class Scene:
    pixels: np.ndarray  # H x W x 3 float32
    background: np.ndarray  # H x W x 3 float32 model of the background
    foreground: np.ndarray  # H x W bool
    objects: list[SceneObject]

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.pixels.shape[:2]
        return w, h

    def matching(self, color: str | None = None, shape: str | None = None) -> list[SceneObject]:
        return [
            o
            for o in self.objects
            if (color is None or o.color == color) and (shape is None or o.shape == shape)
        ]


def _classify_shape(mask: np.ndarray, bbox: tuple[int, int, int, int]) -> str:
    x0, y0, x1, y1 = bbox
    box = max((x1 - x0 + 1) * (y1 - y0 + 1), 1)
    fill = mask.sum() / box
    if fill > 0.9:
        return "square"
    if fill > 0.66:
        return "circle"
    return "triangle"


def to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def estimate_background(px: np.ndarray, border: int = 3) -> np.ndarray:
    """Per-row median of the left and right border strips: handles vertical gradients."""
    h, w = px.shape[:2]
    strips = np.concatenate([px[:, :border], px[:, w - border :]], axis=1)
    rows = np.median(strips, axis=1)  # H x 3
    return np.broadcast_to(rows[:, None, :], (h, w, 3)).astype(np.float32)


def analyze(image: Image.Image, min_area: int = 24, threshold: float = 60.0) -> Scene:
    px = to_array(image)
    bg = estimate_background(px)
    diff = np.linalg.norm(px - bg, axis=2)
    fg = ndimage.median_filter(diff > threshold, size=3)
    # Label per colour class, so that touching shapes of different colours stay apart.
    names = list(COLORS)
    table = np.array([COLORS[n] for n in names], dtype=np.float32)
    nearest = np.argmin(np.linalg.norm(px[:, :, None, :] - table[None, None], axis=3), axis=2)
    objects: list[SceneObject] = []
    for ci in np.unique(nearest[fg]):
        labels, n = ndimage.label(fg & (nearest == ci))
        for i in range(1, n + 1):
            mask = labels == i
            area = int(mask.sum())
            if area < min_area:
                continue
            ys, xs = np.nonzero(mask)
            bbox = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
            objects.append(
                SceneObject(
                    color=names[int(ci)],
                    shape=_classify_shape(mask, bbox),
                    mask=mask,
                    area=area,
                    cx=float(xs.mean()),
                    cy=float(ys.mean()),
                    bbox=bbox,
                )
            )
    objects.sort(key=lambda o: (o.cx, o.cy))
    return Scene(pixels=px, background=bg, foreground=fg, objects=objects)
