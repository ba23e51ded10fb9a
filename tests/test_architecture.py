"""The layout holds: each layer imports only layers above it (docs/architecture.md), only
distributed/ imports Ray, only tasks/ and flows/ import Prefect, and no module grows past
about 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PKG = ROOT / "editthinker_data"
RANK = {  # lower ranks never import higher ones
    "core": 0, "config": 1, "io": 2, "prompts": 2, "sources": 3, "backends": 4, "pipeline": 5,
    "stages": 6, "execution": 7, "release": 7, "distributed": 8, "demo": 8, "cli": 9,
}  # fmt: skip
MAX_LINES = 420


def _layer(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _modules():
    return sorted(p for p in PKG.rglob("*.py") if p.name != "__main__.py")


def test_layers_import_only_layers_above_them():
    wrong = []
    for path in _modules():
        mine = _layer(path)
        for name in _imports(path):
            if name.startswith("editthinker_data."):
                theirs = name.split(".")[1]
                if theirs in RANK and mine in RANK and RANK[theirs] > RANK[mine]:
                    wrong.append(f"{path.relative_to(ROOT)} ({mine}) imports {name} ({theirs})")
    assert wrong == []


def test_only_distributed_imports_ray_and_only_tasks_and_flows_import_prefect():
    wrong = []
    for path in _modules():
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "ray" and _layer(path) != "distributed":
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
            if top in ("prefect", "prefect_ray"):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_no_module_is_over_about_400_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in [*_modules(), *(ROOT / "flows").glob("*.py"), *(ROOT / "tasks").glob("*.py")]
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
