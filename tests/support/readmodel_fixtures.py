"""The fixtures the read-model contract suites share: each test runs against both backends
(SQLite in a temporary file, MySQL/MariaDB in the module's database), on a migrated
`SqlReadModel`, under a projection name of its own (MySQL tests of a module share one database).

A suite imports them (`from tests.support.readmodel_fixtures import backend, projection, rm, url`)
so that pytest finds them in its namespace."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from threadweaver.adapters.readmodel import ReadModelSettings, SqlReadModel
from threadweaver.domain import new_ulid

BACKENDS = ["sqlite", "mysql"]
_projection_names = itertools.count()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def url(backend, request, tmp_path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'readmodel.db'}"
    return request.getfixturevalue("mysql_database_url")


@pytest.fixture
async def rm(url) -> Any:
    model = SqlReadModel(ReadModelSettings(url=url))
    await model.start()
    await model.migrate()
    yield model
    await model.close()


@pytest.fixture
def projection(request) -> str:
    """A projection name of its own per test, prefixed with the suite's module name."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    return f"{module}-{next(_projection_names)}-{new_ulid()[-6:]}"
