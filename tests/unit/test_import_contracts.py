"""The `allowed_imports` import-linter contract (tests/support/import_contracts.py) on small graphs
built in memory: what it lets through and what it reports."""

from __future__ import annotations

import grimp
import pytest

from tests.support.import_contracts import AllowedImportsContract

SESSION = {
    "root_packages": ["threadweaver", "threadweaver_operator"],
    "include_external_packages": "true",
}


def graph(*imports: tuple[str, str]) -> grimp.ImportGraph:
    """Internal modules with their parent packages, external ones squashed (as lint-imports
    builds them with include_external_packages); each import on line 3."""
    g = grimp.ImportGraph()
    for importer, imported in imports:
        for name in (importer, imported):
            parts = name.split(".")
            if parts[0] not in SESSION["root_packages"]:
                g.add_module(name, is_squashed=True)
                continue
            for i in range(1, len(parts) + 1):
                g.add_module(".".join(parts[:i]))
        g.add_import(
            importer=importer, imported=imported, line_number=3, line_contents=f"import {imported}"
        )
    return g


def check(g: grimp.ImportGraph, session: dict | None = None, **options: object):
    contract = AllowedImportsContract("c", session or SESSION, options)
    return contract.check(g, verbose=False)


def test_standard_library_and_own_package_only():
    g = graph(
        ("threadweaver.domain.thread", "threadweaver.domain.events"),
        ("threadweaver.domain.thread", "collections"),
        ("threadweaver.domain.thread", "__future__"),
        ("threadweaver.domain.events", "aiohttp"),
        ("threadweaver.domain.events", "threadweaver.shards"),
        ("threadweaver.shards", "json"),
    )
    options = {
        "source_modules": ["threadweaver.domain"],
        "allowed_modules": ["threadweaver.domain"],
        "allow_standard_library": "true",
    }
    result = check(g, **options)
    assert not result.kept
    assert [(i.importer, i.imported, i.line_numbers) for i in result.metadata["illegal"]] == [
        ("threadweaver.domain.events", "aiohttp", (3,)),
        ("threadweaver.domain.events", "threadweaver.shards", (3,)),
    ]
    options["source_modules"] = ["threadweaver.shards"]
    options["allowed_modules"] = ["threadweaver.shards"]
    assert check(g, **options).kept


def test_standard_library_is_refused_unless_allowed():
    g = graph(("threadweaver.domain", "json"))
    options = {"source_modules": ["threadweaver.domain"], "allowed_modules": []}
    assert not check(g, **options).kept
    assert check(g, **options, allow_standard_library="true").kept


def test_checked_packages_limit_what_is_checked_and_allowed_modules_may_not_exist_yet():
    g = graph(
        ("threadweaver_operator.handlers", "kopf"),
        ("threadweaver_operator.handlers", "threadweaver.shards.ranges"),
        ("threadweaver_operator.provisioning", "threadweaver.adapters.journal.dynamodb_tables"),
    )
    result = check(
        g,
        source_modules=["threadweaver_operator"],
        checked_packages=["threadweaver"],
        allowed_modules=["threadweaver.shards", "threadweaver.adapters.journal.dynamodb.tables"],
    )
    assert [(i.importer, i.imported) for i in result.metadata["illegal"]] == [
        ("threadweaver_operator.provisioning", "threadweaver.adapters.journal.dynamodb_tables")
    ]


def test_a_missing_source_module_or_a_graph_without_externals_is_an_error():
    g = graph(("threadweaver.domain", "json"))
    with pytest.raises(ValueError, match="does not exist"):
        check(g, source_modules=["threadweaver.domian"], allowed_modules=[])
    with pytest.raises(ValueError, match="include_external_packages"):
        check(
            g,
            {"root_packages": ["threadweaver"]},
            source_modules=["threadweaver.domain"],
            allowed_modules=[],
        )
