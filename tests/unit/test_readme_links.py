"""The README's links into docs/ resolve: each named file exists and each #anchor is a heading
of that page, slugged as the docs site slugs it (mkdocs builds docs/ with --strict, but
never sees the README)."""

from __future__ import annotations

import re

from markdown.extensions.toc import slugify

from tests.support.paths import ROOT

LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def _anchors(page: str) -> set[str]:
    text = FENCE.sub("", page)  # a comment line in a code block is not a heading
    return {slugify(re.sub(r"[`*]", "", h), "-") for h in HEADING.findall(text)}


def test_every_relative_link_in_the_readme_resolves():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = [t for t in LINK.findall(readme) if not re.match(r"[a-z]+:", t)]
    assert any(t.startswith("docs/") for t in links), "the README links to no docs page"
    broken = []
    for target in links:
        path, _, anchor = target.partition("#")
        file = ROOT / path
        if not file.is_file():
            broken.append(f"{target}: no file {path}")
        elif anchor and anchor not in _anchors(file.read_text(encoding="utf-8")):
            broken.append(f"{target}: {path} has no heading #{anchor}")
    assert broken == []
