"""The shape of the code (DESIGN §2, issue 13): imports point one way.

Walks the import graph of `synccore` and `syncadmin` with the standard library's `ast` — imports at
module level and inside functions alike, ``from x import y`` counting as an import of the module
``x.y`` where y is one — and fails on an import cycle among production modules (migrations and
tests left out), on the engine or the mailbox backends importing the runtime or the console, on
the mailbox backends importing the ORM, on the runtime importing a backend's package rather than
the mailbox interface, and on a function-level import in the runtime's service module without a
comment saying why.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("synccore", "syncadmin")
SERVICE_MODULE = "synccore.runtime.service"


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    in_function: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def production_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).parts
            if "migrations" in parts or "tests" in parts:
                continue
            modules[_module_name(path)] = path
    return modules


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute name of what a (possibly relative) ``from … import`` reads from."""
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, path: Path) -> None:
        self.module, self.path = module, path
        self.depth = 0
        self.found: list[Import] = []

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _add(self, name: str, line: int) -> None:
        self.found.append(Import(self.module, name, line, self.depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve(self.module, self.path, node)
        known = production_modules()
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self._add(submodule if submodule in known else base, node.lineno)


@cache
def imports() -> tuple[Import, ...]:
    found: list[Import] = []
    for module, path in sorted(production_modules().items()):
        collector = _Collector(module, path)
        collector.visit(ast.parse(path.read_text(), filename=str(path)))
        found.extend(collector.found)
    return tuple(found)


def _within(name: str, *prefixes: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            following = next(edges, None)
            if following is not None:
                if following not in index:
                    index[following] = low[following] = len(index)
                    stack.append(following)
                    on_stack.add(following)
                    work.append((following, iter(sorted(graph[following]))))
                elif following in on_stack:
                    low[node] = min(low[node], index[following])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_walker_sees_module_and_function_level_imports_and_submodules_named_by_from():
    edges = {(i.importer, i.imported, i.in_function) for i in imports()}
    # `from synccore.runtime import scheduling` at module level; `from synccore.mailbox.ews import
    # EwsBackend` inside sync.connection.backend_for.
    assert ("synccore.tasks", "synccore.runtime.scheduling", False) in edges
    assert ("synccore.sync.connection", "synccore.mailbox.ews", True) in edges
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_production_modules():
    modules = production_modules()
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for found in imports():
        if found.imported in modules and found.imported != found.importer:
            graph[found.importer].add(found.imported)
    assert _cycles(graph) == []


def test_the_engine_and_the_mailbox_backends_never_import_the_runtime_or_the_console():
    wrong = [
        f"{i.importer}:{i.line} imports {i.imported}"
        for i in imports()
        if _within(i.importer, "synccore.sync", "synccore.mailbox")
        and _within(i.imported, "synccore.runtime", "syncadmin")
    ]
    assert wrong == []


def test_the_mailbox_backends_know_nothing_of_the_orm():
    wrong = [
        f"{i.importer}:{i.line} imports {i.imported}"
        for i in imports()
        if _within(i.importer, "synccore.mailbox") and _within(i.imported, "synccore.models", "django.db")
    ]
    assert wrong == []


def test_function_level_imports_in_the_runtime_service_module_say_why():
    lines = production_modules()[SERVICE_MODULE].read_text().splitlines()
    unexplained = [
        f"{SERVICE_MODULE}:{i.line} imports {i.imported}"
        for i in imports()
        if i.importer == SERVICE_MODULE
        and i.in_function
        and "#" not in lines[i.line - 1]
        and not lines[i.line - 2].strip().startswith("#")
    ]
    assert unexplained == []


def test_the_runtime_reaches_the_mailbox_through_the_interface_only():
    wrong = [
        f"{i.importer}:{i.line} imports {i.imported}"
        for i in imports()
        if _within(i.importer, "synccore.runtime")
        and _within(i.imported, "synccore.mailbox.ews", "synccore.mailbox.graph")
    ]
    assert wrong == []


# --- Size (issue 13): rooms small enough to read -----------------------------------------------

MAX_MODULE_LINES = 900
MAX_GRAPH_BACKEND_LINES = 700


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_no_module_of_synccore_is_over_900_lines():
    too_long = {
        module: _lines(path)
        for module, path in production_modules().items()
        if _within(module, "synccore") and _lines(path) > MAX_MODULE_LINES
    }
    assert too_long == {}


def test_the_graph_backends_module_is_under_700_lines():
    import synccore.mailbox.graph as graph

    module = graph.GraphBackend.__module__
    assert _lines(production_modules()[module]) < MAX_GRAPH_BACKEND_LINES
