"""The gallery's pairing of images and critiques, on hand-made trajectory rows (fast)."""

from editthinker_data.release.gallery import critiques


def _rows(n, final=None, error=None, stop="expert_satisfied"):
    return [
        {
            "turn": t,
            "reasoning": None if t == 1 else f"R{t}: about image {t - 1}",
            "final_reasoning": final,
            "error": error,
            "stop_reason": stop,
        }
        for t in range(1, n + 1)
    ]


def test_each_image_gets_the_critique_written_at_the_next_turn_then_the_final_one():
    got = critiques(_rows(3, final="F: about image 3"))
    assert got == {
        1: ("expert, turn 2", "R2: about image 1"),
        2: ("expert, turn 3", "R3: about image 2"),
        3: ("expert's final critique", "F: about image 3"),
    }


def test_last_image_without_a_critique_says_why():
    assert critiques(_rows(2, stop="max_turns"))[2] == ("none", "no critique: the loop stopped (max_turns)")
    failed = critiques(_rows(1, error="refine: gave up after 7 tries", stop="failed"))
    assert failed == {1: ("none", "no critique: the trajectory failed (refine: gave up after 7 tries)")}
