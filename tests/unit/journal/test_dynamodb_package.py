"""The DynamoDB journal package's boundaries: what the operator imports loads neither the journal
nor its client, and the package's re-exports are the modules' own objects."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import threadweaver.adapters.journal.dynamodb as package

REPO = Path(__file__).resolve().parents[3]
PACKAGE = "threadweaver.adapters.journal.dynamodb"
HOT_PATH = {f"{PACKAGE}.{name}" for name in ("journal", "client", "codec", "cursor")}


def test_settings_and_tables_load_neither_the_journal_nor_its_client():
    code = (
        "import sys\n"
        f"import {PACKAGE}.settings, {PACKAGE}.tables\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        ).stdout.split()
    )
    assert {f"{PACKAGE}.settings", f"{PACKAGE}.tables"} <= loaded
    assert not loaded & HOT_PATH
    assert "aioboto3" not in loaded and "botocore" not in loaded  # loaded when a call is made


def test_the_operator_imports_only_settings_and_tables():
    imported: set[str] = set()
    for path in (REPO / "operator").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    journal = {m for m in imported if m.startswith("threadweaver.adapters.journal")}
    assert journal == {f"{PACKAGE}.settings", f"{PACKAGE}.tables"}


def test_re_exports_are_the_modules_objects():
    from threadweaver.adapters.journal.dynamodb import client, journal, settings, tables

    assert package.DynamoDBJournal is journal.DynamoDBJournal
    assert package.DynamoDBSettings is settings.DynamoDBSettings
    assert package.RetryPolicy is client.RetryPolicy
    assert package.SHARD_INDEX == tables.SHARD_INDEX
    for name in package.__all__:
        assert getattr(package, name) is not None, name
