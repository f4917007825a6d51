"""Fixtures for the suites that run against real servers (MariaDB and dynalite on 127.0.0.1).

The servers come from `hack/services.sh up` (idempotent, fast when they already run), unless
both THREADWEAVER_TEST_MYSQL_URL and THREADWEAVER_TEST_DYNAMODB_URL are set, in which case those
servers are used as they are. A service that cannot be reached FAILS the tests that need it,
with the reason: these suites are never skipped.

- `services`                  session: the two URLs, servers checked to accept connections.
- `dynamodb_settings`         per test: a unique table prefix with both tables created, deleted
                              afterwards.
- `dynamodb_tx_settings`      the same behind the TransactWriteItems emulator of
                              tests/support/transaction_emulator.py (dynalite has no
                              transactions), so the journal's transactional path runs for real.
- `open_journal`              a journal opener for the test module's `backend` fixture
                              (test_journal_contract.py).
- `mysql_database_url`        per module: a fresh database `tw_<random>`, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from tests.support.services import ServiceURLs, ensure_services
from tests.support.transaction_emulator import TransactionEmulator, running_emulator

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def services() -> ServiceURLs:
    """Both servers, started by hack/services.sh unless given by the environment."""
    return ensure_services()


# ---------------------------------------------------------------------------------------------
# DynamoDB
# ---------------------------------------------------------------------------------------------


def unique_prefix() -> str:
    return f"tw-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def dynamodb_base_settings(services: ServiceURLs):
    """Settings for the test server with a fresh, unique table prefix (no tables created)."""
    from threadweaver.adapters.journal.dynamodb.settings import DynamoDBSettings

    base = DynamoDBSettings.from_url(services.dynamodb, environ={})
    return replace(base, table_prefix=unique_prefix())


@contextlib.asynccontextmanager
async def temporary_tables(settings: Any) -> AsyncIterator[Any]:
    """Create the journal tables of `settings` for the block, delete them afterwards."""
    from threadweaver.adapters.journal.dynamodb.tables import create_tables, delete_tables

    try:
        await create_tables(settings, timeout=60)
    except Exception as exc:
        pytest.fail(f"cannot create DynamoDB tables at {settings.describe()}: {exc}", pytrace=False)
    try:
        yield settings
    finally:
        await delete_tables(settings, wait=False)


@pytest_asyncio.fixture
async def dynamodb_settings(dynamodb_base_settings) -> AsyncIterator[Any]:
    """A unique table prefix whose tables exist for this test and are deleted after it."""
    async with temporary_tables(dynamodb_base_settings) as settings:
        yield settings


@contextlib.asynccontextmanager
async def transaction_emulator(services: ServiceURLs) -> AsyncIterator[TransactionEmulator]:
    """tests/support/transaction_emulator.py in front of the test server."""
    from threadweaver.adapters.journal.dynamodb.settings import DynamoDBSettings

    upstream = DynamoDBSettings.from_url(services.dynamodb, environ={}).endpoint_url
    async with running_emulator(upstream) as emulator:
        yield emulator


@pytest_asyncio.fixture
async def dynamodb_tx_settings(dynamodb_settings, services) -> AsyncIterator[Any]:
    """`dynamodb_settings`, but reached through the TransactWriteItems emulator."""
    async with transaction_emulator(services) as emulator:
        yield replace(dynamodb_settings, endpoint_url=emulator.url)


@pytest.fixture
async def open_journal(backend: str, request: Any, tmp_path: Path) -> AsyncIterator[Any]:
    """`await open_journal(shards=16)`: a started journal of the test module's `backend`
    (``sqlite``: a file under tmp_path; ``dynamodb``: dynalite, batch-item mode; ``dynamodb-tx``:
    dynalite behind the transaction emulator) on this test's storage; every instance opened is
    closed at the end (the same storage can be opened again: reopen)."""
    opened: list[Any] = []
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            from threadweaver.adapters.journal.sqlite import SqliteJournal

            path = tmp_path / "journal.db"

            def make(shards: int) -> Any:
                return SqliteJournal(path, shards=shards, synchronous="normal")
        else:
            from threadweaver.adapters.journal.dynamodb import DynamoDBJournal

            settings = request.getfixturevalue("dynamodb_base_settings")
            await stack.enter_async_context(temporary_tables(settings))
            if backend == "dynamodb-tx":
                services = request.getfixturevalue("services")
                emulator = await stack.enter_async_context(transaction_emulator(services))
                settings = replace(settings, endpoint_url=emulator.url)

            def make(shards: int) -> Any:
                return DynamoDBJournal(settings, shards=shards)

        async def open_(shards: int = 16) -> Any:
            journal = make(shards)
            opened.append(journal)
            await journal.start()
            if backend != "sqlite":
                assert journal.transactions is (backend == "dynamodb-tx")
            return journal

        try:
            yield open_
        finally:
            for journal in opened:
                await journal.close()


@pytest.fixture(scope="session")
def dynamodb_tools() -> Any:
    """The context managers above, for fixtures that set up DynamoDB inside async code (test
    modules cannot import conftest): `tools.temporary_tables(settings)`,
    `tools.transaction_emulator(services)`."""
    import types

    return types.SimpleNamespace(
        temporary_tables=temporary_tables, transaction_emulator=transaction_emulator
    )


# ---------------------------------------------------------------------------------------------
# MySQL
# ---------------------------------------------------------------------------------------------


def _mysql_connect(url: str, database: str | None = None):
    import pymysql

    u = urlsplit(url)
    return pymysql.connect(
        host=u.hostname or "127.0.0.1",
        port=u.port or 3306,
        user=u.username or "",
        password=u.password or "",
        database=database,
        autocommit=True,
        connect_timeout=10,
    )


@pytest.fixture(scope="module")
def mysql_database_url(services: ServiceURLs) -> Any:
    """A fresh database `tw_<random>` for the module (the threadweaver user may create any
    `tw\\_%` database), dropped afterwards. Yields its SQLAlchemy URL."""
    name = f"tw_{uuid.uuid4().hex[:12]}"
    try:
        conn = _mysql_connect(services.mysql)
    except Exception as exc:
        pytest.fail(
            f"cannot connect to MySQL at {urlsplit(services.mysql).netloc.split('@')[-1]}: {exc}",
            pytrace=False,
        )
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
    finally:
        conn.close()
    u = urlsplit(services.mysql)
    yield u._replace(path=f"/{name}").geturl()
    conn = _mysql_connect(services.mysql)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()
