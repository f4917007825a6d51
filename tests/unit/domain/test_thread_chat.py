"""Edits and read markers on the Thread aggregate: decide (events or refusals) and evolve (state),
snapshots carrying both."""

from __future__ import annotations

import copy
import json

import pytest

from threadweaver.domain import limits
from threadweaver.domain.commands import (
    AddMessages,
    CreateThread,
    DestroyThread,
    EditMessage,
    LeaveMemberIds,
    MoveReadMarker,
    NewMessage,
    RemoveMessages,
)
from threadweaver.domain.errors import DomainError, ErrorKind, FieldError, ValidationError
from threadweaver.domain.events import MessageEdited, ReadMarkerMoved
from threadweaver.domain.thread import (
    ALREADY_REMOVED,
    EDITOR_NOT_MEMBER,
    EDITOR_NOT_SENDER,
    MESSAGE_NOT_FOUND,
    NOT_FOUND,
    READER_NOT_MEMBER,
    Thread,
    decide,
    evolve,
)

TID = "thread-1"
ADMIN, MEMBER, OUTSIDER = "admin", "member", "outsider"


def apply(thread: Thread | None, command) -> Thread:
    for event in decide(thread, command):
        thread = evolve(thread, event)
    assert thread is not None
    return thread


def thread_with_messages(*texts_by: tuple[str, str]) -> Thread:
    """A thread (ADMIN administrator, MEMBER member) with messages m0, m1... posted in order."""
    thread = apply(None, CreateThread(TID, ADMIN, "t", (ADMIN,), (MEMBER,), at=1))
    for i, (sender, text) in enumerate(texts_by):
        thread = apply(thread, AddMessages(TID, sender, (NewMessage(f"m{i}", text),), at=10 + i))
    return thread


def refusal(thread: Thread | None, command) -> tuple[ErrorKind, str]:
    before = copy.deepcopy(thread)
    with pytest.raises(DomainError) as caught:
        decide(thread, command)
    assert thread == before
    return caught.value.kind, caught.value.message


# ---------------------------------------------------------------- edits


def test_the_sender_edits_a_live_message() -> None:
    thread = thread_with_messages((MEMBER, "hello"), (ADMIN, "hi"))
    before = copy.deepcopy(thread)
    events = decide(thread, EditMessage(TID, MEMBER, "m0", "hello, edited", at=50))
    assert thread == before  # decide never mutates
    assert events == [MessageEdited(TID, MEMBER, 50, "m0", "hello, edited")]
    held = thread.messages["m0"]
    after = evolve(thread, events[0])
    assert after.messages["m0"].text == "hello, edited"
    assert held.text == "hello"  # the previous value is replaced, not mutated
    assert list(after.messages) == ["m0", "m1"]  # the order is kept
    assert after.messages["m1"].text == "hi"
    assert after.updated_at == 50


def test_an_edit_to_the_same_text_changes_nothing() -> None:
    thread = thread_with_messages((MEMBER, "same"))
    assert decide(thread, EditMessage(TID, MEMBER, "m0", "same", at=50)) == []


def test_edit_text_limit_is_the_posting_limit() -> None:
    thread = thread_with_messages((MEMBER, "x"))
    longest = "y" * limits.TEXT_MAX_LENGTH
    assert decide(thread, EditMessage(TID, MEMBER, "m0", longest, at=50))
    with pytest.raises(ValidationError) as caught:
        decide(thread, EditMessage(TID, MEMBER, "m0", longest + "y", at=50))
    assert caught.value.errors == [FieldError("text", "too long text")]


@pytest.mark.parametrize(
    "command, expected",
    [
        (EditMessage(TID, ADMIN, "m0", "not mine"), (ErrorKind.FORBIDDEN, EDITOR_NOT_SENDER)),
        (EditMessage(TID, OUTSIDER, "m0", "x"), (ErrorKind.FORBIDDEN, EDITOR_NOT_MEMBER)),
        (EditMessage(TID, MEMBER, "nope", "x"), (ErrorKind.NOT_FOUND, MESSAGE_NOT_FOUND)),
    ],
)
def test_edit_refusals(command, expected) -> None:
    assert refusal(thread_with_messages((MEMBER, "hello")), command) == expected


def test_a_removed_message_cannot_be_edited() -> None:
    thread = thread_with_messages((MEMBER, "hello"))
    thread = apply(thread, RemoveMessages(TID, MEMBER, ("m0",), at=20))
    assert refusal(thread, EditMessage(TID, MEMBER, "m0", "x")) == (
        ErrorKind.NOT_FOUND,
        MESSAGE_NOT_FOUND,
    )


def test_edits_on_missing_or_destroyed_threads() -> None:
    assert refusal(None, EditMessage(TID, MEMBER, "m0", "x")) == (ErrorKind.NOT_FOUND, NOT_FOUND)
    thread = apply(thread_with_messages((MEMBER, "a")), DestroyThread(TID, ADMIN, at=30))
    assert refusal(thread, EditMessage(TID, MEMBER, "m0", "x")) == (
        ErrorKind.NOT_FOUND,
        ALREADY_REMOVED,
    )
    assert refusal(thread, MoveReadMarker(TID, MEMBER, "m0")) == (
        ErrorKind.NOT_FOUND,
        ALREADY_REMOVED,
    )


# ---------------------------------------------------------------- read markers


