"""MkDocs hook: the docs' tables of backend families are built from `backends.REGISTRY`, so
a family added to the registry is listed on the site with no docs edit, and one removed
disappears from it.

A page asks for a table with a marker line, `<!-- registry:NAME -->`, where NAME is one of
`TABLES`; an unknown NAME fails the build. What a table says of a family comes from its
code: the first sentence of its module's docstring, its file, and for diffusers families
the pipeline class and the `defaults` (the released settings) of the class.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import re
from collections.abc import Callable
from typing import Any

from editthinker_data.backends import REGISTRY
from editthinker_data.backends.editors.diffusers_base import DiffusersEditor

MARKER = re.compile(r"^<!-- registry:([a-z_]+) -->$", re.MULTILINE)


def family_class(target: str) -> type:
    """The class a registry entry ("module:Class") names."""
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not isinstance(cls, type):
        raise TypeError(f"registry entry {target!r} is not a class")
    return cls


def summary(cls: type) -> str:
    """The first sentence of the family's module docstring: what the file is for. A family
    without one fails, naming its file, since the docs would have nothing to say of it."""
    module = importlib.import_module(cls.__module__)
    doc = inspect.cleandoc(module.__doc__ or "")
    paragraph = " ".join(doc.split("\n\n")[0].split())
    if not paragraph:
        raise ValueError(f"{source_file(cls)} has no module docstring to describe the family in the docs")
    sentence = re.split(r"(?<=[.!?])\s+(?=[A-Z`])", paragraph)[0]
    return sentence.replace("|", "\\|")


def source_file(cls: type) -> str:
    return cls.__module__.replace(".", "/") + ".py"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def roles_table() -> str:
    """Every role and its kinds, in registry order."""
    lines = ["| role | kinds |", "|---|---|"]
    for role, kinds in REGISTRY.items():
        lines.append(_row(str(role), ", ".join(f"`{kind}`" for kind in kinds)))
    return "\n".join(lines)


def families_table() -> str:
    """One row per registered family: role, kind, its file and what it is."""
    lines = ["| role | kind | file | what it is |", "|---|---|---|---|"]
    for role, kinds in REGISTRY.items():
        for kind, target in kinds.items():
            cls = family_class(target)
            lines.append(_row(str(role), f"`{kind}`", f"`{source_file(cls)}`", summary(cls)))
    return "\n".join(lines)


def _value(key: str, value: Any) -> str:
    text = f"`{key}: {json.dumps(value)}`"
    if key.endswith("pixels") and isinstance(value, int) and math.isqrt(value) ** 2 == value:
        text += f" ({math.isqrt(value)}^2)"
    return text


def diffusers_table() -> str:
    """The editor families built on `DiffusersEditor`: the pipeline each loads and its
    defaults, which a config's `params` override."""
    lines = ["| kind | diffusers pipeline | defaults |", "|---|---|---|"]
    for kind, target in REGISTRY["editor"].items():
        cls = family_class(target)
        if not issubclass(cls, DiffusersEditor):
            continue
        pipeline = (
            f"`{cls.pipeline_class}`" if cls.pipeline_class else "any, named by `params.pipeline_class`"
        )
        defaults = ", ".join(_value(k, v) for k, v in cls.defaults.items())
        lines.append(_row(f"`{kind}`", pipeline, defaults))
    return "\n".join(lines)


TABLES: dict[str, Callable[[], str]] = {
    "roles": roles_table,
    "families": families_table,
    "diffusers": diffusers_table,
}


def render(markdown: str, where: str = "the page") -> str:
    """`markdown` with every marker replaced by its table."""

    def table(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in TABLES:
            raise ValueError(f"{where}: unknown table <!-- registry:{name} -->; known: {', '.join(TABLES)}")
        return TABLES[name]()

    return MARKER.sub(table, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return render(markdown, f"docs/{page.file.src_path}")
