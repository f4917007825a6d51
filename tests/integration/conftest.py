"""Fixtures for the suites that run against real servers (MariaDB and dynalite on 127.0.0.1).

The servers come from `hack/services.sh up` (idempotent, fast when they already run), unless
both THREADWEAVER_TEST_MYSQL_URL and THREADWEAVER_TEST_DYNAMODB_URL are set, in which case those
servers are used as they are. A service that cannot be reached FAILS the tests that need it,
with the reason: these suites are never skipped.

- `services`                  session: the two URLs, servers checked to accept connections.
- `dynamodb_settings`         per test: a unique table prefix with both tables created, deleted
                              afterwards.
- `dynamodb_tx_settings`      the same behind a small TransactWriteItems shim (dynalite has no
                              transactions), so the journal's transactional path runs for real.
- `mysql_database_url`        per module: a fresh database `tw_<random>`, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from tests.support.services import ServiceURLs, ensure_services

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


class TransactionShim:
    """An HTTP front for dynalite that adds TransactWriteItems the way DynamoDB answers it
    (condition checked on every item, all or nothing, TransactionCanceledException with
    CancellationReasons, ClientRequestToken idempotency). Writes are serialised by one lock, so
    a transaction is atomic with respect to every other write that goes through the shim.
    Conditions supported: attribute_not_exists(x) and none. Test use only."""

    WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.lock = asyncio.Lock()
        self.tokens: set[str] = set()
        self.key_names: dict[str, list[str]] = {}
        self.transactions = 0
        self.url = ""
        self._runner: Any = None
        self._session: Any = None

    async def start(self) -> None:
        import aiohttp
        from aiohttp import web

        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _upstream(self, op: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"DynamoDB_20120810.{op}",
            "X-Amz-Date": "20240101T000000Z",
            "Authorization": "AWS4-HMAC-SHA256 Credential=shim/20240101/us-east-1/dynamodb/"
            "aws4_request, SignedHeaders=host, Signature=0",
        }
        async with self._session.post(self.upstream + "/", data=body, headers=headers) as resp:
            data = await resp.read()
            keep = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() in ("x-amzn-requestid", "x-amz-crc32")
            }
            return resp.status, data, keep

    async def _call(self, op: str, payload: dict[str, Any]) -> dict[str, Any]:
        status, data, _ = await self._upstream(op, json.dumps(payload).encode())
        if status != 200:
            raise RuntimeError(f"upstream {op}: {status} {data[:300]!r}")
        return json.loads(data)

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        op = request.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
        body = await request.read()
        if op == "TransactWriteItems":
            async with self.lock:
                status, payload = await self._transact(json.loads(body))
            return web.Response(
                status=status,
                body=json.dumps(payload).encode(),
                content_type="application/x-amz-json-1.0",
            )
        if op in self.WRITES:
            async with self.lock:
                status, data, headers = await self._upstream(op, body)
        else:
            status, data, headers = await self._upstream(op, body)
        return web.Response(
            status=status, body=data, headers=headers, content_type="application/x-amz-json-1.0"
        )

    async def _keys(self, table: str) -> list[str]:
        if table not in self.key_names:
            desc = await self._call("DescribeTable", {"TableName": table})
            self.key_names[table] = [k["AttributeName"] for k in desc["Table"]["KeySchema"]]
        return self.key_names[table]

    async def _transact(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        token = req.get("ClientRequestToken")
        if token and token in self.tokens:
            return 200, {}
        items = req.get("TransactItems") or []
        plan: list[tuple[str, dict[str, Any]]] = []
        reasons: list[dict[str, str]] = []
        for entry in items:
            ((kind, spec),) = entry.items()
            table = spec["TableName"]
            names = await self._keys(table)
            source = spec["Item"] if kind == "Put" else spec["Key"]
            key = {n: source[n] for n in names}
            condition = (spec.get("ConditionExpression") or "").strip()
            if condition and not condition.startswith("attribute_not_exists("):
                return 400, {
                    "__type": "com.amazon.coral.validate#ValidationException",
                    "message": f"shim supports attribute_not_exists only: {condition}",
                }
            failed = False
            if condition:
                got = await self._call(
                    "GetItem", {"TableName": table, "Key": key, "ConsistentRead": True}
                )
                failed = "Item" in got
            reasons.append(
                {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
                if failed
                else {"Code": "None"}
            )
            plan.append((kind, spec))
        if any(r["Code"] != "None" for r in reasons):
            codes = ", ".join(r["Code"] for r in reasons)
            return 400, {
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "Message": "Transaction cancelled, please refer cancellation reasons for "
                f"specific reasons [{codes}]",
                "CancellationReasons": reasons,
            }
        for kind, spec in plan:
            if kind == "Put":
                await self._call("PutItem", {"TableName": spec["TableName"], "Item": spec["Item"]})
            elif kind == "Delete":
                await self._call("DeleteItem", {"TableName": spec["TableName"], "Key": spec["Key"]})
            elif kind == "Update":
                args = {k: v for k, v in spec.items() if k != "ConditionExpression"}
                await self._call("UpdateItem", args)
        if token:
            self.tokens.add(token)
        self.transactions += 1
        return 200, {}


@contextlib.asynccontextmanager
async def running_shim(services: ServiceURLs) -> AsyncIterator[TransactionShim]:
    from threadweaver.adapters.journal.dynamodb.settings import DynamoDBSettings

    upstream = DynamoDBSettings.from_url(services.dynamodb, environ={}).endpoint_url
    shim = TransactionShim(upstream)
    await shim.start()
    try:
        yield shim
    finally:
        await shim.close()


@pytest_asyncio.fixture
async def transaction_shim(services: ServiceURLs) -> AsyncIterator[TransactionShim]:
    async with running_shim(services) as shim:
        yield shim


@pytest_asyncio.fixture
async def dynamodb_tx_settings(dynamodb_settings, transaction_shim) -> Any:
    """`dynamodb_settings`, but reached through the TransactWriteItems shim."""
    return replace(dynamodb_settings, endpoint_url=transaction_shim.url)


@pytest.fixture(scope="session")
def dynamodb_tools() -> Any:
    """The context managers above, for fixtures that set up DynamoDB inside async code (test
    modules cannot import conftest): `tools.temporary_tables(settings)`,
    `tools.running_shim(services)`."""
    import types

    return types.SimpleNamespace(temporary_tables=temporary_tables, running_shim=running_shim)


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
