"""The layout holds: each layer imports only layers above it (docs/architecture.md), with
tasks/ over the package, flows/ over tasks/ and the CLI (which starts and registers flows)
over all; no stage module imports another; no two files import each other, directly or
round a circle; only distributed/ imports Ray, only tasks/ and flows/ import Prefect. Module
size is left to people (split by meaning, never by a count), so it is not checked here."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

from tests.support.paths import ROOT

PKG = ROOT / "editthinker_data"
TOPS = ("editthinker_data", "flows", "tasks")  # the trees the import checks read
RANK = {  # lower ranks never import higher ones
    "core": 0, "config": 1, "io": 2, "prompts": 2, "sources": 3, "backends": 4, "pipeline": 5,
    "stages": 6, "execution": 7, "release": 7, "distributed": 8, "demo": 8,
    "tasks": 9, "flows": 10, "cli": 11,
}  # fmt: skip


def _layer(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[1].removesuffix(".py") if rel.parts[0] == "editthinker_data" else rel.parts[0]


def _files() -> dict[str, Path]:
    """Every module of ours by dotted name (a package by its __init__.py)."""
    out = {}
    for top in TOPS:
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


FILES = _files()
MODULE_OF = {path: name for name, path in FILES.items()}


def _imported(path: Path) -> set[str]:
    """The dotted names a file imports, anywhere in it (in a function too); `from a import b`
    names `a.b` where that is a module of ours, so `from editthinker_data import stages`
    counts as importing stages."""
    me = MODULE_OF[path]
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's own package up
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in FILES}
    return found


def _ours(name: str) -> str | None:
    """The module of ours that `name` loads (the longest prefix that is a file), or None.
    Only that file: the parent packages' __init__ files it also runs are not edges, or
    every package whose __init__ gathers its submodules would be a circle."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in FILES:
            return ".".join(parts[:i])
    return None


def _modules():
    return sorted(p for p in PKG.rglob("*.py") if p.name != "__main__.py")


def test_layers_import_only_layers_above_them():
    """The package never imports tasks/ or flows/ (only the CLI, above both, runs and
    registers flows); tasks/ import the package, never flows/; flows/ import both."""
    wrong = []
    paths = [*_modules(), *(ROOT / "flows").glob("*.py"), *(ROOT / "tasks").glob("*.py")]
    for path in paths:
        mine = _layer(path)
        for name in _imported(path):
            target = _ours(name)
            theirs = _layer(FILES[target]) if target else None
            if theirs in RANK and mine in RANK and RANK[theirs] > RANK[mine]:
                wrong.append(f"{path.relative_to(ROOT)} ({mine}) imports {name} ({theirs})")
    assert wrong == []


def _defines_a_stage(path: Path) -> bool:
    return any(
        isinstance(node, ast.ClassDef)
        and any(ast.unparse(b).split("[")[0].split(".")[-1] == "Stage" for b in node.bases)  # Stage[Report]
        for node in ast.walk(ast.parse(path.read_text()))
    )


def test_no_stage_module_imports_another():
    """Stages meet through the data they leave (io/pool_snapshot.py, io/trajectory_index.py),
    not through each other's modules. A stage module is one that defines a `Stage`; the
    shared support beside them (`base`, `versions`) and the package's `__init__`, which
    gathers them, may be imported."""
    stage_dir = PKG / "stages"
    stage_modules = {MODULE_OF[p] for p in stage_dir.glob("*.py") if _defines_a_stage(p)}
    assert {"editthinker_data.stages.pool", "editthinker_data.stages.generate"} <= stage_modules
    wrong = [
        f"{path.relative_to(ROOT)} imports {target}"
        for path in sorted(stage_dir.glob("*.py"))
        if path.name != "__init__.py"
        for target in sorted({_ours(n) for n in _imported(path)} & stage_modules - {MODULE_OF[path]})
    ]
    assert wrong == []


def test_no_import_circles_between_files():
    """File level, over the package, tasks/ and flows/. Every import of a file of ours is an
    edge, at module level or inside a function: a lazy import or a `TYPE_CHECKING` block
    that dodges the circle at import time still ties the two files together (sources'
    defaults.py and formats.py did so). Each edge goes to the file named, not to its parent
    packages' __init__ files."""
    graph = {
        name: {t for n in _imported(path) if (t := _ours(n)) and t != name} for name, path in FILES.items()
    }
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        raise AssertionError(f"import circle: {' -> '.join(err.args[1])}") from None


def test_only_distributed_imports_ray_and_only_tasks_and_flows_import_prefect():
    wrong = []
    for path in _modules():
        for name in _imported(path):
            top = name.split(".")[0]
            if top == "ray" and _layer(path) != "distributed":
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
            if top in ("prefect", "prefect_ray"):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []
