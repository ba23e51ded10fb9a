"""A CPU scorer in the VIEScore shape: semantic = min(instruction success, no over-editing),
quality = min(naturalness, no artifacts), each 0-10, measured from pixels against the
intended result of the *original* instruction."""

from __future__ import annotations

import time

from editthinker_data.backends import BackendError, ScoreRequest
from editthinker_data.backends.procedural.judge import judge
from editthinker_data.core.schema import Scores


class ProceduralScorer:
    def __init__(self, name: str = "procedural", seed: int = 0, latency_s: float = 0.0):
        if latency_s < 0:
            raise ValueError(f"latency_s={latency_s} must be 0 or more")
        self.name = name
        self.latency_s = latency_s  # stands in for a remote judge's answer time (benchmarks)

    def setup(self) -> None:
        pass

    def run_batch(self, requests: list[ScoreRequest]) -> list[Scores | BackendError]:
        if self.latency_s:
            time.sleep(self.latency_s)  # one round trip per batch, as a batched API call would be
        out: list[Scores | BackendError] = []
        for req in requests:
            j = judge(req.source, req.edited, req.instruction)
            semantic, quality, details = j.scores()
            out.append(Scores(round(semantic, 2), round(quality, 2), details))
        return out
