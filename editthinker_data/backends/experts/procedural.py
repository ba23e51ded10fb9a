"""A CPU expert that critiques an edit from pixels and rewrites the instruction.

It reads the original instruction with the full vocabulary (synonyms, relations, idioms),
checks every clause against the previous edit, and answers like the released code's
expert: `is_satisfied`, a reason, and a rewritten prompt. The rewrite names each target
explicitly in the editor's basic words, puts the unfinished clauses first, one sentence
each, and adds "keep everything else unchanged" / "avoid noise" when it saw over-editing
or artifacts (and keeps them once added). It does not score: scoring is a separate role.
"""

from __future__ import annotations

import hashlib
import time

from editthinker_data.backends import BackendError, RefineRequest
from editthinker_data.backends.procedural.intent import FULL, canonical_instruction
from editthinker_data.backends.procedural.judge import ARTIFACTS_OK, COLOUR_CAST_OK, OVER_EDIT_OK, judge
from editthinker_data.core.schema import Refinement, Scores, encode_png


class ProceduralExpert:
    """`false_alarm_rate`: how often it distrusts an edit that was in fact fine and asks for
    a redo (MLLM judges do this); such redos often come out worse, which is exactly what
    the trajectory filter must catch."""

    def __init__(
        self, name: str = "procedural", seed: int = 0, false_alarm_rate: float = 0.3, latency_s: float = 0.0
    ):
        if not 0.0 <= false_alarm_rate <= 1.0:
            raise ValueError(f"false_alarm_rate={false_alarm_rate} must lie in 0-1")
        if latency_s < 0:
            raise ValueError(f"latency_s={latency_s} must be 0 or more")
        self.latency_s = latency_s  # stands in for a remote MLLM's answer time (benchmarks)
        self.name = name
        self.seed = seed
        self.false_alarm_rate = false_alarm_rate

    def setup(self) -> None:
        pass

    def run_batch(self, requests: list[RefineRequest]) -> list[Refinement | BackendError]:
        if self.latency_s:
            time.sleep(self.latency_s)  # one round trip per batch, as a batched API call would be
        return [self.refine(r) for r in requests]

    def refine(self, req: RefineRequest) -> Refinement:
        j = judge(req.source, req.edited, req.original_instruction)
        if not j.resolved:
            return Refinement(
                reasoning="I cannot match the instruction to anything in the source image, so there is nothing "
                "I can make clearer; stopping.",
                instruction=req.previous_instruction,
                stop=True,
            )
        observed = "; ".join(j.notes)
        first_critique = req.previous_instruction == req.original_instruction
        if j.satisfied and first_critique and self._doubt(req) < self.false_alarm_rate:
            rewritten = canonical_instruction(j.resolved, j.source_scene, [], True, True)
            if rewritten != req.previous_instruction:
                return Refinement(
                    reasoning=f"I compared the edit with the source. {observed[0].upper()}{observed[1:]}. "
                    "Still, the edges of the edited region look unsure to me, so I restate the instruction "
                    "precisely and ask to keep everything else unchanged and avoid noise.",
                    instruction=rewritten,
                    stop=False,
                )
        if j.satisfied:
            return Refinement(
                reasoning=f"I compared the edit with the source. {observed[0].upper()}{observed[1:]}. "
                "The edit follows the instruction and nothing else changed, so no refinement is needed.",
                instruction=req.previous_instruction,
                stop=True,
            )
        previous = FULL.parse(req.previous_instruction)
        keep_rest = previous.keep_rest or j.over_edit >= OVER_EDIT_OK or j.colour_shift >= COLOUR_CAST_OK
        no_artifacts = previous.no_artifacts or j.noise >= ARTIFACTS_OK
        rewritten = canonical_instruction(j.resolved, j.source_scene, j.failed, keep_rest, no_artifacts)
        plan = ["I rewrite the instruction in plain words, naming each object by colour and shape"]
        if j.failed:
            plan.append("with the unfinished steps first, one sentence each")
        if keep_rest:
            plan.append("and ask to keep everything else unchanged")
        if no_artifacts:
            plan.append("and to avoid noise")
        return Refinement(
            reasoning=f"I compared the edit with the source. {observed[0].upper()}{observed[1:]}. {' '.join(plan)}.",
            instruction=rewritten,
            stop=False,
        )

    def _doubt(self, req: RefineRequest) -> float:
        h = hashlib.sha256(
            f"{self.name}|{self.seed}|{req.original_instruction}|".encode() + encode_png(req.edited)
        )
        return int.from_bytes(h.digest()[:8], "little") / 2**64


class ProceduralThinker:
    """Expert and scorer in one answer, the way a trained thinker replies: the score of the
    edit it sees, the reasoning and the next instruction (the same one when satisfied)."""

    def __init__(self, name: str = "procedural-thinker", seed: int = 0, false_alarm_rate: float = 0.3):
        from editthinker_data.backends.scoring.procedural import ProceduralScorer

        self.name = name
        self.expert = ProceduralExpert(name, seed, false_alarm_rate)
        self.scorer = ProceduralScorer(name, seed)

    def setup(self) -> None:
        pass

    def run_batch(self, requests: list[RefineRequest]) -> list[tuple[Refinement, Scores] | BackendError]:
        from editthinker_data.backends import ScoreRequest

        scores = self.scorer.run_batch(
            [ScoreRequest(r.source, r.edited, r.original_instruction) for r in requests]
        )
        out: list[tuple[Refinement, Scores] | BackendError] = []
        for req, score in zip(requests, scores, strict=True):
            if isinstance(score, BackendError):
                out.append(score)
                continue
            r = self.expert.refine(req)
            answer = req.previous_instruction if r.stop else r.instruction
            out.append((Refinement(r.reasoning, answer, False), score))
        return out
