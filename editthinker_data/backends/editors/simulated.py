"""An editor that costs a GPU's time and nothing else: each batch sleeps `edit_seconds` per
edit, as a device running a diffusion model would be busy, and returns the source with a
faint deterministic tint. It lets a build of the paper's shape (three pools of 5, 27 and 8
devices at 20, 110 and 35 s an edit, scaled down) run on a laptop, so what is measured is
the orchestration around the devices (`bench/paper_scale.py`), not pixel work.

The tint is drawn from (editor, seed, request seed, instruction, source), so a rerun makes
byte-identical edits and resumed builds stay exact; it is a per-channel lookup table, the
cheapest change PIL makes, so an edit is never mistaken for its unchanged source.
"""

from __future__ import annotations

import hashlib
import time

from PIL import Image

from editthinker_data.backends import BackendError, EditRequest


class SimulatedEditor:
    def __init__(
        self,
        name: str = "simulated",
        seed: int = 0,
        edit_seconds: float = 1.0,
        batch_seconds: float = 0.0,
    ):
        if edit_seconds < 0:
            raise ValueError(f"edit_seconds={edit_seconds} must be 0 or more")
        if batch_seconds < 0:
            raise ValueError(f"batch_seconds={batch_seconds} must be 0 or more")
        self.name = name
        self.seed = seed
        self.edit_seconds = edit_seconds  # a device's time per edit (the planner's figure)
        self.batch_seconds = batch_seconds  # fixed time per batch on top (a call's overhead)

    def setup(self) -> None:
        pass

    def batch_time(self, n: int) -> float:
        return self.batch_seconds + self.edit_seconds * n if n else 0.0

    def run_batch(self, requests: list[EditRequest]) -> list[Image.Image | BackendError]:
        time.sleep(self.batch_time(len(requests)))
        return [self.edit(req) for req in requests]

    def edit(self, req: EditRequest) -> Image.Image:
        image = req.image.convert("RGB")
        source = req.source_sha256 or hashlib.sha256(image.tobytes()).hexdigest()
        key = f"{self.name}|{self.seed}|{req.seed}|{req.instruction}|{source}".encode()
        shift = hashlib.sha256(key).digest()[:3]
        # each channel moves by 1-4 levels, clipped at white: visibly an edit, still the source
        tables = [[min(255, v + 1 + b % 4) for v in range(256)] for b in shift]
        return image.point([v for table in tables for v in table])
