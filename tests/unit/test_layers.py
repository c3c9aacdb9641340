"""The layering of the product packages, read from their imports (nothing is imported).

docs/architecture.md draws the layers: `models` is the pure domain, `sinks`
writes to Redis and Kafka, `streams` holds the runtimes, the dashboard and the
CLI, `datagen` and `benchmarks` are tools beside them.  These tests parse every
module with `ast` and check that the imports keep to that picture:

- `models` imports nothing of the other packages; `sinks` nothing of `streams`;
  `datagen` only `models`;
- the runtimes and the dashboard never reach the local broker code (the
  embedded Tansu and Apache Kafka starters), and the dashboard never reaches
  the worker, even through other modules;
- no module imports its importer: the import graph has no cycle.

An import inside a function is an edge like any other (it runs when the
function does).  An import under `if TYPE_CHECKING:` never runs; it is kept
for the layer rules (a type from a higher layer is a dependency too) but
counted apart for cycles (`TYPE_ONLY_CYCLES`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "streams", "sinks", "datagen", "benchmarks")

RUNTIMES = ("streams.pipeline", "streams.worker", "streams.faust_app", "streams.processing")
LOCAL_BROKERS = ("streams.embedded", "streams.apache_kafka")
WORKER_SIDE = ("streams.worker", "streams.pipeline", "streams.processing", "streams.runtime")

# Cycles made only by annotation imports (`if TYPE_CHECKING:`), which never
# run.  Each closes over a module whose type a lower module names in a
# signature; both are for the packages' owners to break (move the type down),
# and this list may only shrink.
TYPE_ONLY_CYCLES = {
    # The generator's steps take the `World` that datagen.world builds with them.
    frozenset(
        {
            "datagen.world",
            "datagen.accounts",
            "datagen.campaigns",
            "datagen.leads",
            "datagen.opportunities",
            "datagen.partner_side",
        }
    ),
}


@dataclass(frozen=True)
class Edge:
    """`importer` imports `imported` (a product module) at `line`."""

    importer: str
    imported: str
    line: int
    in_function: bool
    type_only: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every product module by dotted name."""
    return {
        module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }


def _imported(importer: str, path: Path, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The modules `node` imports: `from a import b` is module `a.b` when there is one."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:  # relative: resolve against the importer's package
        package = importer.split(".")
        if path.name != "__init__.py":
            package = package[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    for alias in node.names:
        name = f"{base}.{alias.name}"
        yield name if name in modules() else base


def _edges_of(importer: str, path: Path) -> Iterator[Edge]:
    def visit(node: ast.AST, in_function: bool, type_only: bool) -> Iterator[Edge]:
        for child in ast.iter_child_nodes(node):
            function = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            typing = type_only or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            )
            if isinstance(child, ast.Import | ast.ImportFrom):
                for name in _imported(importer, path, child):
                    if name.split(".")[0] in PACKAGES:
                        yield Edge(importer, name, child.lineno, function, typing)
            yield from visit(child, function, typing)

    yield from visit(ast.parse(path.read_text(encoding="utf-8")), False, False)


@cache
def edges() -> tuple[Edge, ...]:
    return tuple(edge for name, path in modules().items() for edge in _edges_of(name, path))


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    """`name` is one of the modules or packages `prefixes`, or inside one."""
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def reachable(start: str) -> dict[str, list[str]]:
    """Every product module `start` loads when it runs, with one import chain to it
    (imports inside functions included, annotation-only ones not)."""
    graph: dict[str, set[str]] = {}
    for edge in edges():
        if not edge.type_only:
            graph.setdefault(edge.importer, set()).add(edge.imported)
    chains = {start: [start]}
    todo = [start]
    while todo:
        current = todo.pop()
        for nxt in sorted(graph.get(current, ())):
            if nxt not in chains:
                chains[nxt] = [*chains[current], nxt]
                todo.append(nxt)
    return chains


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The graph's cycles, as its strongly connected components of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = {stack.pop()}
            while node not in component:
                component.add(stack.pop())
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def graph_of(include_type_only: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for edge in edges():
        if (include_type_only or not edge.type_only) and edge.importer != edge.imported:
            graph.setdefault(edge.importer, set()).add(edge.imported)
    return graph


# The one upward import: `partnerpulse bench` runs the benchmark (imported
# inside the command, so the CLI starts without it).
UPWARD_ALLOWED = {("streams.cli.bench", "benchmarks.bench")}


def test_the_parser_sees_imports_of_every_kind() -> None:
    """Guards the other tests against passing on an empty graph."""
    found = {(e.importer, e.imported, e.in_function, e.type_only) for e in edges()}
    assert ("streams.worker", "streams.pipeline", False, False) in found
    assert ("streams.state.subjects", "streams.state.codec", False, False) in found
    assert ("streams.runtime", "streams.faust_app", True, False) in found
    assert ("datagen.accounts", "datagen.world", False, True) in found


@pytest.mark.parametrize(
    ("importers", "forbidden"),
    [
        (("models",), ("streams", "sinks", "datagen", "benchmarks")),
        (("sinks",), ("streams", "datagen", "benchmarks")),
        (("datagen",), ("streams", "sinks", "benchmarks")),
        (("streams",), ("benchmarks",)),
    ],
)
def test_lower_layers_import_nothing_above_them(
    importers: tuple[str, ...], forbidden: tuple[str, ...]
) -> None:
    found = [
        f"{e.importer}:{e.line} imports {e.imported}"
        for e in edges()
        if within(e.importer, importers)
        and within(e.imported, forbidden)
        and (e.importer, e.imported) not in UPWARD_ALLOWED
    ]
    assert found == []


@pytest.mark.parametrize(
    "start",
    [
        *RUNTIMES,
        *sorted(name for name in modules() if within(name, ("streams.web",))),
    ],
)
def test_runtimes_and_dashboard_never_load_the_local_brokers(start: str) -> None:
    chains = reachable(start)
    assert [chains[m] for m in chains if within(m, LOCAL_BROKERS)] == []


@pytest.mark.parametrize(
    "start", sorted(name for name in modules() if within(name, ("streams.web",)))
)
def test_the_dashboard_never_loads_the_worker(start: str) -> None:
    chains = reachable(start)
    assert [chains[m] for m in chains if within(m, WORKER_SIDE)] == []


def test_no_module_imports_its_importer() -> None:
    assert strongly_connected(graph_of(include_type_only=False)) == []


def test_annotation_imports_add_no_new_cycle() -> None:
    assert set(strongly_connected(graph_of(include_type_only=True))) <= TYPE_ONLY_CYCLES
