"""No import cycle inside ``hsimap/``: a walk over every module's import statements.

What counts as an edge ``a -> b``: any ``import`` / ``from ... import`` statement in module
``a`` that names module ``b`` of the package (absolute or relative; ``from pkg import name``
counts as an import of the submodule ``pkg.name`` when that is a module, else of ``pkg``),
wherever the statement stands: at module level *and* inside functions, methods and
``try``/``if`` blocks. A function-level import is an edge too, because a lazy import back
into the importer is still a cycle (it only moves the failure from import time to call
time, and the cycle used to be paid for with ``Any`` types). Not counted: imports under
``if TYPE_CHECKING:`` (never executed), and the implicit import of a parent package's
``__init__`` that Python performs before a submodule (otherwise every package that re-exports
its submodules would be a cycle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

Graph = dict[str, set[str]]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in ``body``, nested blocks included, TYPE_CHECKING skipped."""
    for node in body:
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _imports(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                yield from _imports([child])
            elif isinstance(child, ast.excepthandler):
                yield from _imports(child.body)


def _targets(node: ast.Import | ast.ImportFrom, current: str, is_package: bool,
             modules: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in modules}
    base = node.module or ""
    if node.level:
        package = current.split(".") if is_package else current.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    out = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.add(sub if sub in modules else base)
    return out & modules


def import_graph(package: Path) -> Graph:
    """``module -> modules of the package it imports`` for every ``.py`` under ``package``."""
    root = package.parent
    files = {module_name(p, root): p for p in sorted(package.rglob("*.py"))}
    names = set(files)
    graph: Graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[name] = set().union(*(_targets(n, name, is_package, names)
                                    for n in _imports(tree.body))) - {name}
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


# Cycles that exist now and are being removed (issue 16); this list only ever shrinks.
KNOWN_CYCLES: list[list[str]] = []


def test_hsimap_has_no_import_cycle() -> None:
    graph = import_graph(ROOT / "hsimap")
    assert len(graph) > 40 and sum(map(len, graph.values())) > 100  # the walk saw the package
    assert "hsimap.checkpoint" in graph["hsimap.training"]
    assert cycles(graph) == KNOWN_CYCLES, "import cycles (module -> ... -> itself) in hsimap/"


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


@pytest.mark.parametrize("b_text", [
    "from pkg.a import x\n",                      # module level
    "def f():\n    from pkg import a\n",          # lazy, inside a function
    "from . import a\n",                          # relative
    "try:\n    import pkg.a\nexcept ImportError:\n    pass\n",
])
def test_the_walk_finds_a_cycle(tmp_path: Path, b_text: str) -> None:
    pkg = _write(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "from pkg.b import y\nx = 1\n",
                            "pkg/b.py": b_text + "y = 2\n"})
    assert cycles(import_graph(pkg)) == [["pkg.a", "pkg.b"]]


def test_type_checking_imports_and_parent_packages_are_not_cycles(tmp_path: Path) -> None:
    pkg = _write(tmp_path, {
        "pkg/__init__.py": "from pkg.a import x\n",
        "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    from pkg.b import y\nx = 1\n",
        "pkg/b.py": "from pkg.a import x\ny = 2\n",
    })
    graph = import_graph(pkg)
    assert graph["pkg.b"] == {"pkg.a"} and graph["pkg.a"] == set()
    assert cycles(graph) == []
