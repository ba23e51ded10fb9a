"""Parsing MLLM answers in the formats of the paper's release, tolerant of wrapping (code
fences, text around the JSON) and strict on content (types, ranges, required keys). A
`ParseError` names what was wrong; callers retry a bounded number of times."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from editthinker_data.core.schema import Refinement, Scores


class ParseError(ValueError):
    pass


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def _first_object(candidates: list[str], decoder: json.JSONDecoder, wanted) -> dict[str, Any] | None:
    """The first JSON object that starts at some `{` of a candidate text and is `wanted`."""
    for candidate in candidates:
        for start in (i for i, ch in enumerate(candidate) if ch == "{"):
            try:
                obj, _ = decoder.raw_decode(candidate[start:])
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and wanted(obj):
                return obj
    return None


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in `text`, inside a code fence or not."""
    if not isinstance(text, str) or not text.strip():
        raise ParseError("empty answer")
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    obj = _first_object(candidates, json.JSONDecoder(), lambda o: True)
    if obj is not None:
        return obj
    raise ParseError(f"no JSON object in the answer ({text[:60]!r}...)")


def _score(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ParseError(f"{what} must be a number, got {value!r}")
    if not 0 <= value <= 10:
        raise ParseError(f"{what}={value} is outside 0-10")
    return float(value)


def parse_expert(text: str) -> Refinement:
    """`{"is_satisfied": bool, "reason": str, "new_rewritten_prompt": str}`."""
    obj = extract_json(text)
    missing = [k for k in ("is_satisfied", "reason", "new_rewritten_prompt") if k not in obj]
    if missing:
        raise ParseError(f"expert answer lacks {', '.join(missing)}")
    if not isinstance(obj["is_satisfied"], bool):
        raise ParseError(f"is_satisfied must be true or false, got {obj['is_satisfied']!r}")
    for key in ("reason", "new_rewritten_prompt"):
        if not isinstance(obj[key], str):
            raise ParseError(f"{key} must be a string, got {type(obj[key]).__name__}")
    prompt = obj["new_rewritten_prompt"].strip()
    if not obj["is_satisfied"] and not prompt:
        raise ParseError("not satisfied but new_rewritten_prompt is empty")
    return Refinement(obj["reason"].strip(), prompt, obj["is_satisfied"])


def parse_scorer(text: str) -> Scores:
    """`{"reasoning": str, "score": [success, no_over_editing, naturalness, no_artifacts]}`:
    semantic = min of the first two, quality = min of the last two (VIEScore)."""
    obj = extract_json(text)
    scores = obj.get("score")
    if not isinstance(scores, list) or len(scores) != 4:
        raise ParseError(f"score must be a list of 4 numbers, got {scores!r}")
    s = [_score(v, f"score[{i}]") for i, v in enumerate(scores)]
    details = {"success": s[0], "no_over_editing": s[1], "naturalness": s[2], "no_artifacts": s[3]}
    return Scores(min(s[0], s[1]), min(s[2], s[3]), details)


_DELIMITER = "||V^=^V||"  # VIEScore's optional answer delimiter, kept by some models
_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_]\w*)\s*:")
_BARE_PAIR = re.compile(r"^\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]$")


def _score_object(text: str) -> dict[str, Any] | None:
    """The first JSON object holding a `score`, read the way VIEScore reads answers: between
    its two delimiters when present, raw newlines allowed inside strings, bare keys quoted."""
    if text.count(_DELIMITER) == 2:
        text = text.split(_DELIMITER)[1]
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    candidates += [_BARE_KEY.sub(r'\1"\2":', c) for c in candidates]
    return _first_object(candidates, json.JSONDecoder(strict=False), lambda o: "score" in o)


def parse_score_pair(text: str, names: tuple[str, str]) -> tuple[float, float]:
    """One answer of VIEScore's protocol, `{"score": [a, b], "reasoning": str}`, as the pair
    (a, b) named `names` in errors. Tolerates what VIEScore's own parser does (text or code
    fences around the object, its `||V^=^V||` delimiters, unquoted keys, raw newlines, a
    bare `[a, b]` list); unlike it, never guesses: a missing, short or out-of-range score is
    a `ParseError`, asked again by the caller."""
    if not isinstance(text, str) or not text.strip():
        raise ParseError("empty answer")
    obj = _score_object(text)
    if obj is None:
        bare = _BARE_PAIR.match(text.strip().strip("`").strip())
        if not bare:
            raise ParseError(f"no JSON object with a score in the answer ({text[:60]!r}...)")
        obj = {"score": [float(bare.group(1)), float(bare.group(2))]}
    scores = obj["score"]
    if not isinstance(scores, list) or len(scores) != 2:
        raise ParseError(f"score must be a list of 2 numbers [{', '.join(names)}], got {scores!r}")
    first, second = (_score(v, f"score[{i}] ({names[i]})") for i, v in enumerate(scores))
    return first, second


_THINKER = re.compile(r"<think>(.*?)</think>\s*<score>(.*?)</score>\s*<answer>(.*?)</answer>", re.S)


def parse_thinker(text: str) -> tuple[Refinement, Scores]:
    """`<think>R</think><score>{"semantic": s, "quality": q}</score><answer>T</answer>`; the
    thinker stops by answering with the instruction it was given, which only the loop knows,
    so the loop sets the stop flag (stop is always False here)."""
    m = _THINKER.search(text or "")
    if not m:
        raise ParseError("answer lacks <think>, <score> and <answer> tags in that order")
    score = extract_json(m.group(2))
    for key in ("semantic", "quality"):
        if key not in score:
            raise ParseError(f"<score> lacks {key}")
    reasoning, answer = m.group(1).strip(), m.group(3).strip()
    if not answer:
        raise ParseError("<answer> is empty")
    scores = Scores(_score(score["semantic"], "semantic"), _score(score["quality"], "quality"))
    return Refinement(reasoning, answer, False), scores
