"""The ReadModel port's contract on both SQL backends over real connections: SQLite (a file) and
MySQL (MariaDB from hack/services.sh, one fresh database per module).

Events are built from the domain's own event classes and payload encoder, so what the read
model projects is exactly what the aggregates journal; they reach the read model as the
projector hands them over, as row operations (`thread_projection.project`).
"""

from __future__ import annotations

import collections
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support.readmodel_fixtures import backend, projection, rm, url  # noqa: F401
from threadweaver.adapters.readmodel import ReadModelSettings, SqlReadModel
from threadweaver.adapters.readmodel.migrate import current_revision, head_revision
from threadweaver.application.ports import ApplyResult, ReadModel, StoredEvent
from threadweaver.application.row_operations import ProjectedEvent
from threadweaver.application.thread_projection import project
from threadweaver.domain import new_ulid
from threadweaver.domain.events import (
    AddedMessage,
    AdministratorIdsJoined,
    AdministratorIdsLeft,
    MemberIdsJoined,
    MemberIdsLeft,
    MessagesAdded,
    MessagesRemoved,
    ThreadCreated,
    ThreadDestroyed,
    event_to_payload,
)
from threadweaver.domain.ids import thread_persistence_id
from threadweaver.shards.hashing import shard_of

SHARDS = 16


