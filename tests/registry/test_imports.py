"""The registry's modules form layers: no module imports one that imports it back.

Every import counts, at the top, inside a function or for type checking only,
so a cycle cannot hide behind a function-local import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gitml.registry

PACKAGE = "gitml.registry"
FOLDER = Path(gitml.registry.__file__).parent


def _imports(path: Path) -> set[str]:
    """The modules of the registry package that ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found.update(n for n in names if n.startswith(PACKAGE + ".") and n.count(".") == 2)
    return found


def test_no_registry_module_imports_one_that_imports_it_back() -> None:
    modules = {f"{PACKAGE}.{p.stem}": p for p in FOLDER.glob("*.py") if p.stem != "__init__"}
    graph = {name: _imports(path) & modules.keys() for name, path in modules.items()}
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        for target in sorted(graph[name]):
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif len(path) < len(graph):
                visit(target, [*path, target])

    for name in sorted(graph):
        visit(name, [name])
    assert cycles == []
