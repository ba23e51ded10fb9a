"""Prompt templates and the (text, images) each role sends, shared by every model backend
(remote or local) so that the same template version means the same question."""

from __future__ import annotations

from editthinker_data.backends import RefineRequest
from editthinker_data.prompts import load_template, user_turn  # noqa: F401  (the thinker is asked as SFT trains it)


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