class Stream:
    """Journals domain events the way the entity layer does: seq per pid, shard by hash, and an
    offset per event that increases (as the journal's would)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.seq: collections.Counter[str] = collections.Counter()
        self.offset = 1_000
        self.clock = start_ms

    def now(self) -> int:
        self.clock += 1_000
        return self.clock

    def emit(self, event: Any) -> StoredEvent:
        pid = thread_persistence_id(event.thread_id)
        self.seq[pid] += 1
        self.offset += 7
        return StoredEvent(
            pid=pid,
            seq=self.seq[pid],
            shard=shard_of(pid, SHARDS),
            type=event.TYPE,
            payload=event_to_payload(event),
            ts=self.offset,
            offset=self.offset,
            writer="test",
        )

    # shorthand builders -----------------------------------------------------------------
    def create(
        self,
        tid: str,
        creator: str,
        *,
        admins: tuple[str, ...] = (),
        members: tuple[str, ...] = (),
        title: str = "title",
        parent: str | None = None,
        remarks: str | None = None,
    ) -> StoredEvent:
        return self.emit(
            ThreadCreated(
                tid, creator, self.now(), title, (creator, *admins), members, parent, remarks
            )
        )

    def messages(
        self, tid: str, sender: str, *texts: str, reply: str | None = None
    ) -> tuple[StoredEvent, list[str]]:
        ids = [new_ulid() for _ in texts]
        msgs = tuple(AddedMessage(i, t, reply, ()) for i, t in zip(ids, texts))
        return self.emit(MessagesAdded(tid, sender, self.now(), msgs)), ids


async def apply(rm: SqlReadModel, projection: str, events: list[StoredEvent]) -> ApplyResult:
    """What the projector does with a batch read from the journal."""
    return await rm.apply(projection, project(events))


def ulids(n: int) -> list[str]:
    return [new_ulid() for _ in range(n)]


# ---------------------------------------------------------------------------------------------
# schema
# ---------------------------------------------------------------------------------------------


async def test_is_a_read_model(rm):
    assert isinstance(rm, SqlReadModel)
    for name in ReadModel.__dict__:
        if not name.startswith("_") and callable(getattr(ReadModel, name, None)):
            assert callable(getattr(rm, name)), name


async def test_migrate_is_idempotent(rm, url):
    await rm.migrate()
    await rm.migrate()
    async with rm.engine.connect() as conn:
        assert await conn.run_sync(current_revision) == head_revision()
        tables = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    assert {
        "thread",
        "thread_administrator_ids",
        "thread_member_ids",
        "thread_message",
        "projection_offset",
        "alembic_version",
    } <= tables
    # a second instance on the same database migrates to the same place without error
    other = SqlReadModel(ReadModelSettings(url=url))
    try:
        await other.migrate()
        await other.ping()
    finally:
        await other.close()


async def test_ping(rm):
    await rm.ping()


# ---------------------------------------------------------------------------------------------
# projection of the eight event types
# ---------------------------------------------------------------------------------------------


async def test_projects_all_eight_event_types(rm, projection):
    s = Stream()
    tid, parent = new_ulid(), new_ulid()
    creator, admin2, member1, member2, stranger = ulids(5)
    created = s.create(
        tid, creator, members=(member1,), title="Tea ☕", parent=parent, remarks="notes"
    )
    result = await apply(rm, projection, [created])
    assert (result.applied, result.skipped, result.stalled) == (1, 0, {})
    assert result.offsets == {created.shard: created.offset}

    view = await rm.get_thread(tid, creator)
    assert view is not None
    assert (view.id, view.creator_id, view.parent_thread_id, view.title, view.remarks) == (
        tid,
        creator,
        parent,
        "Tea ☕",
        "notes",
    )
    assert view.created_at == view.updated_at == created.payload["occurredAt"]
    assert await rm.get_thread(tid, member1) == view  # members see it too
    assert await rm.get_thread(tid, stranger) is None
    assert await rm.list_administrator_ids(tid, creator, 0, 100) == [creator]
    assert await rm.list_member_ids(tid, creator, 0, 100) == [member1]

    batch = [
        s.emit(AdministratorIdsJoined(tid, creator, s.now(), (admin2,))),
        s.emit(MemberIdsJoined(tid, admin2, s.now(), (member2,))),
    ]
    added, (m1, m2) = s.messages(tid, member1, "hello", "world")
    batch.append(added)
    reply, (m3,) = s.messages(tid, admin2, "re: hello", reply=m1)
    batch.append(reply)
    result = await apply(rm, projection, batch)
    assert result.applied == 4
    assert await rm.list_administrator_ids(tid, admin2, 0, 100) == [creator, admin2]
    assert await rm.list_member_ids(tid, member2, 0, 100) == [member1, member2]
    msgs = await rm.list_messages(tid, member2, 0, 100)
    assert [(m.id, m.sender_id, m.body, m.reply_message_id, m.type) for m in msgs] == [
        (m1, member1, "hello", None, "text"),
        (m2, member1, "world", None, "text"),
        (m3, admin2, "re: hello", m1, "text"),
    ]
    assert all(m.thread_id == tid for m in msgs)
    assert msgs[0].created_at == added.payload["occurredAt"]
    assert (await rm.get_thread(tid, creator)).updated_at == reply.payload["occurredAt"]

    batch = [
        s.emit(MessagesRemoved(tid, member1, s.now(), (m1,))),
        s.emit(AdministratorIdsLeft(tid, creator, s.now(), (admin2,))),
        s.emit(MemberIdsLeft(tid, creator, s.now(), (member1,))),
    ]
    assert (await apply(rm, projection, batch)).applied == 3
    assert [m.id for m in await rm.list_messages(tid, creator, 0, 100)] == [m2, m3]
    assert await rm.list_administrator_ids(tid, creator, 0, 100) == [creator]
    assert await rm.list_member_ids(tid, creator, 0, 100) == [member2]
    assert await rm.get_thread(tid, admin2) is None  # left: no longer visible
    assert await rm.get_thread(tid, member1) is None
    assert await rm.list_messages(tid, member1, 0, 100) is None

    destroyed = s.emit(ThreadDestroyed(tid, creator, s.now()))
    assert (await apply(rm, projection, [destroyed])).applied == 1
    assert await rm.get_thread(tid, creator) is None
    assert await rm.list_threads(creator, 0, 100) == []
    assert await rm.list_threads(member2, 0, 100) == []
    assert await rm.list_administrator_ids(tid, creator, 0, 100) is None
    assert await rm.list_member_ids(tid, member2, 0, 100) is None
    assert await rm.list_messages(tid, creator, 0, 100) is None


async def test_unknown_thread_is_invisible(rm):
    tid, account = new_ulid(), new_ulid()
    assert await rm.get_thread(tid, account) is None
    assert await rm.list_administrator_ids(tid, account, 0, 10) is None
    assert await rm.list_member_ids(tid, account, 0, 10) is None
    assert await rm.list_messages(tid, account, 0, 10) is None
    assert await rm.list_threads(account, 0, 10) == []


# ---------------------------------------------------------------------------------------------
# exactly once
# ---------------------------------------------------------------------------------------------


async def _snapshot(rm: SqlReadModel, tid: str, account: str) -> tuple:
    return (
        await rm.get_thread(tid, account),
        await rm.list_administrator_ids(tid, account, 0, 1000),
        await rm.list_member_ids(tid, account, 0, 1000),
        await rm.list_messages(tid, account, 0, 1000),
    )


async def test_reapplying_a_batch_changes_nothing(rm, projection):
    s = Stream()
    tid = new_ulid()
    creator, member = ulids(2)
    batch = [s.create(tid, creator, members=(member,))]
    for i in range(3):
        batch.append(s.messages(tid, creator, f"m{i}", f"n{i}")[0])
    batch.append(s.emit(MemberIdsJoined(tid, creator, s.now(), (new_ulid(),))))
    first = await apply(rm, projection, batch)
    assert (first.applied, first.skipped) == (5, 0)
    before = await _snapshot(rm, tid, creator)
    offsets = await rm.load_offsets(projection, 0, SHARDS)

    again = await apply(rm, projection, batch)
    assert (again.applied, again.skipped, again.stalled) == (0, 5, {})
    assert await _snapshot(rm, tid, creator) == before
    assert await rm.load_offsets(projection, 0, SHARDS) == offsets

    # an overlapping re-read (the backtracking window) applies only what is new
    newer = s.messages(tid, member, "late")[0]
    overlap = await apply(rm, projection, batch[2:] + [newer])
    assert (overlap.applied, overlap.skipped) == (1, 3)
    msgs = await rm.list_messages(tid, creator, 0, 1000)
    assert [m.body for m in msgs] == ["m0", "n0", "m1", "n1", "m2", "n2", "late"]
    assert len({m.id for m in msgs}) == 7


async def test_a_failing_batch_commits_nothing(rm, projection):
    s = Stream()
    tid, creator = new_ulid(), new_ulid()
    good = s.create(tid, creator)
    added, (mid,) = s.messages(tid, creator, "once")
    # the database refuses the rows of the third event (a message id that exists): the rows of
    # the first two were written in the same transaction
    bad = s.emit(MessagesAdded(tid, creator, s.now(), (AddedMessage(mid, "twice", None, ()),)))
    with pytest.raises(sa.exc.IntegrityError):
        await apply(rm, projection, [good, added, bad])
    assert await rm.get_thread(tid, creator) is None  # rows rolled back ...
    assert await rm.load_offsets(projection, 0, SHARDS) == {}  # ... with the offsets
    assert (await apply(rm, projection, [good])).applied == 1


async def test_an_event_that_cannot_be_decoded_is_refused_before_the_read_model(rm, projection):
    s = Stream()
    tid, creator = new_ulid(), new_ulid()
    good = s.create(tid, creator)
    bad = s.emit(ThreadDestroyed(tid, creator, s.now()))
    bad = StoredEvent(
        bad.pid, bad.seq, bad.shard, "NoSuchEvent", bad.payload, bad.ts, bad.offset, bad.writer
    )
    with pytest.raises(ValueError, match="NoSuchEvent"):
        await apply(rm, projection, [good, bad])
    assert await rm.get_thread(tid, creator) is None
    assert await rm.load_offsets(projection, 0, SHARDS) == {}


async def test_unknown_row_operations_roll_the_batch_back(rm, projection):
    s = Stream()
    tid, creator = new_ulid(), new_ulid()
    (good,) = project([s.create(tid, creator)])
    bad = ProjectedEvent(tid, 2, good.shard, good.offset + 1, (object(),))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown row operation"):
        await rm.apply(projection, [good, bad])
    assert await rm.get_thread(tid, creator) is None
    assert await rm.load_offsets(projection, 0, SHARDS) == {}
    assert (await rm.apply(projection, [good])).applied == 1


# ---------------------------------------------------------------------------------------------
# gaps and offsets
# ---------------------------------------------------------------------------------------------


def _two_pids_in(shard_wanted: int | None = None) -> tuple[str, str]:
    """Two thread ids in one shard."""
    by_shard: dict[int, str] = {}
    while True:
        tid = new_ulid()
        shard = shard_of(thread_persistence_id(tid), SHARDS)
        if shard_wanted is not None and shard != shard_wanted:
            continue
        if shard in by_shard:
            return by_shard[shard], tid
        by_shard[shard] = tid


async def test_a_gap_stalls_only_its_shard(rm, projection):
    s = Stream()
    a, b = _two_pids_in()
    shard = shard_of(thread_persistence_id(a), SHARDS)
    c = new_ulid()
    while shard_of(thread_persistence_id(c), SHARDS) == shard:
        c = new_ulid()
    creator = new_ulid()
    a1 = s.create(a, creator)
    a2 = s.messages(a, creator, "a2")[0]
    a3 = s.messages(a, creator, "a3")[0]
    b1 = s.create(b, creator)
    c1 = s.create(c, creator)
    # a2 is not visible yet: a3 follows a gap
    result = await apply(rm, projection, [a1, a3, b1, c1])
    assert result.applied == 2  # a1 and c1
    assert result.stalled == {shard: a1.offset}
    assert result.gaps == {a: 1}  # the thread whose events from seq 2 on are missing
    assert result.offsets[shard] == a1.offset  # not past the gap
    assert result.offsets[c1.shard] == c1.offset
    assert await rm.get_thread(b, creator) is None  # behind the gap: not yet
    assert await rm.get_thread(c, creator) is not None
    assert (await rm.load_offsets(projection, shard, shard + 1)) == {shard: a1.offset}

    # the re-read from the stored offset brings the missing event: everything lands, once
    again = await apply(rm, projection, [a2, a3, b1])
    assert (again.applied, again.stalled) == (3, {})
    assert [m.body for m in await rm.list_messages(a, creator, 0, 10)] == ["a2", "a3"]
    assert await rm.get_thread(b, creator) is not None
    assert (await rm.load_offsets(projection, shard, shard + 1)) == {shard: b1.offset}


async def test_a_gap_at_the_first_event_leaves_the_offset_alone(rm, projection):
    s = Stream()
    a = new_ulid()
    creator = new_ulid()
    s.create(a, creator)
    a2 = s.messages(a, creator, "x")[0]
    result = await apply(rm, projection, [a2])
    assert result.applied == 0 and a2.shard in result.stalled
    assert await rm.load_offsets(projection, 0, SHARDS) == {}


async def test_offsets_are_per_projection_and_shard(rm, projection, url):
    s = Stream()
    events = [s.create(new_ulid(), new_ulid()) for _ in range(30)]
    await apply(rm, projection, events)
    expected: dict[int, int] = {}
    for e in events:
        expected[e.shard] = max(expected.get(e.shard, 0), e.offset)
    assert await rm.load_offsets(projection, 0, SHARDS) == expected
    assert await rm.load_offsets(projection, 4, 9) == {
        k: v for k, v in expected.items() if 4 <= k < 9
    }
    assert await rm.load_offsets(projection + "-other", 0, SHARDS) == {}
    # a second projection over the same events keeps its own offsets (and skips the rows'
    # events, which are already applied: sequence numbers are per thread, not per projection)
    other = await apply(rm, projection + "-other", events[:3])
    assert other.skipped == 3
    assert set(await rm.load_offsets(projection + "-other", 0, SHARDS)) == {
        e.shard for e in events[:3]
    }
    # durable: a new instance reads the same offsets
    fresh = SqlReadModel(ReadModelSettings(url=url))
    await fresh.start()
    try:
        assert await fresh.load_offsets(projection, 0, SHARDS) == expected
    finally:
        await fresh.close()


# ---------------------------------------------------------------------------------------------
# queries: visibility, order, pagination
# ---------------------------------------------------------------------------------------------


async def test_list_threads_visibility_order_and_pagination(rm, projection):
    s = Stream()
    me, other = ulids(2)
    as_admin = [s.create(new_ulid(), me, title=f"admin-{i}") for i in range(4)]
    as_member = [s.create(new_ulid(), other, members=(me,), title=f"member-{i}") for i in range(3)]
    not_mine = [s.create(new_ulid(), other, title="other") for _ in range(2)]
    joined_later = s.create(new_ulid(), other, title="joined")
    events = as_admin + as_member + not_mine + [joined_later]
    events.append(s.emit(MemberIdsJoined(joined_later.payload["threadId"], other, s.now(), (me,))))
    destroyed = as_admin[1]
    events.append(s.emit(ThreadDestroyed(destroyed.payload["threadId"], me, s.now())))
    await apply(rm, projection, sorted(events, key=lambda e: e.offset))

    expected = [
        e.payload["threadId"] for e in as_admin + as_member + [joined_later] if e is not destroyed
    ]  # created_at order
    got = [t.id for t in await rm.list_threads(me, 0, 100)]
    assert got == expected
    pages = [[t.id for t in await rm.list_threads(me, off, 3)] for off in range(0, 9, 3)]
    assert [i for page in pages for i in page] == expected
    assert [len(p) for p in pages] == [3, 3, 1]
    assert await rm.list_threads(me, 100, 10) == []
    assert await rm.list_threads(new_ulid(), 0, 100) == []


async def test_member_and_admin_lists_keep_join_order_and_paginate(rm, projection):
    s = Stream()
    tid, creator = new_ulid(), new_ulid()
    members = ulids(7)
    admins = ulids(3)
    events = [s.create(tid, creator, members=tuple(members[:3]))]
    events.append(s.emit(MemberIdsJoined(tid, creator, s.now(), tuple(members[3:]))))
    events.append(s.emit(AdministratorIdsJoined(tid, creator, s.now(), tuple(admins))))
    await apply(rm, projection, events)
    assert await rm.list_member_ids(tid, creator, 0, 100) == members
    assert await rm.list_member_ids(tid, members[6], 2, 3) == members[2:5]
    assert await rm.list_member_ids(tid, creator, 6, 10) == members[6:]
    assert await rm.list_member_ids(tid, creator, 7, 10) == []
    assert await rm.list_administrator_ids(tid, admins[0], 0, 100) == [creator, *admins]
    assert await rm.list_administrator_ids(tid, creator, 1, 2) == admins[:2]


async def test_messages_order_pagination_and_removal(rm, projection):
    s = Stream()
    tid, creator = new_ulid(), new_ulid()
    events = [s.create(tid, creator)]
    bodies: list[str] = []
    ids: list[str] = []
    for batch in range(4):
        texts = [f"b{batch}-{i}" for i in range(3)]
        event, new_ids = s.messages(tid, creator, *texts)
        events.append(event)
        bodies += texts
        ids += new_ids
    await apply(rm, projection, events)
    msgs = await rm.list_messages(tid, creator, 0, 100)
    assert [m.body for m in msgs] == bodies
    assert [m.id for m in await rm.list_messages(tid, creator, 5, 4)] == ids[5:9]
    removed = {ids[0], ids[4], ids[11]}
    await apply(
        rm, projection, [s.emit(MessagesRemoved(tid, creator, s.now(), tuple(sorted(removed))))]
    )
    live = [i for i in ids if i not in removed]
    assert [m.id for m in await rm.list_messages(tid, creator, 0, 100)] == live
    assert [m.id for m in await rm.list_messages(tid, creator, 3, 3)] == live[3:6]
    # removing nothing, or an unknown id, is harmless
    await apply(rm, projection, [s.emit(MessagesRemoved(tid, creator, s.now(), ()))])
    await apply(rm, projection, [s.emit(MessagesRemoved(tid, creator, s.now(), (new_ulid(),)))])
    assert [m.id for m in await rm.list_messages(tid, creator, 0, 100)] == live


async def test_many_threads_in_one_batch(rm, projection):
    s = Stream()
    owner = new_ulid()
    events = []
    tids = []
    for i in range(60):
        tid = new_ulid()
        tids.append(tid)
        events.append(s.create(tid, owner, title=f"t{i}"))
        events.append(s.messages(tid, owner, f"hello {i}")[0])
    result = await apply(rm, projection, events)
    assert result.applied == 120 and result.stalled == {}
    assert [t.id for t in await rm.list_threads(owner, 0, 1000)] == tids
    assert [m.body for m in await rm.list_messages(tids[42], owner, 0, 10)] == ["hello 42"]
