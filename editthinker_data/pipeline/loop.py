"""One trajectory's think-while-edit rollout, as a generator of backend calls.

`rollout` yields `Call`s (edit, score, refine) and receives their results, so the same
logic runs under a plain local driver (`run_local`, tests and debugging) and under the Ray
scheduler, which keeps hundreds of rollouts in flight and batches their calls per backend
so that editors never wait on expert latency.

The rules are the paper's (docs/concepts.md, "The think-while-edit loop"): turn 1 edits
with the raw instruction; each later turn the expert sees (I_src, I_{t-1}, T_s, T_{t-1});
the editor always edits the source image; stop on the expert's stop flag, on an unchanged
instruction, or at the turn limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any

from editthinker_data.backends import (
    BackendError,
    EditRequest,
    RefineRequest,
    ScoreRequest,
    TransientBackendError,
    UnusableAnswer,
)
from editthinker_data.core.schema import Refinement, Role, Scores, SourcePair, Trajectory, Turn, TurnFailure


@dataclass(frozen=True)
class Call:
    role: Role
    backend: str  # backend name (which editor pool, for instance)
    request: Any


@dataclass(frozen=True)
class Names:
    expert: str
    scorer: str
    thinker: str | None = None  # set: one call scores the edit and refines (EditThinker's format)


Rollout = Generator[Call, Any, Trajectory]


def classify(err: BackendError) -> tuple[bool, str]:
    """(transient, reason suffix): only a backend that could not answer is worth a rerun."""
    if isinstance(err, TransientBackendError):
        return True, "unreachable"
    return False, "unparseable" if isinstance(err, UnusableAnswer) else "error"


def turn_seed(seed: int, turn: int, policy: str) -> int:
    return seed if policy == "fixed" else seed + turn - 1


def rollout(
    pair: SourcePair, names: Names, *, max_turns: int, seed: int, seed_policy: str = "fixed"
) -> Rollout:
    """Results sent back are the backend's value, or a BackendError that ends the rollout
    (classified into the trajectory's `failure`)."""
    source = pair.image
    if source is None:  # generate's prepare loads it; a rollout cannot edit nothing
        raise ValueError(f"pair {pair.id!r}: its source image is not loaded")
    turns: list[Turn] = []
    instruction = pair.instruction
    reasoning: str | None = None
    refine_s = 0.0  # the critique that produced this turn's instruction
    stage_roles = {
        "edit": (Role.EDITOR, pair.editor),
        "think": (Role.THINKER, names.thinker or ""),
        "score": (Role.SCORER, names.scorer),
        "refine": (Role.EXPERT, names.expert),
    }

    def failed(stage: str, err: BackendError) -> Trajectory:
        role, backend = stage_roles[stage]
        transient, kind = classify(err)
        failure = TurnFailure(len(turns) + 1, stage, role, backend, transient, f"{role}_{kind}")
        return Trajectory(
            pair, turns, "failed", error=f"turn {len(turns) + 1} {stage}: {err}", failure=failure
        )

    for t in range(1, max_turns + 1):
        s = turn_seed(seed, t, seed_policy)
        t0 = time.perf_counter()
        image = yield Call(Role.EDITOR, pair.editor, EditRequest(source, instruction, s, pair.image_sha256))
        t1 = time.perf_counter()
        if isinstance(image, BackendError):
            return failed("edit", image)
        refinement: Refinement | None = None
        if names.thinker:
            answer = yield Call(
                Role.THINKER, names.thinker, RefineRequest(source, image, pair.instruction, instruction)
            )
            if isinstance(answer, BackendError):
                return failed("think", answer)
            refinement, scores = answer
            timings = {"edit_s": t1 - t0, "think_s": time.perf_counter() - t1}
        else:
            scores = yield Call(Role.SCORER, names.scorer, ScoreRequest(source, image, pair.instruction))
            if isinstance(scores, BackendError):
                return failed("score", scores)
            timings = {"edit_s": t1 - t0, "score_s": time.perf_counter() - t1}
            if turns:
                timings["refine_s"] = refine_s
        assert isinstance(scores, Scores)
        turns.append(
            Turn(
                t,
                instruction,
                image,
                scores,
                s,
                reasoning,
                pair.editor,
                (names.thinker or names.expert) if t > 1 else "",
                names.thinker or names.scorer,
                timings,
            )
        )
        if t == max_turns:
            return Trajectory(pair, turns, "max_turns")
        if refinement is None:
            t3 = time.perf_counter()
            refinement = yield Call(
                Role.EXPERT, names.expert, RefineRequest(source, image, pair.instruction, instruction)
            )
            refine_s = time.perf_counter() - t3
            if isinstance(refinement, BackendError):
                return failed("refine", refinement)
        assert isinstance(refinement, Refinement)
        unchanged = refinement.instruction.strip() == instruction.strip()
        if unchanged and names.thinker:
            # A thinker has no stop flag: repeating the instruction is how it says "satisfied".
            # Only the loop knows the instruction was repeated, so it records the stop here.
            return Trajectory(pair, turns, "expert_satisfied", final=replace(refinement, stop=True))
        if refinement.stop:
            return Trajectory(pair, turns, "expert_satisfied", final=refinement)
        if unchanged:
            return Trajectory(pair, turns, "unchanged_instruction", final=refinement)
        instruction, reasoning = refinement.instruction, refinement.reasoning
    raise AssertionError("unreachable")


def drive(gen: Rollout, call: Callable[[Call], Any]) -> Trajectory:
    """Run one rollout to the end with `call(Call) -> result` (plain loop, no concurrency)."""
    try:
        request = next(gen)
        while True:
            try:
                result = call(request)
            except BackendError as err:
                result = err
            request = gen.send(result)
    except StopIteration as stop:
        trajectory: Trajectory = stop.value  # a Rollout returns its Trajectory
        return trajectory


def run_local(pair: SourcePair, backends: dict[tuple[str, str], Any], names: Names, **kw: Any) -> Trajectory:
    """backends: {(role, name): backend with run_batch}."""
    return drive(
        rollout(pair, names, **kw), lambda c: backends[(c.role, c.backend)].run_batch([c.request])[0]
    )
