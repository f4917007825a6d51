"""The modules of adapters/http import each other without a cycle, type-only (TYPE_CHECKING)
imports and imports inside functions included; the settings and the route table are leaves."""

import ast
from pathlib import Path

import threadweaver.adapters.http as package

PACKAGE = Path(package.__file__).parent
LEAVES = {"settings", "routes"}


def imports_within_package() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        module = path.stem
        graph[module] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.level != 1:
                continue
            if node.module:  # from .x import y
                graph[module].add(node.module.split(".")[0])
            else:  # from . import x
                graph[module].update(alias.name for alias in node.names)
    return graph


def test_the_package_has_no_import_cycle():
    graph = imports_within_package()
    assert {"app", "auth", "internal", "openapi", "routes", "settings"} <= set(graph)

    def visit(module: str, path: tuple[str, ...]) -> None:
        for imported in sorted(graph.get(module, ())):
            assert imported not in path, " -> ".join((*path, imported))
            visit(imported, (*path, imported))

    for module in graph:
        if module != "__init__":  # the package re-exports its modules
            visit(module, (module,))


def test_settings_and_routes_are_leaves():
    graph = imports_within_package()
    for leaf in LEAVES:
        assert graph[leaf] == set(), leaf
