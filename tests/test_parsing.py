import pytest

from editthinker_data.experts.parsing import (
    ParseError,
    extract_json,
    parse_expert,
    parse_scorer,
    parse_thinker,
)


def test_expert_json_plain_fenced_and_wrapped():
    plain = '{"is_satisfied": false, "reason": "the circle is red", "new_rewritten_prompt": "Make the circle blue."}'
    for text in (plain, f"```json\n{plain}\n```", f"Sure! Here it is:\n{plain}\nHope this helps."):
        r = parse_expert(text)
        assert (r.stop, r.reasoning, r.instruction) == (False, "the circle is red", "Make the circle blue.")


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "empty"),
        ("I think it is fine", "no JSON object"),
        ('{"is_satisfied": "yes", "reason": "x", "new_rewritten_prompt": "y"}', "true or false"),
        ('{"is_satisfied": false, "reason": "x"}', "lacks new_rewritten_prompt"),
        ('{"is_satisfied": false, "reason": "x", "new_rewritten_prompt": "  "}', "empty"),
        ('{"is_satisfied": true, "reason": 3, "new_rewritten_prompt": "y"}', "reason must be a string"),
        ('{"is_satisfied": false, "reason": "x", "new_rewritten_prompt": "Make it', "no JSON object"),
    ],
)
def test_expert_rejects_bad_answers(text, message):
    with pytest.raises(ParseError, match=message):
        parse_expert(text)


def test_scorer_takes_vie_minimums():
    s = parse_scorer('```\n{"reasoning": "ok", "score": [9, 6, 8, 7.5]}\n```')
    assert (s.semantic, s.quality) == (6.0, 7.5)
    assert s.details == {"success": 9.0, "no_over_editing": 6.0, "naturalness": 8.0, "no_artifacts": 7.5}


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"reasoning": "x", "score": [9, 6, 8]}', "list of 4"),
        ('{"reasoning": "x", "score": [9, 6, 8, 11]}', "outside 0-10"),
        ('{"reasoning": "x", "score": [9, "6", 8, 7]}', "must be a number"),
        ('{"reasoning": "x", "score": [9, true, 8, 7]}', "must be a number"),
    ],
)
def test_scorer_rejects_bad_scores(text, message):
    with pytest.raises(ParseError, match=message):
        parse_scorer(text)


def test_thinker_tags():
    r, s = parse_thinker(
        '<think>too red</think><score>{"semantic": 4, "quality": 9}</score><answer>Make it blue.</answer>'
    )
    assert (r.reasoning, r.instruction, s.semantic, s.quality) == ("too red", "Make it blue.", 4.0, 9.0)
    for bad in (
        "<think>x</think><answer>y</answer>",
        '<think>x</think><score>{"semantic": 4}</score><answer>y</answer>',
        "random gibberish tokens ##",
        '<think>x</think><score>{"semantic": 40, "quality": 1}</score><answer>y</answer>',
    ):
        with pytest.raises(ParseError):
            parse_thinker(bad)


def test_extract_json_skips_non_objects():
    assert extract_json('list [1, 2] then {"a": 1}') == {"a": 1}
