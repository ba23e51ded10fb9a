import pytest

from editthinker_data.backends.experts.parsing import (
    ParseError,
    extract_json,
    parse_expert,
    parse_score_pair,
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


SC = ("success", "over_editing")


@pytest.mark.parametrize(
    "text,pair",
    [
        ('{"score": [7, 9], "reasoning": "the hat is there"}', (7.0, 9.0)),
        ('{"score" : [7.5, 10],\n"reasoning" : "ok"}', (7.5, 10.0)),
        ('```json\n{"score": [3, 8], "reasoning": "x"}\n```', (3.0, 8.0)),
        ('Sure, here is my rating:\n{"score": [6, 4], "reasoning": "x"}\nLet me know.', (6.0, 4.0)),
        # VIEScore's own delimited answer format (its `_context` prompt asks for it)
        ('||V^=^V||\n{\n"score" : [5, 10],\n"reasoning" : "good edit"\n}\n||V^=^V||', (5.0, 10.0)),
        # a raw newline inside the reasoning string: VIEScore strips newlines before json.loads
        ('{"score": [2, 9], "reasoning": "line one\nline two"}', (2.0, 9.0)),
        # unquoted keys: VIEScore's fix_json quotes them
        ('{score: [8, 6], reasoning: "fine"}', (8.0, 6.0)),
        # only the list, as VIEScore accepts when no JSON object is found
        ("[6, 0]", (6.0, 0.0)),
        (" [6.5,7] ", (6.5, 7.0)),
        # an object without a score before the answer is skipped
        ('{"note": 1} then {"score": [4, 4], "reasoning": "x"}', (4.0, 4.0)),
        ('{"score": [0, 10]}', (0.0, 10.0)),  # the reasoning is not required
    ],
)
def test_score_pair_tolerates_what_viescore_tolerates(text, pair):
    assert parse_score_pair(text, SC) == pair


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "empty"),
        ("The edit looks fine to me.", "no JSON object with a score"),
        ('{"reasoning": "no score"}', "no JSON object with a score"),
        ('{"score": [7], "reasoning": "x"}', r"list of 2 numbers \[success, over_editing\], got \[7\]"),
        ('{"score": 7, "reasoning": "x"}', "list of 2 numbers"),
        ('{"score": [7, 8, 9], "reasoning": "x"}', "list of 2 numbers"),
        ('{"score": [7, 11], "reasoning": "x"}', r"score\[1\] \(over_editing\)=11 is outside 0-10"),
        ('{"score": [-1, 5], "reasoning": "x"}', r"score\[0\] \(success\)=-1 is outside 0-10"),
        ("[6, 12]", r"score\[1\] \(over_editing\)=12.0 is outside 0-10"),
        ('{"score": ["7", 8], "reasoning": "x"}', "must be a number"),
        ('{"score": [true, 8], "reasoning": "x"}', "must be a number"),
        ('{"score": [NaN, 8], "reasoning": "x"}', "must be a number"),
        ('{"score": [7, 8], "reasoning": "cut off', "no JSON object with a score"),
    ],
)
def test_score_pair_rejects_with_a_reason_and_never_guesses(text, message):
    with pytest.raises(ParseError, match=message):
        parse_score_pair(text, SC)


def test_score_pair_names_the_quality_pair():
    with pytest.raises(ParseError, match=r"score\[0\] \(naturalness\)=10.5"):
        parse_score_pair('{"score": [10.5, 3]}', ("naturalness", "artifacts"))


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