def test_a_marker_moves_forward_only() -> None:
    thread = thread_with_messages((ADMIN, "a"), (ADMIN, "b"), (ADMIN, "c"))
    updated_at = thread.updated_at
    events = decide(thread, MoveReadMarker(TID, MEMBER, "m1", at=50))
    assert events == [ReadMarkerMoved(TID, MEMBER, 50, "m1")]
    thread = evolve(thread, events[0])
    assert thread.read_markers == {MEMBER: "m1"}
    assert thread.updated_at == updated_at  # reading does not change the thread
    # backwards and onto the same message: accepted, no event
    assert decide(thread, MoveReadMarker(TID, MEMBER, "m0", at=51)) == []
    assert decide(thread, MoveReadMarker(TID, MEMBER, "m1", at=52)) == []
    assert decide(thread, MoveReadMarker(TID, MEMBER, "m2", at=53)) == [
        ReadMarkerMoved(TID, MEMBER, 53, "m2")
    ]
    # each account has its own marker; administrators have one too
    assert decide(thread, MoveReadMarker(TID, ADMIN, "m0", at=54)) == [
        ReadMarkerMoved(TID, ADMIN, 54, "m0")
    ]


def test_marker_refusals() -> None:
    thread = thread_with_messages((ADMIN, "a"))
    assert refusal(thread, MoveReadMarker(TID, OUTSIDER, "m0")) == (
        ErrorKind.FORBIDDEN,
        READER_NOT_MEMBER,
    )
    assert refusal(thread, MoveReadMarker(TID, MEMBER, "zz")) == (
        ErrorKind.NOT_FOUND,
        MESSAGE_NOT_FOUND,
    )
    assert refusal(None, MoveReadMarker(TID, MEMBER, "m0")) == (ErrorKind.NOT_FOUND, NOT_FOUND)


def test_a_marker_on_a_removed_message_moves_back_to_the_previous_live_one() -> None:
    thread = thread_with_messages((ADMIN, "a"), (MEMBER, "b"), (MEMBER, "c"), (ADMIN, "d"))
    thread = apply(thread, MoveReadMarker(TID, ADMIN, "m2", at=50))
    thread = apply(thread, MoveReadMarker(TID, MEMBER, "m1", at=51))
    thread = apply(thread, RemoveMessages(TID, MEMBER, ("m1", "m2"), at=52))
    assert thread.read_markers == {ADMIN: "m0", MEMBER: "m0"}
    # the same forward comparisons as before the removal: m0 is behind, m3 ahead
    assert decide(thread, MoveReadMarker(TID, ADMIN, "m0", at=53)) == []
    assert decide(thread, MoveReadMarker(TID, ADMIN, "m3", at=53))
    thread = apply(thread, RemoveMessages(TID, ADMIN, ("m0",), at=54))
    assert thread.read_markers == {ADMIN: None, MEMBER: None}  # before every live message
    assert decide(thread, MoveReadMarker(TID, MEMBER, "m3", at=55)) == [
        ReadMarkerMoved(TID, MEMBER, 55, "m3")
    ]


def test_a_marker_outlives_leaving() -> None:
    thread = thread_with_messages((ADMIN, "a"), (ADMIN, "b"))
    thread = apply(thread, MoveReadMarker(TID, MEMBER, "m1", at=50))
    thread = apply(thread, LeaveMemberIds(TID, ADMIN, (MEMBER,), at=51))
    assert thread.read_markers == {MEMBER: "m1"}
    assert refusal(thread, MoveReadMarker(TID, MEMBER, "m1")) == (
        ErrorKind.FORBIDDEN,
        READER_NOT_MEMBER,
    )


# ---------------------------------------------------------------- snapshots


def test_snapshots_carry_markers_and_edited_texts() -> None:
    thread = thread_with_messages((MEMBER, "a"), (ADMIN, "b"))
    thread = apply(thread, EditMessage(TID, MEMBER, "m0", "a, edited", at=40))
    assert thread.to_snapshot()["readMarkers"] == []  # schema 2 even without a marker
    thread = apply(thread, MoveReadMarker(TID, MEMBER, "m1", at=50))
    thread = apply(thread, RemoveMessages(TID, ADMIN, ("m1",), at=51))  # MEMBER's -> m0
    thread = apply(thread, RemoveMessages(TID, MEMBER, ("m0",), at=52))  # MEMBER's -> None
    thread = apply(thread, AddMessages(TID, ADMIN, (NewMessage("m2", "c"),), at=53))
    thread = apply(thread, MoveReadMarker(TID, ADMIN, "m2", at=54))
    snapshot = thread.to_snapshot()
    assert snapshot["schema"] == 2
    assert snapshot["readMarkers"] == [[MEMBER, None], [ADMIN, "m2"]]
    restored = Thread.from_snapshot(json.loads(json.dumps(snapshot)))
    assert restored == thread
    assert thread.size == 1 + 1 + 1 + 2  # messages, administrators, members, markers
    edited = thread_with_messages((MEMBER, "a"))
    edited = apply(edited, EditMessage(TID, MEMBER, "m0", "a, edited", at=40))
    assert Thread.from_snapshot(edited.to_snapshot()).messages["m0"].text == "a, edited"


def test_a_schema_1_snapshot_is_read_without_markers() -> None:
    snapshot = thread_with_messages((MEMBER, "a")).to_snapshot()
    assert snapshot.pop("readMarkers") == [] and snapshot["schema"] == 2
    snapshot["schema"] = 1  # the layout before markers
    assert Thread.from_snapshot(snapshot).read_markers == {}
