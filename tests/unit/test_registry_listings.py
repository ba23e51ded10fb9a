"""The docs list every backend family and source format the registries hold
(`backends.REGISTRY`, `sources.formats.FORMATS`).

The backend tables are built from the registry when the site is built
(`docs/hooks/registry_tables.py`), so a new family needs no docs edit: these tests check
that the pages ask for the tables, that every registered family renders (with its file,
its docstring's summary and, for diffusers families, the pipeline it loads), that a family
added to the registry appears with no docs edit, and that the strict site build passes
with the tables in it. The source format table stays hand-written, because its other
columns are prose (what to download), so a format without its row fails here."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from editthinker_data.backends import REGISTRY
from editthinker_data.backends.editors.tiny_models import tiny_families
from editthinker_data.sources.formats import FORMATS
from tests.support.paths import ROOT

DOCS = ROOT / "docs"
HOOK = DOCS / "hooks" / "registry_tables.py"


def load_hook() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("registry_tables", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = load_hook()


def table(text: str, header: str) -> list[list[str]]:
    """The body rows (cells) of the table whose header row is `header` in markdown `text`."""
    lines = text.splitlines()
    assert header in lines, f"no table headed {header!r}"
    rows = []
    for line in lines[lines.index(header) + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))])
    return rows


def names(cell: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", cell))


def rendered_backends_page() -> str:
    return hook.render((DOCS / "backends.md").read_text(), "docs/backends.md")


def test_backends_page_asks_for_the_registry_tables_instead_of_copies():
    text = (DOCS / "backends.md").read_text()
    assert set(hook.MARKER.findall(text)) == {"roles", "families", "diffusers"}
    for header in (
        "| role | kinds |",
        "| role | kind | file | what it is |",
        "| kind | diffusers pipeline |",
    ):
        assert header not in text, f"docs/backends.md holds a hand-written copy of {header!r}"


def test_every_kind_of_every_role_renders():
    page = rendered_backends_page()
    rows = {cells[0]: names(cells[1]) for cells in table(page, "| role | kinds |")}
    assert rows == {role: set(kinds) for role, kinds in REGISTRY.items()}

    families = table(page, "| role | kind | file | what it is |")
    listed = [(cells[0], next(iter(names(cells[1])))) for cells in families]
    assert listed == [(role, kind) for role, kinds in REGISTRY.items() for kind in kinds]
    for (role, kind), cells in zip(listed, families, strict=True):
        module = REGISTRY[role][kind].partition(":")[0]
        path = module.replace(".", "/") + ".py"
        assert names(cells[2]) == {path} and (ROOT / path).is_file(), (role, kind, cells[2])
        assert len(cells[3]) > 20 and cells[3].endswith((".", ")")), (role, kind, cells[3])


def test_diffusers_table_names_each_familys_pipeline_and_defaults():
    rows = {
        next(iter(names(cells[0]))): cells
        for cells in table(rendered_backends_page(), "| kind | diffusers pipeline | defaults |")
    }
    families = tiny_families()
    assert families
    # every diffusers family, and the generic kind that names its pipeline per config
    assert set(families) < set(rows) <= set(REGISTRY["editor"])
    for kind, cls in families.items():
        assert names(rows[kind][1]) == {cls.pipeline_class}, kind
        assert f"`steps: {cls.defaults['steps']}`" in rows[kind][2], kind
    assert "`procedural`" not in {cells[0] for cells in rows.values()}  # not a diffusers family


def test_a_family_added_to_the_registry_is_listed_with_no_docs_edit(monkeypatch):
    monkeypatch.setitem(
        REGISTRY["editor"], "kontext_fast", "editthinker_data.backends.editors.flux_kontext:FluxKontextEditor"
    )
    monkeypatch.setitem(
        REGISTRY["scorer"], "strict", "editthinker_data.backends.scoring.procedural:ProceduralScorer"
    )
    page = rendered_backends_page()
    kinds = {cells[0]: names(cells[1]) for cells in table(page, "| role | kinds |")}
    assert "kontext_fast" in kinds["editor"] and "strict" in kinds["scorer"]
    families = {(cells[0], *names(cells[1])) for cells in table(page, "| role | kind | file | what it is |")}
    assert {("editor", "kontext_fast"), ("scorer", "strict")} <= families
    diffusers = {
        next(iter(names(cells[0]))): cells
        for cells in table(page, "| kind | diffusers pipeline | defaults |")
    }
    assert names(diffusers["kontext_fast"][1]) == {"FluxKontextPipeline"}


def test_a_family_without_a_module_docstring_fails_naming_its_file(monkeypatch):
    module = types.ModuleType("undocumented_family")
    module.Editor = type("Editor", (), {"__module__": "undocumented_family"})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "undocumented_family", module)
    monkeypatch.setitem(REGISTRY["editor"], "undocumented", "undocumented_family:Editor")
    with pytest.raises(ValueError, match="undocumented_family.py has no module docstring"):
        hook.families_table()


def test_an_unknown_table_fails_the_page():
    with pytest.raises(ValueError, match=r"docs/x.md: unknown table .*registry:editors.*known: roles"):
        hook.render("text\n<!-- registry:editors -->\n", "docs/x.md")
    assert hook.render("a `<!-- registry:roles -->` in a line stays\n") == (
        "a `<!-- registry:roles -->` in a line stays\n"
    )


@pytest.mark.slow(seconds=20)
def test_the_strict_site_build_holds_every_family(tmp_path: Path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    html = (site / "backends" / "index.html").read_text()
    assert "registry:" not in html  # every marker was replaced
    for role, kinds in REGISTRY.items():
        for kind, target in kinds.items():
            assert f"<code>{kind}</code>" in html, (role, kind)
            assert target.partition(":")[0].replace(".", "/") + ".py" in html, (role, kind)
    assert not (site / "hooks").exists()  # the hook is not published as a page asset


def test_sources_page_lists_every_format():
    header = "| format | what to download | what it reads |"
    listed = [name for cells in table((DOCS / "sources.md").read_text(), header) for name in names(cells[0])]
    assert len(listed) == len(set(listed))
    assert set(listed) == set(FORMATS), (
        f"docs/sources.md#pooling-from-public-datasets: rows for {sorted(listed)}, registry has {sorted(FORMATS)}"
    )
