"""The shape of the package, checked from its source: packages import each other
without cycles, only the store talks to dulwich, and ``import gitml`` stays cheap."""

from __future__ import annotations

import ast
import itertools
import json
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gitml"


@dataclass(frozen=True)
class Import:
    """One import statement: where it is and the module it names."""

    path: Path
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} imports {self.target}"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, name: str, known: dict[str, Path]) -> list[Import]:
    """Every import in module ``name``, wherever it sits: top level, inside functions,
    under ``if TYPE_CHECKING:`` (a type-only import still ties the packages)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # ``from gitml import projects`` imports the subpackage, not the root.
                sub = f"{base}.{alias.name}"
                found.append(Import(path, node.lineno, sub if sub in known else base))
    return found


def unit(module: str) -> str | None:
    """The node of the graph a module belongs to: its subpackage of gitml (gitml.git,
    gitml.tracking, ...), or the module itself when it sits at the top level."""
    parts = module.split(".")
    if parts[0] != "gitml":
        return None
    return ".".join(parts[:2])


Graph = dict[str, dict[str, list[Import]]]


def package_graph() -> Graph:
    """unit -> imported unit -> the import statements that make that edge."""
    known = modules()
    graph: dict[str, dict[str, list[Import]]] = defaultdict(lambda: defaultdict(list))
    for name, path in known.items():
        source = unit(name)
        assert source is not None
        for found in imports(path, module_name(path), known):
            target = unit(found.target)
            if target is not None and target != source and found not in graph[source][target]:
                graph[source][target].append(found)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one unit (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, {})):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def shortest_loop(graph: Graph, start: str, within: set[str]) -> list[str]:
    """The shortest path from ``start`` back to itself through units of ``within``."""
    paths = {start: [start]}
    queue = [start]
    for node in queue:
        for successor in sorted(graph.get(node, {})):
            if successor == start:
                return [*paths[node], start]
            if successor in within and successor not in paths:
                paths[successor] = [*paths[node], successor]
                queue.append(successor)
    raise AssertionError(f"{start} is on no loop")


def describe(graph: Graph, component: list[str]) -> str:
    """Each unit's shortest loop, every edge with the imports that make it."""
    lines = [f"{len(component)} packages tied together: {', '.join(component)}"]
    seen: set[tuple[str, ...]] = set()
    for start in component:
        loop = shortest_loop(graph, start, set(component))
        turn = loop.index(min(loop[:-1]))
        key = tuple(loop[turn:-1] + loop[:turn])
        if key in seen:
            continue
        seen.add(key)
        lines.append("  " + " -> ".join(loop))
        for source, target in itertools.pairwise(loop):
            sites = graph[source][target]
            lines += [f"    {site}" for site in sites[:3]]
            if len(sites) > 3:
                lines.append(f"    ... and {len(sites) - 3} more imports of {target}")
    return "\n".join(lines)


def test_the_graph_sees_function_local_and_type_checking_imports(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from gitml.registry.versions import Registry\n"
        "def f():\n"
        "    import gitml.serving.scoring\n"
        "    from gitml import projects, Client\n"
        "    from ..registry import versions\n"
    )
    found = [(i.line, i.target) for i in imports(source, "gitml.tracking.probe", modules())]
    assert (3, "gitml.registry.versions") in found
    assert (5, "gitml.serving.scoring") in found
    assert (6, "gitml.projects") in found and (6, "gitml") in found
    assert (7, "gitml.registry.versions") in found


def test_the_cycle_finder_reports_each_loop_with_its_imports() -> None:
    a_b = Import(PACKAGE / "a.py", 3, "gitml.b.x")
    b_a = Import(PACKAGE / "b" / "x.py", 7, "gitml.a")
    graph: Graph = {
        "gitml.a": {"gitml.b": [a_b]},
        "gitml.b": {"gitml.a": [b_a], "gitml.c": []},
        "gitml.c": {},
    }
    assert cycles(graph) == [["gitml.a", "gitml.b"]]
    assert describe(graph, ["gitml.a", "gitml.b"]).splitlines() == [
        "2 packages tied together: gitml.a, gitml.b",
        "  gitml.a -> gitml.b -> gitml.a",
        "    gitml/a.py:3 imports gitml.b.x",
        "    gitml/b/x.py:7 imports gitml.a",
    ]


def test_packages_import_each_other_without_cycles() -> None:
    graph = package_graph()
    found = cycles(graph)
    assert found == [], "import cycles between packages:\n" + "\n".join(
        describe(graph, component) for component in found
    )


def test_only_the_store_imports_dulwich() -> None:
    known = modules()
    users = [
        str(found)
        for path in known.values()
        for found in imports(path, module_name(path), known)
        if found.target.split(".")[0] == "dulwich"
    ]
    assert users, "the store no longer imports dulwich: this check would pass vacuously"
    assert {u.split(":")[0] for u in users} == {"gitml/git/store.py"}, users


def test_import_gitml_loads_no_heavy_dependency() -> None:
    # Scripts and every CLI start import gitml: dulwich, pydantic, YAML, JSON
    # Schema and click load on first use of what needs them, not before.
    code = (
        "import json, sys, gitml; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('dulwich', 'pydantic', 'yaml', 'jsonschema', 'click'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []
