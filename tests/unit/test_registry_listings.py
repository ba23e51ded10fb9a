"""The docs tables that list every backend kind and source format agree with the
registries (`backends.REGISTRY`, `sources.formats.FORMATS`): a new family or format fails
here until its row is written, and a row left for a removed one fails too. The tables
stay hand-written because their other columns are prose (what to download, defaults)."""

from __future__ import annotations

import re

from editthinker_data.backends import REGISTRY
from editthinker_data.backends.editors.tiny_models import tiny_families
from editthinker_data.sources.formats import FORMATS
from tests.support.paths import ROOT

DOCS = ROOT / "docs"


def table(page: str, header: str) -> list[list[str]]:
    """The body rows (cells) of the table whose header row is `header` on a docs page."""
    lines = (DOCS / page).read_text().splitlines()
    assert header in lines, f"docs/{page} has no table headed {header!r}"
    rows = []
    for line in lines[lines.index(header) + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def names(cell: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", cell))


def test_backends_page_lists_every_kind_of_every_role():
    rows = {cells[0]: names(cells[1]) for cells in table("backends.md", "| role | kinds |")}
    assert set(rows) == set(REGISTRY)
    for role, kinds in REGISTRY.items():
        assert rows[role] == set(kinds), f"docs/backends.md kinds table, {role}: registry has {sorted(kinds)}"


def test_editor_table_has_a_row_per_editor_kind_naming_its_pipeline():
    rows = {
        next(iter(names(cells[0]))): cells
        for cells in table("backends.md", "| kind | diffusers pipeline | defaults |")
    }
    # the procedural editor has its own section ("The demo's procedural backends")
    want = set(REGISTRY["editor"]) - {"procedural"}
    assert set(rows) == want, (
        f"docs/backends.md#editors: rows for {sorted(rows)}, registry has {sorted(want)}"
    )
    families = tiny_families()
    assert families
    for kind, cls in families.items():
        assert names(rows[kind][1]) == {cls.pipeline_class}, kind


def test_sources_page_lists_every_format():
    header = "| format | what to download | what it reads |"
    listed = [name for cells in table("sources.md", header) for name in names(cells[0])]
    assert len(listed) == len(set(listed))
    assert set(listed) == set(FORMATS), (
        f"docs/sources.md#pooling-from-public-datasets: rows for {sorted(listed)}, registry has {sorted(FORMATS)}"
    )
