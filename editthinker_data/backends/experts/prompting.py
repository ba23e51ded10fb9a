"""Prompt templates and the (text, images) each role sends, shared by every model backend
(remote or local) so that the same template version means the same question."""

from __future__ import annotations

from editthinker_data.backends import RefineRequest
from editthinker_data.backends.experts.parsing import parse_expert, parse_thinker
from editthinker_data.prompts import THINKER_TEMPLATE, load_template, user_turn  # noqa: F401  (the thinker is asked as SFT trains it)


def expert_job(template: str, r: RefineRequest) -> tuple[str, list]:
    text = template.format(
        original_instruction=r.original_instruction, previous_instruction=r.previous_instruction
    )
    return text, [r.source, r.edited]


def thinker_job(template_name: str, r: RefineRequest) -> tuple[str, list]:
    meta = {"source_instruction": r.original_instruction, "previous_instruction": r.previous_instruction}
    return user_turn(meta, template_name).replace("<image>", "").strip(), [r.source, r.edited]


def new_counters() -> dict[str, float]:
    """requests sent; retries (transport: 429, 5xx, timeouts, dropped connections); reasks
    (malformed answers asked again); failures (requests given up); cache_hits; tokens;
    rate_wait_s (seconds spent waiting for the rate limits)."""
    names = ("requests", "retries", "reasks", "failures", "cache_hits", "tokens_in", "tokens_out")
    return {**dict.fromkeys(names, 0), "rate_wait_s": 0.0}


class ExpertRole:
    """The expert's side shared by the remote and local model backends: its template and
    how its answer is read (put before the backend's base class)."""

    role = "expert"
    default_template = "expert_v1"

    def parse(self, answer: str):
        return parse_expert(answer)


class ThinkerRole:
    """A trained thinker (or any MLLM prompted like one): asked with the same user turn the
    SFT export trains on, it answers <think>..</think><score>{..}</score><answer>..</answer>."""

    role = "thinker"
    default_template = THINKER_TEMPLATE

    def parse(self, answer: str):
        return parse_thinker(answer)
