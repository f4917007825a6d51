"""What a member costs when nothing happens, and whether it still sees other writers: a real
`threadweaver serve` with 1,024 shards on dynalite behind the counting proxy
(tests/support/dynamo_fault_proxy.py) and MariaDB.

- idle, it makes at most 5 DynamoDB requests per second (the change-note poll and the backstop
  reads; docs/operations.md has the figures and their cost);
- an append by another writer (a journal instance of this test process, as another member or a
  previous owner of the shards would be) reaches its read model within seconds;
- two members sharing the journal under faults, each with a read model of its own: each read
  model converges to the whole journal (the other's appends come from its change notes).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from urllib.parse import urlsplit

import aiohttp
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.backends import production_backends
from tests.support.chat_load import Load, via
from tests.support.convergence import journaled_messages, read_model_converges
from tests.support.dynamo_fault_proxy import DynamoFaultProxy
from tests.support.runtime_process import THREADWEAVER, RuntimeProcess
from tests.support.services import ensure_services
from tests.support.waiting import eventually
from threadweaver.adapters.journal.dynamodb import DynamoDBJournal
from threadweaver.application.entities import EntityManager
from threadweaver.domain import AddMessages, CreateThread, NewMessage, new_ulid

SHARDS = 1024
IDLE_BUDGET = 5.0  # requests per second per member, at most
WINDOW = 10.0  # seconds measured


async def settled_rate(proxy: DynamoFaultProxy, window: float) -> float:
    """Requests per second over `window`, once the start-up catch-up is over (a second with
    fewer requests than the budget)."""

    async def quiet() -> bool:
        before = proxy.total()
        await asyncio.sleep(1.0)
        return proxy.total() - before <= IDLE_BUDGET

    await eventually(quiet, what="the catch-up at start to end", timeout=60, interval=0)
    before, t0 = proxy.total(), time.monotonic()
    counts = dict(proxy.requests)
    await asyncio.sleep(window)
    rate = (proxy.total() - before) / (time.monotonic() - t0)
    by_operation = {k: v - counts.get(k, 0) for k, v in proxy.requests.items()}
    print(f"\nidle, {SHARDS} shards: {rate:.2f} requests/s over {window:.0f}s: {by_operation}")
    return rate


async def test_an_idle_member_polls_little_and_still_notices_another_writer(tmp_path):
    services = ensure_services()
    async with production_backends(services) as backends:
        proxy = DynamoFaultProxy("http://" + urlsplit(backends.journal_url).netloc).start()
        server = RuntimeProcess(
            tmp_path,
            name="idle",
            args=["--journal", via(proxy, backends), "--read-model", backends.read_model_url]
            + ["--shards", str(SHARDS)],
        ).start(timeout=60)
        try:
            rate = await settled_rate(proxy, WINDOW)
            assert rate <= IDLE_BUDGET, f"{rate:.1f} requests/s idle"

            other = DynamoDBJournal(backends.dynamodb, shards=SHARDS)  # not through the proxy
            await other.start()
            try:
                entities = EntityManager(other, writer="another-writer")
                tid, admin, message = new_ulid(), new_ulid(), new_ulid()
                await entities.execute(CreateThread(tid, admin, "t", (admin,), (), None, None, 1))
                await entities.execute(AddMessages(tid, admin, (NewMessage(message, "hi"),), 2))
                t0 = time.monotonic()
            finally:
                await other.close()
            took = await read_model_converges(backends.read_model_url, {tid: [message]}, 10)
            print(f"another writer's append projected {time.monotonic() - t0:.2f}s after it")
            assert took < 5
        finally:
            assert server.stop() == 0, server.log_tail()
            proxy.close()


async def second_read_model(services) -> tuple[str, str]:
    """A fresh, migrated MariaDB database: (url, name)."""
    name = f"tw_{uuid.uuid4().hex[:10]}"
    engine = create_async_engine(services.mysql)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"CREATE DATABASE `{name}`"))
    await engine.dispose()
    url = services.mysql.rsplit("/", 1)[0] + "/" + name
    await asyncio.to_thread(
        subprocess.run,
        [str(THREADWEAVER), "migrate", "--read-model", url],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return url, name


async def drop_database(services, name: str) -> None:
    engine = create_async_engine(services.mysql)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
    await engine.dispose()


async def test_two_members_sharing_the_journal_each_converge_to_all_of_it(tmp_path):
    services = ensure_services()
    async with production_backends(services) as backends:
        other_model, other_db = await second_read_model(services)
        proxy = DynamoFaultProxy("http://" + urlsplit(backends.journal_url).netloc).start()
        members = [
            RuntimeProcess(
                tmp_path / name,
                name=name,
                args=["--journal", via(proxy, backends), "--read-model", model]
                + ["--shards", str(SHARDS)],
            ).start(timeout=60)
            for name, model in (("one", backends.read_model_url), ("two", other_model))
        ]
        try:
            loads = [Load(m.url) for m in members]
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                for load in loads:
                    await load.create(http, 8)
                proxy.set(delay=0.3, delay_seconds=0.05, reorder=0.2, drop_after=0.05)
                await asyncio.gather(*(load.post_everywhere(http, 8) for load in loads))
                proxy.calm()
            journal = DynamoDBJournal(backends.dynamodb, shards=SHARDS)
            await journal.start()
            try:
                threads = [t for load in loads for t in load.threads]
                journaled = await journaled_messages(journal, threads)
            finally:
                await journal.close()
            for load in loads:
                for tid, ids in load.acked.items():
                    assert set(ids) <= set(journaled[tid])
            for model in (backends.read_model_url, other_model):
                await read_model_converges(model, journaled, 5.0)
        finally:
            for member in members:
                assert member.stop() == 0, member.log_tail()
            proxy.close()
            await drop_database(services, other_db)
