"""A rebuild of the read model under steady load, as the members see it (the operator's side is
tests/unit/operator/test_operator_rebuild.py, the whole thing tests/e2e/operator/
test_operator_rebuild_e2e.py): two members over one SQLite journal, their read models on MariaDB
databases of their own (`tw_<random>`), led through the directive's stages by hand
(threadweaver.shards.readmodel). While commands flow and readers poll every thread through both
members, the new database is filled, caught up, handed over and switched to: no query fails, no
reader ever sees fewer messages than it saw before (on the same member or the other), the new
database ends equal to the journal and the old one is left as it was."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from urllib.parse import urlsplit

import pytest

from tests.support.waiting import eventually
from threadweaver.adapters.journal.sqlite import SqliteJournal
from threadweaver.adapters.readmodel import SqlReadModel
from threadweaver.adapters.readmodel.databases import open_database, with_database
from threadweaver.application.entities import EntityManager
from threadweaver.application.gateway import ForwardRefused, ShardUnavailable
from threadweaver.application.projector import Projector, ProjectorSettings
from threadweaver.application.read_model_switch import SwitchableReadModel
from threadweaver.application.sharding import Member, ShardingSettings
from threadweaver.domain import AddMessages, CreateThread, NewMessage, new_ulid
from threadweaver.shards import ReadModelDirective, ShardMap

SHARDS = 8
THREADS = 12
ADMIN = new_ulid()


class DirectPeers:
    def __init__(self) -> None:
        self.members: dict[str, Member] = {}

    async def forward(self, address, command):
        try:
            return await self.members[address].execute(command, forwarded=True)
        except ShardUnavailable as exc:
            raise ForwardRefused(str(exc)) from exc


@contextlib.contextmanager
def databases(services, count):
    """`count` database names `tw_<random>_<i>` on the test server (the first created), all
    dropped afterwards."""
    import pymysql

    u = urlsplit(services.mysql)
    names = [f"tw_{uuid.uuid4().hex[:10]}_{i}" for i in range(count)]

    def run(statement):
        conn = pymysql.connect(
            host=u.hostname, port=u.port or 3306, user=u.username, password=u.password or ""
        )
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    # the first exists; the others are created by their migration (threadweaver migrate)
    run(f"CREATE DATABASE `{names[0]}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    base = u._replace(scheme="mysql+aiomysql").geturl()
    try:
        yield base, names
    finally:
        for name in names:
            run(f"DROP DATABASE IF EXISTS `{name}`")


async def message_count(read_model, tid) -> int:
    messages = await read_model.list_messages(tid, ADMIN, 0, 10_000)
    return len(messages or [])


@pytest.mark.timeout(120)
async def test_a_rebuild_under_load_switches_without_a_failed_or_older_query(tmp_path, services):
    with databases(services, 2) as (base, (old_db, new_db)):
        for name in (old_db, new_db):  # the operator's migration Jobs
            schema = SqlReadModel(with_database(base, name))
            await schema.migrate()
            await schema.close()
        journal = SqliteJournal(tmp_path / "j.db", shards=SHARDS, synchronous="off")
        await journal.start()
        peers = DirectPeers()
        settings = ProjectorSettings(poll_interval=0.05)
        members: dict[str, Member] = {}
        proxies: dict[str, SwitchableReadModel] = {}
        for name in ("a", "b"):
            proxy = SwitchableReadModel(await open_database(base, old_db), old_db)
            proxies[name] = proxy
            members[name] = peers.members[name] = Member(
                ShardingSettings(member=name, address_template="{member}"),
                EntityManager(journal),
                journal,
                proxy,
                settings,
                peers=peers,
                open_read_model=lambda db: open_database(base, db),
            )
        try:
            smap = ShardMap.initial(SHARDS, ["a", "b"])
            for m in members.values():
                await m.apply_map(smap)
            a, b = members["a"], members["b"]

            threads = [new_ulid() for _ in range(THREADS)]
            sent = dict.fromkeys(threads, 0)
            for tid in threads:
                await a.execute(CreateThread(tid, ADMIN, "t", (ADMIN,), (), None, None, 1))

            stop = asyncio.Event()
            failures: list[str] = []
            regressions: list[str] = []

            async def write() -> None:
                i = 0
                while not stop.is_set():
                    tid = threads[i % THREADS]
                    member = (a, b)[i % 2]
                    await member.execute(AddMessages(tid, ADMIN, (NewMessage(new_ulid(), "m"),), 2))
                    sent[tid] += 1
                    i += 1
                    await asyncio.sleep(0.01)

            async def read(order: tuple[str, ...]) -> None:
                seen = dict.fromkeys(threads, 0)
                i = 0
                while not stop.is_set():
                    tid = threads[i % THREADS]
                    name = order[i % len(order)]
                    try:
                        count = await message_count(proxies[name], tid)
                    except Exception as exc:  # a failed query fails the test
                        failures.append(f"{name}: {type(exc).__name__}: {exc}")
                        count = seen[tid]
                    if count < seen[tid]:
                        regressions.append(f"{tid} on {name}: {count} after {seen[tid]}")
                    seen[tid] = max(seen[tid], count)
                    i += 1
                    await asyncio.sleep(0.005)

            tasks = [
                asyncio.create_task(write()),
                asyncio.create_task(read(("a",))),
                asyncio.create_task(read(("b",))),
                asyncio.create_task(read(("a", "b"))),  # alternating members
            ]
            try:
                await asyncio.sleep(0.5)

                # fill: what `threadweaver project` does, into the new database
                fill = Projector(journal, await open_database(base, new_db), 0, SHARDS, settings)
                directive = ReadModelDirective(old_db, target=new_db, stage="fill")
                for m in members.values():
                    await m.apply_read_model(directive)
                fill.start()
                await eventually(lambda: fill.caught_up_once, what="the fill caught up", timeout=30)
                await fill.stop()
                await fill.read_model.close()

                def reports():
                    return [m.status().read_model for m in members.values()]

                directive = ReadModelDirective(old_db, target=new_db, stage="catch-up")
                for m in members.values():
                    await m.apply_read_model(directive)
                await eventually(
                    lambda: all(r.caught_up == r.shards > 0 for r in reports()),
                    what="the shadow RMUs within a second",
                    timeout=30,
                )
                assert all(r.queries == old_db and r.rmus == old_db for r in reports())

                directive = ReadModelDirective(old_db, target=new_db, stage="handover")
                for m in members.values():
                    await m.apply_read_model(directive)
                await eventually(
                    lambda: all(r.handed_over for r in reports()),
                    what="both members handed over",
                    timeout=30,
                )
                assert all(r.queries == old_db and r.rmus == new_db for r in reports())

                directive = ReadModelDirective(new_db, previous=old_db, switch_at=time.time() + 0.3)
                for m in members.values():
                    await m.apply_read_model(directive)
                assert all(p.queries_database == old_db for p in proxies.values())
                await eventually(
                    lambda: all(p.queries_database == new_db for p in proxies.values()),
                    what="the queries on the new database",
                    timeout=5,
                )
                await asyncio.sleep(0.5)
            finally:
                stop.set()
                await asyncio.gather(*tasks)

            assert not failures, failures[:5]
            assert not regressions, regressions[:5]
            for m in members.values():
                for p in m.projectors.values():
                    await p.wait_caught_up(10)
            new = await open_database(base, new_db)
            old = await open_database(base, old_db)
            try:
                for tid in threads:
                    assert await message_count(new, tid) == sent[tid], tid
                # the old database is kept, with what it had when its RMUs stopped
                assert sum([await message_count(old, tid) for tid in threads]) > 0
            finally:
                await new.close()
                await old.close()
        finally:
            for m in members.values():
                await m.stop()
            for p in proxies.values():
                await p.close()
            await journal.close()
