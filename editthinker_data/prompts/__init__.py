"""Every role's prompt templates, versioned by file name (`<name>.txt`), in one place: the
expert's and scorer's questions and the thinker's user turn, which the SFT export trains
on and a thinker backend is asked with, so that one version means one question."""

from __future__ import annotations

from importlib import resources
from typing import Any

THINKER_TEMPLATE = "thinker_user_v1"


def load_template(name: str) -> str:
    path = resources.files(__name__).joinpath(f"{name}.txt")
    if not path.is_file():
        known = sorted(
            p.name.removesuffix(".txt")
            for p in resources.files(__name__).iterdir()
            if p.name.endswith(".txt")
        )
        raise FileNotFoundError(f"no prompt template {name!r}; known: {', '.join(known)}")
    return path.read_text()


def user_turn(meta: dict[str, Any], version: str = THINKER_TEMPLATE) -> str:
    """The thinker's user turn for one step (both instructions; the images are `<image>` tokens)."""
    return (
        load_template(version)
        .strip()
        .format(
            source_instruction=meta["source_instruction"], previous_instruction=meta["previous_instruction"]
        )
    )
