"""A CPU editor made of real pixel operations that fails the way single-pass editors do.

It reads instructions with the basic vocabulary only, so it misreads colour synonyms,
relations ("the largest shape") and idioms; it follows the first clause of a compound
instruction and drops later ones with a probability (less often when they stand in their
own sentences); it sometimes edits more than asked (a tint over the whole image) or leaves
noise, less often when told to keep everything else and avoid artifacts. Every choice is
drawn from a generator seeded by (editor, seed, instruction, image), so outputs are
deterministic for a seed.
"""

from __future__ import annotations

import hashlib
import os
import random
import time

import numpy as np
from PIL import Image

from editthinker_data.backends import BackendError, BackendFatal, EditRequest
from editthinker_data.backends.procedural.intent import BASIC, Clause, Resolved, select_targets
from editthinker_data.backends.procedural.ops import Overrides, adjust, apply_clause, to_image
from editthinker_data.backends.procedural.scene import BACKGROUNDS, COLORS, SHAPES, WHERE, analyze
from editthinker_data.core.schema import encode_png


class ProceduralEditor:
    def __init__(
        self,
        name: str = "procedural",
        seed: int = 0,
        skill: float = 0.6,
        fail_rate: float = 0.0,
        crash_rate: float = 0.0,
        latency_s: float = 0.0,
    ):
        if not 0.0 <= skill <= 1.0:
            raise ValueError(f"skill={skill} must lie in 0-1")
        if not 0.0 <= fail_rate < 1.0:
            raise ValueError(f"fail_rate={fail_rate} must lie in 0-1")
        if not 0.0 <= crash_rate <= 1.0:
            raise ValueError(f"crash_rate={crash_rate} must lie in 0-1")
        if latency_s < 0:
            raise ValueError(f"latency_s={latency_s} must be 0 or more")
        self.latency_s = latency_s  # a GPU's fixed time per batch (scheduler benchmarks)
        self.crash_rate = crash_rate
        self.name = name
        self.skill = skill
        self.fail_rate = fail_rate

    def setup(self) -> None:
        pass

    def run_batch(self, requests: list[EditRequest]) -> list[Image.Image | BackendError]:
        # Injected process death (like a CUDA error): drawn per process, so a retry on the
        # replacement actor may pass.
        if (
            self.crash_rate
            and random.Random(f"{os.getpid()}|{time.monotonic_ns()}").random() < self.crash_rate
        ):
            raise BackendFatal("editor process broke on this batch (injected fault)")
        if self.latency_s:
            time.sleep(self.latency_s)
        out: list[Image.Image | BackendError] = []
        for req in requests:
            try:
                out.append(self.edit(req.image, req.instruction, req.seed))
            except BackendError as err:
                out.append(err)
        return out

    def _rng(self, image: Image.Image, instruction: str, seed: int) -> np.random.Generator:
        h = hashlib.sha256(f"{self.name}|{seed}|{instruction}|".encode() + encode_png(image)).digest()
        return np.random.default_rng(int.from_bytes(h[:8], "little"))

    def edit(self, image: Image.Image, instruction: str, seed: int) -> Image.Image:
        rng = self._rng(image, instruction, seed)
        if rng.random() < self.fail_rate:
            raise BackendError("editor crashed on this request (injected fault)")
        scene = analyze(image)
        parsed = BASIC.parse(instruction)
        px = scene.pixels.copy()
        sloppy = 1.2 - self.skill
        if not parsed.clauses:  # nothing understood: do something plausible but arbitrary
            kind = ["contrast", "saturation", "brighter", "darker"][rng.integers(4)]
            return adjust(image.convert("RGB"), kind, float(rng.uniform(0.3, 0.8)))
        previous_sentence = None
        for i, clause in enumerate(parsed.clauses):
            if i == 0:
                follow = 0.97
            elif clause.sentence != previous_sentence:
                follow = 0.6 + 0.35 * self.skill
            else:
                follow = 0.2 + 0.35 * self.skill
            previous_sentence = clause.sentence
            if rng.random() >= follow:
                continue
            px = self._apply(px, scene, clause, rng)
            local = clause.op in ("recolor", "remove", "move", "add", "background")
            if local and rng.random() < (0.06 if parsed.keep_rest else 0.35) * sloppy:
                px = self._over_edit(px, clause, rng)
        if rng.random() < (0.05 if parsed.no_artifacts else 0.25) * sloppy:
            px = px + rng.normal(0, 16, px.shape).astype(np.float32)
        else:  # sensor-like grain whose strength varies from edit to edit, as output quality does
            px = px + rng.normal(0, rng.uniform(0, 9) * sloppy, px.shape).astype(np.float32)
        return to_image(px)

    def _apply(self, px: np.ndarray, scene, clause: Clause, rng: np.random.Generator) -> np.ndarray:
        targets: tuple[int, ...] = ()
        if clause.op in ("recolor", "remove", "move"):
            if not scene.objects:
                return px
            ref = clause.ref
            candidates = select_targets(scene, ref) if ref is not None and ref.understood else []
            if not candidates:
                candidates = list(range(len(scene.objects)))
                candidates = [candidates[rng.integers(len(candidates))]]
            elif len(candidates) > 1 and rng.random() < 0.5:
                candidates = [candidates[rng.integers(len(candidates))]]
            targets = tuple(candidates)
        color_names = list(COLORS)
        jitter = rng.normal(0, 10, 3).astype(np.float32)
        kwargs: Overrides = {"color_jitter": jitter}
        if clause.op in ("recolor", "add"):
            kwargs["color"] = clause.color or color_names[rng.integers(len(color_names))]
        if clause.op == "add":
            kwargs["shape"] = clause.shape or SHAPES[rng.integers(len(SHAPES))]
            fx, fy = (
                WHERE[clause.where] if clause.where else (rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75))
            )
            kwargs["where"] = (fx + rng.normal(0, 0.03), fy + rng.normal(0, 0.03))
        if clause.op == "move":
            kwargs["direction"] = clause.direction or ["left", "right", "up", "down"][rng.integers(4)]
            kwargs["move_scale"] = float(rng.uniform(0.7, 1.2))
        if clause.op == "background" and clause.value is None:
            names = list(BACKGROUNDS)
            kwargs["value"] = names[rng.integers(len(names))]
        return apply_clause(px, scene, Resolved(clause, targets), targets, **kwargs)

    def _over_edit(self, px: np.ndarray, clause: Clause, rng: np.random.Generator) -> np.ndarray:
        """Edit bleeding past its target: a tint over the whole frame."""
        name = clause.color or list(COLORS)[rng.integers(len(COLORS))]
        tint = np.array(COLORS[name], np.float32)
        return px * 0.7 + tint * 0.3
