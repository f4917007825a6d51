"""The read model's edits, read markers, unread counts and keyset message pages, on both SQL
backends over real connections (SQLite file, MariaDB from hack/services.sh), and the migration of
a database of the previous schema revision (0001) to the head without losing its rows.

Events are the domain's, journalled as the entities would and projected as the projector does
(`thread_projection.project`), so the read model sees exactly what it sees in production.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from alembic import command

from tests.support.readmodel_fixtures import backend, projection, rm, url  # noqa: F401
from threadweaver.adapters.readmodel import ReadModelSettings, SqlReadModel
from threadweaver.adapters.readmodel.migrate import alembic_config, current_revision, head_revision
from threadweaver.application.ports import StoredEvent
from threadweaver.application.thread_projection import project
from threadweaver.domain import new_ulid
from threadweaver.domain.events import (
    AddedMessage,
    MessageEdited,
    MessagesAdded,
    MessagesRemoved,
    ReadMarkerMoved,
    ThreadCreated,
    event_to_payload,
)
from threadweaver.domain.ids import thread_persistence_id
from threadweaver.shards.hashing import shard_of

SHARDS = 16


class Stream:
    """Journals domain events as the entities do: seq per pid, shard by hash, rising offsets."""

    def __init__(self) -> None:
        self.seq: collections.Counter[str] = collections.Counter()
        self.offset = 1_000
        self.clock = 1_700_000_000_000

    def now(self) -> int:
        self.clock += 1_000
        return self.clock

    def emit(self, event: Any) -> StoredEvent:
        pid = thread_persistence_id(event.thread_id)
        self.seq[pid] += 1
        self.offset += 7
        return StoredEvent(
            pid,
            self.seq[pid],
            shard_of(pid, SHARDS),
            event.TYPE,
            event_to_payload(event),
            self.offset,
            self.offset,
            "test",
        )

    def create(self, tid: str, admin: str, *members: str) -> StoredEvent:
        return self.emit(ThreadCreated(tid, admin, self.now(), "chat", (admin,), members))

    def post(self, tid: str, sender: str, *texts: str) -> tuple[StoredEvent, list[str]]:
        ids = [new_ulid() for _ in texts]
        messages = tuple(AddedMessage(i, t, None, ()) for i, t in zip(ids, texts))
        return self.emit(MessagesAdded(tid, sender, self.now(), messages)), ids


async def apply(rm: SqlReadModel, projection: str, events: list[StoredEvent]) -> int:
    return (await rm.apply(projection, project(events))).applied


async def unread(rm: SqlReadModel, tid: str, account: str) -> int:
    view = await rm.get_thread(tid, account)
    assert view is not None
    listed = [v for v in await rm.list_threads(account, 0, 100) if v.id == tid]
    assert [v.unread_count for v in listed] == [view.unread_count]
    return view.unread_count


async def test_an_edit_changes_body_and_update_time(rm, projection):
    s = Stream()
    tid, admin, member = new_ulid(), new_ulid(), new_ulid()
    created = s.create(tid, admin, member)
    posted, (m1, _) = s.post(tid, member, "hello", "world")
    await apply(rm, projection, [created, posted])
    edited = s.emit(MessageEdited(tid, member, s.now(), m1, "hello, edited ✓"))
    assert await apply(rm, projection, [edited]) == 1
    at = edited.payload["occurredAt"]
    first, second = await rm.list_messages(tid, admin, 0, 10)
    assert (first.id, first.body, first.updated_at) == (m1, "hello, edited ✓", at)
    assert first.created_at == posted.payload["occurredAt"] < at
    assert (second.body, second.updated_at) == ("world", posted.payload["occurredAt"])
    assert (await rm.get_thread(tid, admin)).updated_at == at
    assert await apply(rm, projection, [edited]) == 0  # exactly once: replayed, skipped


async def test_unread_counts_follow_markers(rm, projection):
    s = Stream()
    tid, admin, member, other = new_ulid(), new_ulid(), new_ulid(), new_ulid()
    created = s.create(tid, admin, member, other)
    by_admin, (a1, a2) = s.post(tid, admin, "a1", "a2")
    by_member, (b1,) = s.post(tid, member, "b1")
    # the marker and the messages it names in one batch: the marker finds its message's row
    marker = s.emit(ReadMarkerMoved(tid, member, s.now(), a1))
    await apply(rm, projection, [created, by_admin, by_member, marker])
    # no marker: every live message of the others; own messages never count
    assert await unread(rm, tid, admin) == 1  # b1
    assert await unread(rm, tid, other) == 3
    assert await unread(rm, tid, member) == 1  # a2 (a1 read, b1 own)
    thread_time = (await rm.get_thread(tid, admin)).updated_at
    assert thread_time == by_member.payload["occurredAt"]  # the marker left it

    later, (a3, a4) = s.post(tid, admin, "a3", "a4")
    await apply(rm, projection, [later, s.emit(ReadMarkerMoved(tid, other, s.now(), b1))])
    assert await unread(rm, tid, member) == 3
    assert await unread(rm, tid, other) == 2  # a3, a4
    # removed messages are not unread; a marker on a removed message keeps its place
    marker = s.emit(ReadMarkerMoved(tid, member, s.now(), a3))
    removed = s.emit(MessagesRemoved(tid, admin, s.now(), (a2, a3)))
    await apply(rm, projection, [marker, removed])
    assert await unread(rm, tid, member) == 1  # a4
    assert await unread(rm, tid, other) == 1
    await apply(rm, projection, [s.emit(ReadMarkerMoved(tid, member, s.now(), a4))])
    assert await unread(rm, tid, member) == 0
    assert (await rm.get_thread(tid, admin)).updated_at == removed.payload["occurredAt"]


async def test_unread_counts_are_per_thread(rm, projection):
    s = Stream()
    t1, t2, admin, member = new_ulid(), new_ulid(), new_ulid(), new_ulid()
    events = [s.create(t1, admin, member), s.create(t2, admin, member)]
    p1, _ = s.post(t1, admin, "x", "y")
    p2, (z,) = s.post(t2, admin, "z")
    events += [p1, p2]
    await apply(rm, projection, [*events, s.emit(ReadMarkerMoved(t2, member, s.now(), z))])
    counts = {v.id: v.unread_count for v in await rm.list_threads(member, 0, 10)}
    assert counts == {t1: 2, t2: 0}


async def test_keyset_pages_are_stable_while_posting_and_removing(rm, projection):
    s = Stream()
    tid, admin = new_ulid(), new_ulid()
    created = s.create(tid, admin)
    posted, ids = s.post(tid, admin, *[f"m{i}" for i in range(7)])
    await apply(rm, projection, [created, posted])
    page = await rm.list_messages_page(tid, admin, None, 0, 3)
    assert [m.id for m in page.messages] == ids[:3]
    assert page.last_position is not None
    # a message removed before the cursor and one after it, and new messages posted
    more, new_ids = s.post(tid, admin, "n0", "n1")
    removed = s.emit(MessagesRemoved(tid, admin, s.now(), (ids[1], ids[4])))
    await apply(rm, projection, [more, removed])
    second = await rm.list_messages_page(tid, admin, page.last_position, 0, 3)
    assert [m.id for m in second.messages] == [ids[3], ids[5], ids[6]]
    third = await rm.list_messages_page(tid, admin, second.last_position, 0, 3)
    assert [m.id for m in third.messages] == new_ids
    assert third.last_position is None  # the end
    exact = await rm.list_messages_page(tid, admin, None, 0, 7)  # exactly the rest: the end
    assert len(exact.messages) == 7 and exact.last_position is None
    skipped = await rm.list_messages_page(tid, admin, page.last_position, 1, 2)
    assert [m.id for m in skipped.messages] == [ids[5], ids[6]]
    assert await rm.list_messages_page(tid, new_ulid(), None, 0, 3) is None  # not visible
    # the offset route's answers are the pages' messages
    assert (
        await rm.list_messages(tid, admin, 2, 3)
        == (await rm.list_messages_page(tid, admin, None, 2, 3)).messages
    )


# ---------------------------------------------------------------------------------------------
# migration from revision 0001
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_url(backend, tmp_path, services) -> Iterator[str]:
    """An empty database of its own (the module's MySQL database is migrated already)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    import pymysql

    u = urlsplit(services.mysql)
    name = f"tw_{uuid.uuid4().hex[:12]}"

    def run(sql: str) -> None:
        conn = pymysql.connect(
            host=u.hostname or "127.0.0.1",
            port=u.port or 3306,
            user=u.username or "",
            password=u.password or "",
            autocommit=True,
        )
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    run(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    try:
        yield u._replace(path=f"/{name}").geturl()
    finally:
        run(f"DROP DATABASE IF EXISTS `{name}`")


async def test_a_revision_0001_database_migrates_forward_keeping_its_rows(fresh_url, projection):
    old = SqlReadModel(ReadModelSettings(url=fresh_url))
    await old.start()
    try:
        async with old.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0001"))
            assert await conn.run_sync(current_revision) == "0001"
        s = Stream()
        tid, admin, member = new_ulid(), new_ulid(), new_ulid()
        created = s.create(tid, admin, member)
        posted, (m1, m2) = s.post(tid, member, "before", "the upgrade")
        assert await apply(old, projection, [created, posted]) == 2
        offsets = await old.load_offsets(projection, 0, SHARDS)
    finally:
        await old.close()

    new = SqlReadModel(ReadModelSettings(url=fresh_url))
    await new.start()
    try:
        await new.migrate()
        async with new.engine.connect() as conn:
            assert await conn.run_sync(current_revision) == head_revision() == "0002"
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert "thread_read_marker" in tables
        assert await new.load_offsets(projection, 0, SHARDS) == offsets
        assert [(m.id, m.body) for m in await new.list_messages(tid, admin, 0, 10)] == [
            (m1, "before"),
            (m2, "the upgrade"),
        ]
        assert await unread(new, tid, admin) == 2  # rows from before count as unread
        events = [
            s.emit(ReadMarkerMoved(tid, admin, s.now(), m1)),
            s.emit(MessageEdited(tid, member, s.now(), m2, "after the upgrade")),
        ]
        assert await apply(new, projection, events) == 2
        assert await unread(new, tid, admin) == 1
        assert (await new.list_messages(tid, admin, 1, 1))[0].body == "after the upgrade"
    finally:
        await new.close()
