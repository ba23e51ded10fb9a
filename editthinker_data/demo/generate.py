"""The demo source set: small scenes of coloured shapes and instructions over every task
type, easy and hard, plus a few bad records that show the error accounting.

The set is committed under `editthinker_data/demo/source/`; `write_demo_source(dir)`
regenerates it byte for byte (a test checks that).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from editthinker_data.backends.procedural.scene import COLORS, background_array, render_scene
from editthinker_data.core.schema import encode_png

SIZE = 128
S, M, L = 0.09, 0.12, 0.16  # radii as fractions of the image size

# id, background, objects (shape, colour, radius), instruction, task type or None (classify)
PAIRS: list[tuple[str, str, list[tuple[str, str, float]], str, str | None]] = [
    ("subj-recolor", "sky", [("circle", "red", M), ("square", "green", M)], "Make the red circle blue.", "subject-driven"),
    ("subj-remove", "grass", [("triangle", "yellow", M), ("circle", "blue", M)], "Remove the blue circle.", None),
    ("subj-add", "sand", [("square", "purple", L)], "Add a red circle in the top right.", "subject-driven"),
    ("subj-move", "studio", [("circle", "orange", M)], "Move the orange circle to the right.", None),
    ("subj-synonyms", "sky", [("square", "red", M), ("circle", "yellow", S)], "Turn the crimson square navy.", "subject-driven"),
    ("subj-compound", "snow", [("triangle", "blue", M), ("circle", "green", M), ("square", "pink", S)],
     "Remove the green circle and make the pink square yellow.", None),
    ("subj-add-move", "sunset", [("circle", "white", M)], "Add a black triangle in the bottom left and move the white circle up.", None),
    ("subj-multi", "grass", [("circle", "red", S), ("circle", "red", M)], "Make the circles purple.", "subject-driven"),
    ("subj-three-step", "sand", [("square", "cyan", M), ("circle", "black", S)],
     "Paint the cyan square orange, then remove the black circle, and add a green triangle in the top left.", None),
    ("subj-golden", "sky", [("square", "brown", L)], "Put a golden circle in the lower right.", None),
    ("style-mono", "grass", [("circle", "red", M), ("square", "blue", M)], "Make it black and white.", "style"),
    ("style-sepia", "sky", [("triangle", "orange", L)], "Apply a sepia style to the whole image.", None),
    ("style-old-photo", "sunset", [("square", "white", M), ("circle", "cyan", S)], "Make this look like an old photo.", "style"),
    ("style-pop", "sand", [("circle", "blue", L)], "Turn it into pop art.", None),
    ("style-comic", "studio", [("triangle", "yellow", M), ("circle", "red", M)], "Make it look like a comic.", "style"),
    ("style-sketch", "snow", [("square", "black", M), ("circle", "red", S)], "Render it as a pencil sketch.", None),
    ("style-pixel", "grass", [("circle", "yellow", L)], "Make it look like 8-bit pixel art.", None),
    ("style-dreamy", "sky", [("square", "purple", M), ("triangle", "red", M)], "Make it dreamy.", "style"),
    ("bg-sunset", "sky", [("circle", "red", M)], "Change the background to a sunset.", None),
    ("bg-snow", "grass", [("square", "blue", M), ("circle", "yellow", S)], "Replace the background with snow.", None),
    ("bg-green", "studio", [("triangle", "red", L)], "Make the background green.", "background"),
    ("bg-beach", "sky", [("circle", "purple", M), ("square", "black", S)], "Change the backdrop to a beach.", None),
    ("bg-night-recolor", "sky", [("circle", "red", M)], "Change the background to nighttime and make the red circle yellow.", "background"),
    ("bg-meadow", "snow", [("square", "red", M)], "Swap the background for a meadow.", "background"),
    ("bg-clear-sky", "sunset", [("triangle", "white", M), ("circle", "black", S)], "Make the background a clear sky.", None),
    ("reason-largest", "studio", [("circle", "red", L), ("square", "blue", S), ("triangle", "green", M)], "Make the largest shape yellow.", None),
    ("reason-corners", "sky", [("triangle", "red", M), ("circle", "green", M)], "Remove the shape with three corners.", None),
    ("reason-smallest", "sand", [("square", "blue", L), ("circle", "purple", S)], "Paint the smallest object pink.", "reasoning"),
    ("reason-top", "snow", [("circle", "red", M), ("square", "green", M)], "Move the shape closest to the top down.", None),
    ("reason-round", "grass", [("circle", "purple", M), ("triangle", "orange", M)], "Turn the round shape white.", "reasoning"),
    ("reason-night", "sky", [("square", "yellow", M)], "It is nighttime now: change the background accordingly.", None),
    ("reason-biggest-add", "sand", [("circle", "red", L), ("triangle", "blue", S)],
     "Remove the biggest object and add a blue square in the center.", "reasoning"),
    ("reason-leftmost", "studio", [("square", "blue", M), ("circle", "cyan", M), ("triangle", "yellow", S)], "Recolor the leftmost shape red.", None),
    ("other-brighter", "night", [("circle", "yellow", M)], "Make the image brighter.", None),
    ("other-pop", "grass", [("square", "red", M), ("circle", "blue", M)], "Make it pop.", "other"),
    ("other-contrast", "studio", [("circle", "blue", M)], "Increase the contrast.", None),
    ("other-flip", "sky", [("triangle", "red", M), ("square", "yellow", S)], "Flip the image horizontally.", None),
    ("other-moody", "sand", [("circle", "purple", M)], "Make it darker and more moody.", "other"),
    ("other-vibrant", "snow", [("square", "orange", M), ("circle", "blue", S)], "Make the colors more vibrant.", None),
    ("other-cheerful", "sunset", [("circle", "white", M)], "Make it a little more cheerful.", "other"),
]  # fmt: skip

# Records that must be rejected with a reason and counted (written after the good ones).
BAD_LINES = [
    '{"id": "dup-of-subj-recolor", "image": "images/subj-recolor.png", "instruction": "Make the red circle blue."}',
    '{"id": "missing-image", "image": "images/does-not-exist.png", "instruction": "Make the square red."}',
    '{"id": "empty-instruction", "image": "images/subj-add.png", "instruction": "   "}',
    '{"id": "absurd-instruction", "image": "images/subj-add.png", "instruction": "!!!! ???? ####"}',
    '{"id": "truncated-line", "image": "images/subj-move.png", "instr',
]


def _place(objects, key: str) -> list[tuple[str, str, float, float, float]]:
    """Non-overlapping positions away from the border strips the analyser reads."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
    placed: list[tuple[str, str, float, float, float]] = []
    for shape, color, r in objects:
        for _ in range(500):
            cx, cy = rng.uniform(0.12 + r, 0.88 - r, 2)
            if all((cx - x) ** 2 + (cy - y) ** 2 > (r + rr + 0.04) ** 2 for _, _, x, y, rr in placed):
                placed.append((shape, color, float(cx), float(cy), r))
                break
        else:
            raise RuntimeError(f"demo pair {key}: cannot place {color} {shape}")
    return placed


def _check_contrast(key: str, background: str, objects) -> None:
    bg = background_array(background, (4, SIZE))[:, 0]
    for _, color, _ in objects:
        if np.linalg.norm(bg - np.array(COLORS[color]), axis=1).min() < 90:
            raise RuntimeError(f"demo pair {key}: {color} is too close to the {background} background")


def write_demo_source(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for key, background, objects, instruction, task_type in PAIRS:
        _check_contrast(key, background, objects)
        img = render_scene(background, _place(objects, key), SIZE)
        (out / "images" / f"{key}.png").write_bytes(encode_png(img))
        record = {"id": key, "image": f"images/{key}.png", "instruction": instruction}
        if task_type:
            record["task_type"] = task_type
        lines.append(json.dumps(record))
    manifest = out / "manifest.jsonl"
    manifest.write_text("\n".join(lines + BAD_LINES) + "\n")
    return manifest


if __name__ == "__main__":
    print(write_demo_source(Path(__file__).parent / "source"))
