"""The pure parts of the live streams: the wire format, the account stream's resume id, the
membership rules, a tail's memory and a subscriber's cursor on it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.sse_client import SseParser
from threadweaver.adapters.http.stream_wire import event_json, frame, wire_name
from threadweaver.application import stream_cursor
from threadweaver.application.settings import StreamSettings
from threadweaver.application.stream_membership import join_seq, joined, may_remove
from threadweaver.application.streams import FellBehind, TailCursor, TailEvent, ThreadTail
from threadweaver.domain import new_ulid
from threadweaver.domain.events import (
    AddedMessage,
    AdministratorIdsJoined,
    AdministratorIdsLeft,
    MemberIdsJoined,
    MemberIdsLeft,
    MessagesAdded,
    ThreadCreated,
    ThreadDestroyed,
)

T, A, M = new_ulid(), new_ulid(), new_ulid()


def created(admins=(A,), members=()) -> ThreadCreated:
    return ThreadCreated(T, A, 1, "t", tuple(admins), tuple(members))


# -- wire format ------------------------------------------------------------------------------
def test_wire_names_are_camel_case():
    assert wire_name("reply_message_id") == "replyMessageId"
    assert wire_name("text") == "text"


def test_an_event_is_serialised_from_its_fields_generically():
    event = MessagesAdded(T, M, 5, (AddedMessage("m1", "hi", None, (A,)),))
    assert event_json(7, event) == {
        "threadId": T,
        "seq": 7,
        "type": "MessagesAdded",
        "occurredAt": 5,
        "accountId": M,
        "messages": [{"id": "m1", "text": "hi", "replyMessageId": None, "toAccountIds": [A]}],
    }


def test_a_frame_is_one_sse_event_with_the_seq_as_id():
    raw = frame(3, MemberIdsJoined(T, A, 9, (M,)))
    lines = raw.decode().split("\n")
    assert lines[0] == "id: 3" and lines[1] == "event: MemberIdsJoined"
    assert raw.endswith(b"\n\n") and raw.count(b"\n") == 4  # data is one line
    (parsed,) = SseParser().feed(raw)
    assert parsed.id == "3" and parsed.event == "MemberIdsJoined"
    assert json.loads(parsed.data)["memberIds"] == [M]


@dataclass(frozen=True)
class MessageEdited:  # the shape of an event type added later
    TYPE: ClassVar[str] = "MessageEdited"
    thread_id: str
    account_id: str
    occurred_at: int
    message_id: str
    text: str


def test_an_unknown_event_type_flows_without_changes():
    data = event_json(4, MessageEdited(T, A, 2, "m1", "new"))  # type: ignore[arg-type]
    assert data == {
        "threadId": T,
        "seq": 4,
        "type": "MessageEdited",
        "occurredAt": 2,
        "accountId": A,
        "messageId": "m1",
        "text": "new",
    }


# -- the account stream's resume id ------------------------------------------------------------
@given(st.dictionaries(st.text(min_size=1, max_size=30), st.integers(0, stream_cursor.MAX_SEQ)))
def test_a_resume_id_round_trips(positions):
    keyed = {stream_cursor.thread_key(t): seq for t, seq in positions.items()}
    token = stream_cursor.encode(keyed)
    assert token.startswith("a1.") and len(token) == 3 + 16 * len(keyed)
    assert stream_cursor.decode(token) == keyed


@given(st.from_regex(stream_cursor.PATTERN, fullmatch=True))
def test_every_id_of_the_documented_form_decodes(token):
    stream_cursor.decode(token)


@pytest.mark.parametrize("bad", ["", "7", "a2.AAAAAAAAAAAAAAAA", "a1.AAAA", "a1.!!!!!!!!!!!!!!!!"])
def test_other_ids_are_refused(bad):
    with pytest.raises(stream_cursor.BadCursor):
        stream_cursor.decode(bad)


# -- membership -------------------------------------------------------------------------------
def test_joins_name_the_accounts_they_add():
    assert joined(created(members=(M,))) == {A, M}
    assert joined(MemberIdsJoined(T, A, 1, (M,))) == {M}
    assert joined(AdministratorIdsJoined(T, A, 1, (M,))) == {M}
    assert joined(MessagesAdded(T, A, 1, ())) == frozenset()


def test_what_may_remove_an_account():
    assert may_remove(MemberIdsLeft(T, A, 1, (M,)), M)
    assert not may_remove(MemberIdsLeft(T, A, 1, (M,)), A)
    assert may_remove(AdministratorIdsLeft(T, A, 1, (A,)), A)
    assert may_remove(ThreadDestroyed(T, A, 1), M)
    assert not may_remove(MessagesAdded(T, A, 1, ()), M)


def test_join_seq_is_where_the_current_membership_began():
    history = [
        (1, created()),
        (2, MemberIdsJoined(T, A, 1, (M,))),
        (3, MemberIdsLeft(T, A, 1, (M,))),
        (4, MessagesAdded(T, A, 1, ())),
        (5, MemberIdsJoined(T, A, 1, (M,))),
        (6, AdministratorIdsJoined(T, A, 1, (M,))),
        (7, MemberIdsLeft(T, A, 1, (M,))),  # still an administrator
    ]
    assert join_seq(history, M) == 5
    assert join_seq(history, A) == 1
    assert join_seq(history[:4], M) is None
    assert join_seq([*history, (8, ThreadDestroyed(T, A, 1))], A) is None


# -- a tail and a cursor on it ----------------------------------------------------------------
def entry(seq: int) -> TailEvent:
    return TailEvent(seq, MessagesAdded(T, A, seq, ()), b"id: %d\nevent: x\ndata: {}\n\n" % seq)


def test_a_tail_remembers_its_last_events():
    tail = ThreadTail(T, "p", 0, buffer=3)
    tail.last_seq = 10
    assert tail.after(10) == [] and tail.after(12) == []
    assert tail.after(9) is None  # before what it remembers
    tail.extend([entry(11), entry(12), entry(13), entry(14)])
    assert tail.first_seq == 12 and tail.last_seq == 14
    assert [e.seq for e in tail.after(11)] == [12, 13, 14]
    assert [e.seq for e in tail.after(13)] == [14]
    assert tail.after(10) is None
    assert entry(5).body == b"event: x\ndata: {}\n\n"


class _Hub:
    """What a TailCursor needs of the hub: its settings and journal catch-up reads."""

    def __init__(self, journal_events: list[TailEvent]) -> None:
        self.settings = StreamSettings(stream_catch_up_rounds=2)
        self.events = journal_events
        self.reads = 0

    async def read_after(self, tail: ThreadTail, pos: int) -> list[TailEvent]:
        self.reads += 1
        return [e for e in self.events if e.seq > pos]


def test_a_resuming_cursor_reads_the_journal_then_goes_live():
    tail = ThreadTail(T, "p", 0, buffer=2)
    tail.last_seq = 5
    hub = _Hub([entry(s) for s in range(1, 6)])
    cursor = TailCursor(tail, 0)
    got = asyncio.run(cursor.take(hub))  # type: ignore[arg-type]
    assert [e.seq for e in got] == [1, 2, 3, 4, 5] and cursor.pos == 5 and hub.reads == 1
    tail.extend([entry(6)])
    assert [e.seq for e in asyncio.run(cursor.take(hub))] == [6]  # type: ignore[arg-type]
    assert cursor.live and hub.reads == 1


def test_a_live_cursor_that_falls_behind_ends():
    tail = ThreadTail(T, "p", 0, buffer=2)
    cursor = TailCursor(tail, 0)
    hub = _Hub([])
    assert asyncio.run(cursor.take(hub)) == []  # type: ignore[arg-type]
    tail.extend([entry(1), entry(2), entry(3)])  # the ring keeps 2 and 3
    with pytest.raises(FellBehind) as behind:
        asyncio.run(cursor.take(hub))  # type: ignore[arg-type]
    assert behind.value.missed == 3 and cursor.pos == 0


def test_catch_up_reads_are_bounded():
    tail = ThreadTail(T, "p", 0, buffer=1)
    tail.last_seq = 100
    hub = _Hub([])  # the journal answers nothing (e.g. still settling)
    cursor = TailCursor(tail, 0)
    for _ in range(hub.settings.stream_catch_up_rounds):
        assert asyncio.run(cursor.take(hub)) == []  # type: ignore[arg-type]
    with pytest.raises(FellBehind):
        asyncio.run(cursor.take(hub))  # type: ignore[arg-type]
