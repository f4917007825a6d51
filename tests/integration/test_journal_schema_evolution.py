"""A journal written by v1 code is read by v2 code, on SQLite and on DynamoDB (dynalite): the
v2 of tests/support/evolved_schema.py (`MessagesAdded` with a new field `priority`, default
"normal") upcasts every v1 event on replay, uses the v1 snapshot when the evolution left the
snapshot's schema alone, and ignores it (replaying every event) when the evolution changed it;
what v2 writes is v2, which the v1 code then refuses to read, naming the versions (the failure
`threadweaver replay-check` reports before a rollback).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.evolved_schema import DEFAULT_PRIORITY, MessagesAddedV2, evolved_mapper
from threadweaver.application.entities import EntityManager, EntitySettings
from threadweaver.application.event_mapper import MAPPER
from threadweaver.application.event_schema import SNAPSHOT_VERSION, SchemaError
from threadweaver.domain import (
    AddMessages,
    CreateThread,
    NewMessage,
    RemoveMessages,
    new_ulid,
    thread_persistence_id,
)
from threadweaver.domain.events import MessagesRemoved

ADMIN = new_ulid()
SNAPSHOT_EVERY = 10
POSTS = 24  # seq 2..25: the v1 snapshot is at seq 20


@pytest.fixture(params=["sqlite", "dynamodb"])
def backend(request) -> str:
    return request.param


async def write_v1_thread(journal: Any) -> tuple[str, list[str]]:
    """A thread journalled by v1 code: created, then POSTS messages, a v1 snapshot at 20."""
    tid, ids = new_ulid(), []
    v1 = EntityManager(journal, EntitySettings(snapshot_every=SNAPSHOT_EVERY))
    await v1.execute(CreateThread(tid, ADMIN, "title", (ADMIN,), (), None, None, 1))
    for i in range(POSTS):
        ids.append(new_ulid())
        await v1.execute(AddMessages(tid, ADMIN, (NewMessage(ids[-1], f"m{i}"),), 2 + i))
    await v1.close()  # waits for the snapshot saved in the background
    return tid, ids


async def test_v1_events_and_snapshot_are_read_by_v2_code(open_journal) -> None:
    journal = await open_journal()
    tid, ids = await write_v1_thread(journal)
    pid = thread_persistence_id(tid)
    stored = await journal.read(pid)
    assert {e.payload["schema"] for e in stored} == {1}
    snapshot = await journal.load_snapshot(pid)
    assert (
        snapshot is not None and snapshot.seq == 20 and snapshot.state["schema"] == SNAPSHOT_VERSION
    )

    # every v1 event decodes as v2, the new field at its default
    mapper = evolved_mapper()
    added = [mapper.to_domain(e) for e in stored[1:]]
    assert all(isinstance(e, MessagesAddedV2) for e in added)
    assert {e.priority for e in added} == {DEFAULT_PRIORITY}  # type: ignore[attr-defined]

    # v2 code on a journal opened again: loads from the v1 snapshot plus the events after it
    reopened = await open_journal()
    v2 = EntityManager(reopened, EntitySettings(snapshot_every=SNAPSHOT_EVERY), mapper=mapper)
    removed = await v2.execute(RemoveMessages(tid, ADMIN, (ids[0], ids[-1]), 100))
    assert removed == [MessagesRemoved(tid, ADMIN, 100, (ids[0], ids[-1]))]  # the state has both
    assert v2.stats.snapshots_ignored == 0
    assert v2.stats.events_replayed == POSTS + 1 - 20  # 21..25, not 1..25
    posted = await v2.execute(AddMessages(tid, ADMIN, (NewMessage(new_ulid(), "v2"),), 101))
    assert posted[0].messages[0].text == "v2"  # decided by the (unchanged) domain, written as v2
    await v2.close()
    last = (await reopened.read(pid, 27))[0]
    assert (last.type, last.payload["schema"], last.payload["priority"]) == (
        "MessagesAdded",
        2,
        DEFAULT_PRIORITY,
    )
    # v1 code cannot read what v2 wrote, and says so
    with pytest.raises(SchemaError, match="MessagesAdded v2 is newer than this image's v1"):
        MAPPER.to_domain(last)


async def test_a_v1_snapshot_is_ignored_by_v2_code_that_changed_the_snapshot(open_journal):
    journal = await open_journal()
    tid, ids = await write_v1_thread(journal)
    pid = thread_persistence_id(tid)
    reopened = await open_journal()
    v2 = EntityManager(
        reopened,
        EntitySettings(snapshot_every=SNAPSHOT_EVERY),
        mapper=evolved_mapper(SNAPSHOT_VERSION + 1),
    )
    removed = await v2.execute(RemoveMessages(tid, ADMIN, tuple(ids), 100))
    assert removed[0].message_ids == tuple(ids)  # replayed from seq 1: every message is there
    assert v2.stats.snapshots_ignored == 1
    assert v2.stats.events_replayed == POSTS + 1
    await v2.close()  # the replacement snapshot, at the new version, is saved in the background
    snapshot = await reopened.load_snapshot(pid)
    assert (
        snapshot is not None
        and snapshot.seq == POSTS + 2
        and snapshot.state["schema"] == SNAPSHOT_VERSION + 1
    )
    # and the next v2 load starts from it
    again = EntityManager(
        await open_journal(),
        EntitySettings(snapshot_every=SNAPSHOT_EVERY),
        mapper=evolved_mapper(SNAPSHOT_VERSION + 1),
    )
    await again.execute(AddMessages(tid, ADMIN, (NewMessage(new_ulid(), "x"),), 102))
    assert (again.stats.snapshots_ignored, again.stats.events_replayed) == (0, 0)
    await again.close()
