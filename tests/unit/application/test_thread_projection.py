"""The projection of the Thread's events into the read model's row operations (pure): every
event type, decoded once through the event mapper, old-format payloads included."""

from __future__ import annotations

import pytest

from threadweaver.application import idempotency
from threadweaver.application.event_mapper import to_new_events
from threadweaver.application.ports import StoredEvent
from threadweaver.application.row_operations import (
    AddAdministrators,
    AddMembers,
    AddMessages,
    DestroyThread,
    EditMessage,
    InsertThread,
    MessageRow,
    MoveReadMarker,
    ProjectedEvent,
    RemoveAdministrators,
    RemoveMembers,
    RemoveMessages,
    TouchThread,
)
from threadweaver.application.thread_projection import MESSAGE_POSITION_STRIDE, project
from threadweaver.domain import thread_persistence_id
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
    event_to_payload,
)

T, A, B, C = "T1", "A1", "B1", "C1"


def stored(seq: int, event, shard: int = 3) -> StoredEvent:
    (new,) = to_new_events([event])
    return StoredEvent(
        thread_persistence_id(T), seq, shard, new.type, new.payload, 99, 1000 + seq, "w"
    )


def rows(seq: int, event) -> tuple:
    (projected,) = project([stored(seq, event)])
    assert (projected.thread_id, projected.seq, projected.shard, projected.offset) == (
        T,
        seq,
        3,
        1000 + seq,
    )
    return projected.operations


def test_thread_created():
    event = ThreadCreated(T, A, 10, "title", (A, B), (C,), "P1", "notes")
    assert rows(1, event) == (
        InsertThread(T, A, "P1", "title", "notes", 10, 1),
        AddAdministrators(T, (A, B), A, 10),
        AddMembers(T, (C,), A, 10),
    )
    bare = ThreadCreated(T, A, 10, "title", (A,), ())
    assert rows(1, bare) == (
        InsertThread(T, A, None, "title", None, 10, 1),
        AddAdministrators(T, (A,), A, 10),
    )


@pytest.mark.parametrize(
    ("event", "change"),
    [
        (AdministratorIdsJoined(T, A, 20, (B,)), AddAdministrators(T, (B,), A, 20)),
        (AdministratorIdsLeft(T, A, 20, (B,)), RemoveAdministrators(T, (B,))),
        (MemberIdsJoined(T, A, 20, (B, C)), AddMembers(T, (B, C), A, 20)),
        (MemberIdsLeft(T, A, 20, (C,)), RemoveMembers(T, (C,))),
        (MessagesRemoved(T, A, 20, ("M1", "M2")), RemoveMessages(T, ("M1", "M2"), 20)),
        (ThreadDestroyed(T, A, 20), DestroyThread(T, 20)),
        (MessageEdited(T, B, 20, "M1", "edited"), EditMessage(T, "M1", "edited", 20)),
    ],
)
def test_changes_touch_the_thread(event, change):
    assert rows(7, event) == (change, TouchThread(T, 7, 20))


def test_a_read_marker_keeps_the_thread_update_time():
    event = ReadMarkerMoved(T, B, 40, "M1")
    assert rows(8, event) == (MoveReadMarker(T, B, "M1", 40), TouchThread(T, 8, None))


def test_messages_get_positions_in_event_order():
    event = MessagesAdded(
        T, B, 30, (AddedMessage("M1", "hi", None, (C,)), AddedMessage("M2", "re", "M1", ()))
    )
    base = 5 * MESSAGE_POSITION_STRIDE
    assert rows(5, event) == (
        AddMessages(
            T,
            B,
            30,
            (
                MessageRow("M1", "text", "hi", None, base),
                MessageRow("M2", "text", "re", "M1", base + 1),
            ),
        ),
        TouchThread(T, 5, 30),
    )


def test_a_batch_is_projected_in_order():
    events = [stored(1, ThreadCreated(T, A, 1, "t", (A,), ())), stored(2, ThreadDestroyed(T, A, 2))]
    projected = project(events)
    assert [type(p) for p in projected] == [ProjectedEvent, ProjectedEvent]
    assert [p.seq for p in projected] == [1, 2]


def test_old_payloads_with_the_record_inside_project_the_same():
    event = MemberIdsJoined(T, A, 20, (B,))
    old = stored(2, event)
    payload = event_to_payload(event) | {"_meta": idempotency.meta(A, "k", "h")}
    old = StoredEvent(old.pid, old.seq, old.shard, old.type, payload, old.ts, old.offset)
    assert project([old])[0].operations == rows(2, event)


def test_unknown_event_types_are_refused():
    bad = StoredEvent(thread_persistence_id(T), 1, 0, "NoSuchEvent", {}, 0, 1)
    with pytest.raises(ValueError, match="NoSuchEvent"):
        project([bad])
