"""Production backends for one test: fresh DynamoDB tables (unique prefix) in dynalite and a
fresh MariaDB database, migrated; removed afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from threadweaver.adapters.journal.dynamodb.settings import DynamoDBSettings
from threadweaver.adapters.journal.dynamodb.tables import create_tables, delete_tables

from .runtime_process import THREADWEAVER
from .services import ServiceURLs


@dataclass(frozen=True)
class ProductionBackends:
    journal_url: str  # dynamodb://...&table-prefix=...
    read_model_url: str  # mysql+aiomysql://.../tw_xxx
    dynamodb: DynamoDBSettings

    def serve_args(self) -> list[str]:
        return ["--journal", self.journal_url, "--read-model", self.read_model_url]


@contextlib.asynccontextmanager
async def production_backends(
    services: ServiceURLs, *, migrate: bool = True
) -> AsyncIterator[ProductionBackends]:
    prefix = f"tw-{uuid.uuid4().hex[:10]}"
    dynamo = replace(DynamoDBSettings.from_url(services.dynamodb, environ={}), table_prefix=prefix)
    await create_tables(dynamo, timeout=60)
    db = f"tw_{uuid.uuid4().hex[:10]}"
    engine = create_async_engine(services.mysql)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"CREATE DATABASE `{db}`"))
    await engine.dispose()
    read_model = services.mysql.rsplit("/", 1)[0] + "/" + db
    sep = "&" if "?" in services.dynamodb else "?"
    backends = ProductionBackends(
        f"{services.dynamodb}{sep}table-prefix={prefix}", read_model, dynamo
    )
    if migrate:
        await asyncio.to_thread(
            subprocess.run,
            [str(THREADWEAVER), "migrate", "--read-model", read_model],
            check=True,
            capture_output=True,
            timeout=120,
        )
    try:
        yield backends
    finally:
        await delete_tables(dynamo, wait=False)
        engine = create_async_engine(services.mysql)
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{db}`"))
        await engine.dispose()
