"""Every domain event type through the event mapper and each journal backend (over real
connections: SQLite file, dynalite, dynalite behind the TransactWriteItems emulator), and the
Thread's snapshots with the state the chat additions keep (read markers, edited texts) saved by
the entities and loaded again by another process's entities.

The journal contract (test_journal_contract.py) holds the journals to the port with generic
payloads; this suite enumerates the domain's own events, so a new event type that a journal's
codec mangled would fail here.
"""

from __future__ import annotations

from typing import Any

import pytest

from threadweaver.application import event_mapper
from threadweaver.application.entities import EntityManager, EntitySettings
from threadweaver.domain import EVENT_TYPES, new_ulid, thread_persistence_id
from threadweaver.domain.commands import (
    AddMessages,
    CreateThread,
    EditMessage,
    MoveReadMarker,
    NewMessage,
    RemoveMessages,
)
from threadweaver.domain.events import (
    AddedMessage,
    AdministratorIdsJoined,
    AdministratorIdsLeft,
    MemberIdsJoined,
    MemberIdsLeft,
    MessageEdited,
    MessagesAdded,
    MessagesRemoved,
    ReadMarkerMoved,
    ThreadCreated,
    ThreadDestroyed,
)
from threadweaver.domain.thread import Thread


@pytest.fixture(params=["sqlite", "dynamodb", "dynamodb-tx"])
def backend(request) -> str:
    """The backend `open_journal` (tests/integration/conftest.py) opens."""
    return request.param


def one_of_each(tid: str) -> list[Any]:
    a, m, x = new_ulid(), new_ulid(), new_ulid()
    return [
        ThreadCreated(tid, a, 1, "title ✓", (a,), (m,), None, "remarks"),
        AdministratorIdsJoined(tid, a, 2, (x,)),
        AdministratorIdsLeft(tid, a, 3, (x,)),
        MemberIdsJoined(tid, a, 4, (x,)),
        MemberIdsLeft(tid, a, 5, (x,)),
        MessagesAdded(tid, m, 6, (AddedMessage("M1", "hi", None, (a,)),)),
        MessageEdited(tid, m, 7, "M1", "hi, edited ✓"),
        ReadMarkerMoved(tid, a, 8, "M1"),
        MessagesRemoved(tid, m, 9, ("M1",)),
        ThreadDestroyed(tid, a, 10),
    ]


async def test_every_event_type_round_trips_through_the_journal(open_journal):
    journal = await open_journal()
    tid = new_ulid()
    events = one_of_each(tid)
    assert {type(e) for e in events} == set(EVENT_TYPES.values())  # the domain's every type
    pid = thread_persistence_id(tid)
    await journal.append(pid, 0, event_mapper.to_new_events(events[:6]))
    for i, event in enumerate(events[6:], start=6):  # one append per event as well
        await journal.append(pid, i, event_mapper.to_new_events([event]))
    stored = await journal.read(pid)
    assert [e.type for e in stored] == [e.TYPE for e in events]
    assert [event_mapper.to_domain(e) for e in stored] == events


async def test_snapshots_carry_read_markers_and_edited_texts(open_journal):
    journal = await open_journal()
    settings = EntitySettings(snapshot_every=1)
    tid, admin, member = new_ulid(), new_ulid(), new_ulid()
    first = EntityManager(journal, settings)
    await first.execute(CreateThread(tid, admin, "t", (admin,), (member,), at=1))
    m1, m2, m3 = new_ulid(), new_ulid(), new_ulid()
    messages = tuple(NewMessage(i, t) for i, t in ((m1, "a"), (m2, "b"), (m3, "c")))
    await first.execute(AddMessages(tid, member, messages, at=2))
    await first.execute(EditMessage(tid, member, m2, "b, edited", at=3))
    await first.execute(MoveReadMarker(tid, admin, m3, at=4))
    await first.execute(MoveReadMarker(tid, member, m2, at=5))
    await first.execute(RemoveMessages(tid, member, (m2,), at=6))  # member's marker -> m1
    await first.close()  # waits for the snapshots saved in the background
    pid = thread_persistence_id(tid)
    snapshot = await journal.load_snapshot(pid)
    assert snapshot is not None and snapshot.seq == 6
    assert snapshot.state["schema"] == 2
    restored = Thread.from_snapshot(snapshot.state)
    assert restored.read_markers == {admin: m3, member: m1}
    assert restored.messages[m1].text == "a" and m2 not in restored.messages

    second = EntityManager(journal, settings)
    # from the snapshot alone: backwards markers change nothing, forward ones move
    assert await second.execute(MoveReadMarker(tid, admin, m1, at=7)) == []
    assert await second.execute(MoveReadMarker(tid, member, m1, at=8)) == []
    assert await second.execute(MoveReadMarker(tid, member, m3, at=9)) == [
        ReadMarkerMoved(tid, member, 9, m3)
    ]
    assert second.stats.events_replayed == 0
    assert await second.execute(EditMessage(tid, member, m3, "c", at=10)) == []  # same text
    await second.close()
