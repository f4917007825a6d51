"""Edits and read markers in the stateful test of the Thread aggregate (test_thread_stateful.py):
the same machine and model, plus two rules and the model's rules for them.

The model keeps a marker as a number, independently of thread.py: the posting ordinal of the
message it was set on (removals do not change it). A marker moves forward iff the new message's
ordinal is higher. What the aggregate keeps (the nearest live message at or before the marked
one, test_thread_chat.py) is derived from it for the snapshot, so every step checks that the two
formulations agree, through removals, edits, leaves and replays.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import rule

from tests.unit.domain.test_thread_stateful import (
    MAX_TEXT,
    TEXTS,
    TOO_LONG,
    Model,
    Outcome,
    ThreadMachine,
    actors,
    refused,
)
from threadweaver.domain.commands import AddMessages, EditMessage, MoveReadMarker, RemoveMessages
from threadweaver.domain.errors import ErrorKind
from threadweaver.domain.events import MessageEdited, ReadMarkerMoved

TID = "01HZX3J5K6M7N8P9Q0R1S2T3V4"


class ChatModel(Model):
    def __init__(self) -> None:
        super().__init__()
        self.ordinals: dict[str, int] = {}  # every message ever posted -> its posting ordinal
        self.markers: dict[str, int] = {}  # account -> ordinal of the message it marked

    def snapshot(self) -> dict | None:
        snapshot = super().snapshot()
        if snapshot is None or not self.markers:
            return snapshot
        live = [(self.ordinals[i], i) for i in self.messages]
        derived = []
        for account, ordinal in self.markers.items():
            at_or_before = [i for o, i in live if o <= ordinal]
            derived.append([account, at_or_before[-1] if at_or_before else None])
        return {**snapshot, "readMarkers": derived}

    def expect(self, c) -> tuple[Outcome, object]:
        nothing = lambda: None  # noqa: E731
        if isinstance(c, AddMessages):
            outcome, change = super().expect(c)

            def posted() -> None:
                change()
                for m in c.messages:
                    self.ordinals[m.id] = len(self.ordinals)

            return outcome, posted if outcome[0] == "events" and outcome[1] else change
        if not isinstance(c, (EditMessage, MoveReadMarker)):
            return super().expect(c)
        if not self.exists:
            return refused(ErrorKind.NOT_FOUND, "thread is not found"), nothing
        if self.destroyed:
            return refused(ErrorKind.NOT_FOUND, "already removed the thread"), nothing
        actor, row = c.account_id, self.messages.get(c.message_id)
        is_member = actor in self.admins or actor in self.members
        if isinstance(c, MoveReadMarker):
            if not is_member:
                return refused(ErrorKind.FORBIDDEN, "The readerId is not the member"), nothing
            if row is None:
                return refused(ErrorKind.NOT_FOUND, "message is not found"), nothing
            ordinal = self.ordinals[c.message_id]
            if actor in self.markers and ordinal <= self.markers[actor]:
                return ("events", []), nothing

            def moved() -> None:
                self.markers[actor] = ordinal  # the thread's updatedAt stays

            return ("events", [ReadMarkerMoved(TID, actor, c.at, c.message_id)]), moved
        if not is_member:
            return refused(ErrorKind.FORBIDDEN, "The editorId is not the member"), nothing
        if row is None:
            return refused(ErrorKind.NOT_FOUND, "message is not found"), nothing
        if row[1] != actor:
            return refused(ErrorKind.FORBIDDEN, "The editorId is not the senderId"), nothing
        if len(c.text) > MAX_TEXT:
            return ("invalid", [("text", "too long text")]), nothing
        if c.text == row[2]:
            return ("events", []), nothing

        def edited() -> None:
            row[2] = c.text
            self.fields["updatedAt"] = c.at

        return ("events", [MessageEdited(TID, actor, c.at, c.message_id, c.text)]), edited


class ChatThreadMachine(ThreadMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model = ChatModel()

    def any_message(self, pick: int) -> str:
        """A message id ever issued (live or removed), or one never issued."""
        issued = list(self.model.ordinals)
        return issued[pick % len(issued)] if issued else "msg-never"

    @rule(
        actor=actors, pick=st.integers(0, 100), text=st.sampled_from([*TEXTS, "edited", TOO_LONG])
    )
    def edit_message(self, actor, pick, text) -> None:
        self.send(EditMessage(TID, self.who(actor), self.any_message(pick), text, self.tick()))

    @rule(actor=actors, pick=st.integers(0, 100))
    def move_read_marker(self, actor, pick) -> None:
        self.send(MoveReadMarker(TID, self.who(actor), self.any_message(pick), self.tick()))

    @rule(reader=actors, pick=st.integers(0, 100), other=st.booleans())
    def mark_then_remove(self, reader, pick, other) -> None:
        """A marker on a live message, then that message (or the one after it) removed by its
        sender: the marker must keep its place."""
        live = list(self.model.messages.items())
        if not live:
            return
        index = pick % len(live)
        self.send(MoveReadMarker(TID, self.who(reader), live[index][0], self.tick()))
        message_id, row = live[min(index + other, len(live) - 1)]
        self.send(RemoveMessages(TID, row[1], (message_id,), self.tick()))


ChatThreadMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None
)
TestChatThreadStateMachine = ChatThreadMachine.TestCase
