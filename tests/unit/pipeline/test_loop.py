"""The think-while-edit rules, against scripted backends."""

from PIL import Image

from editthinker_data.backends import BackendError
from editthinker_data.core.schema import Refinement, Scores, SourcePair
from editthinker_data.pipeline.loop import Names, drive, rollout

SRC = Image.new("RGB", (8, 8), (0, 0, 0))
NAMES = Names(expert="x", scorer="s")


def pair():
    return SourcePair("p1", "make it red", SRC, "other", "sha", editor="e")


class Script:
    """Records every call; edits return a new image per call; answers come from lists."""

    def __init__(self, refinements, scores=None, fail=None):
        self.refinements = list(refinements)
        self.scores = list(scores or [])
        self.calls = []
        self.fail = fail or {}

    def __call__(self, call):
        self.calls.append(call)
        n = sum(1 for c in self.calls if c.role == call.role)
        if (call.role, n) in self.fail:
            return BackendError("boom")
        if call.role == "editor":
            return Image.new("RGB", (8, 8), (n, 0, 0))
        if call.role == "scorer":
            return self.scores.pop(0) if self.scores else Scores(5.0, 5.0)
        return self.refinements.pop(0)


def run(script, max_turns=5):
    return drive(rollout(pair(), NAMES, max_turns=max_turns, seed=7), script)


def test_stops_on_expert_flag():
    s = Script(
        [Refinement("better", "make the image red", False), Refinement("good", "make the image red", True)]
    )
    t = run(s)
    assert t.stop_reason == "expert_satisfied" and len(t.turns) == 2
    assert [x.instruction for x in t.turns] == ["make it red", "make the image red"]
    assert t.turns[0].reasoning is None and t.turns[1].reasoning == "better"
    assert t.final.reasoning == "good"


def test_stops_on_unchanged_instruction():
    t = run(Script([Refinement("same", "make it red", False)]))
    assert t.stop_reason == "unchanged_instruction" and len(t.turns) == 1


def test_stops_at_turn_limit_without_a_last_critique():
    s = Script([Refinement(f"r{i}", f"v{i}", False) for i in range(10)])
    t = run(s, max_turns=3)
    assert t.stop_reason == "max_turns" and len(t.turns) == 3
    assert sum(1 for c in s.calls if c.role == "expert") == 2


def test_editor_always_edits_the_source_and_expert_sees_previous_edit():
    s = Script([Refinement("a", "v2", False), Refinement("b", "v3", False), Refinement("c", "v3", True)])
    t = run(s)
    edits = [c.request for c in s.calls if c.role == "editor"]
    assert all(r.image is SRC for r in edits)
    assert all(r.seed == 7 for r in edits)
    refines = [c.request for c in s.calls if c.role == "expert"]
    assert [r.previous_instruction for r in refines] == ["make it red", "v2", "v3"]
    assert all(r.original_instruction == "make it red" for r in refines)
    assert [r.edited for r in refines] == [x.image for x in t.turns]
    scores = [c.request for c in s.calls if c.role == "scorer"]
    assert all(r.instruction == "make it red" and r.source is SRC for r in scores)


def test_failure_keeps_the_turns_done():
    s = Script([Refinement("a", "v2", False)], fail={("editor", 2): True})
    t = run(s)
    assert t.stop_reason == "failed" and len(t.turns) == 1 and "turn 2 edit: boom" in t.error


def test_per_turn_seed_policy():
    s = Script([Refinement("a", "v2", False), Refinement("b", "v2", False)])
    t = drive(rollout(pair(), NAMES, max_turns=5, seed=3, seed_policy="per_turn"), s)
    assert [x.seed for x in t.turns] == [3, 4]


def test_a_thinker_that_repeats_its_instruction_records_a_stop():
    """A thinker has no stop flag: the loop, which knows the instruction it gave, records
    the repeat as the stop in the final answer it keeps."""

    def thinker(call):
        if call.role == "editor":
            return Image.new("RGB", (8, 8), (1, 0, 0))
        # parse_thinker's answer: the flag is always False, the instruction repeats at turn 2
        nxt = "make the image red" if call.request.previous_instruction == "make it red" else None
        return Refinement("done", nxt or call.request.previous_instruction, False), Scores(6.0, 6.0)

    names = Names(expert="x", scorer="s", thinker="th")
    t = drive(rollout(pair(), names, max_turns=5, seed=7), thinker)
    assert t.stop_reason == "expert_satisfied" and len(t.turns) == 2
    assert t.final == Refinement("done", "make the image red", True)
