"""The import rules of the code base: dependencies point one way and nothing runs in a circle.

Read from the source with `ast`, so a rule breaks here the moment an import is added, even
one inside a function. Imports under `if TYPE_CHECKING:` never run and are left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "parsers", "bench")
# The process's wiring: the HTTP side gets a `ServiceState`, never these.
WIRING = ("app.runtime", "app.ingest.writer")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the checked packages, by dotted name."""
    return {
        _module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }


def _imported(name: str, path: Path) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _executed(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            # `from app.x import y` may name the module app.x.y.
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _executed(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of `tree` except those under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in (child, *_executed(child)))
            continue
        yield node
        yield from _executed(node)


@cache
def imports() -> dict[str, frozenset[str]]:
    """The project modules each module imports (at any depth of its code)."""
    known = modules()
    return {
        name: frozenset(
            target for target in _imported(name, path) if target in known and target != name
        )
        for name, path in known.items()
    }


def reachable(start: str) -> set[str]:
    """Every project module that importing `start` may import, directly or further down."""
    graph, seen, todo = imports(), set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def _is_http_side(name: str) -> bool:
    return (
        name.startswith(("app.api.", "app.web."))
        or name.endswith(".endpoints")
        or name == "app.auth.deps"
    )


def test_the_rules_see_the_modules() -> None:
    graph = imports()
    assert "app.api.app" in graph and "app.runtime" in graph
    assert "app.api.deps" in graph["app.api.app"]
    assert "app.api.state" in graph["app.api.deps"], "relative imports must be resolved"


@pytest.mark.parametrize("name", sorted(n for n in modules() if _is_http_side(n)))
def test_the_http_side_never_imports_the_runtime_or_the_writer(name: str) -> None:
    wiring = reachable(name) & set(WIRING)
    assert not wiring, f"{name} imports {sorted(wiring)}: depend on app.api.deps.StateDep"


def test_parsers_import_nothing_of_the_service() -> None:
    offenders = {
        name: sorted(t for t in targets if t.startswith("app"))
        for name, targets in imports().items()
        if name.startswith("parsers")
    }
    assert not {name: found for name, found in offenders.items() if found}


def test_no_import_cycle() -> None:
    graph = imports()
    cycles = sorted(
        {_cycle(name, graph) for name in graph if name in reachable(name)} - {None},
        key=str,
    )
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles if c)


def _cycle(start: str, graph: dict[str, frozenset[str]]) -> tuple[str, ...] | None:
    """The shortest import cycle through `start`, rotated to begin at its smallest name."""
    paths: dict[str, tuple[str, ...]] = {start: (start,)}
    frontier = [start]
    while frontier:
        following = []
        for name in frontier:
            for target in sorted(graph[name]):
                if target == start:
                    cycle = paths[name]
                    turn = cycle.index(min(cycle))
                    return (*cycle[turn:], *cycle[:turn], min(cycle))
                if target not in paths:
                    paths[target] = (*paths[name], target)
                    following.append(target)
        frontier = following
    return None
