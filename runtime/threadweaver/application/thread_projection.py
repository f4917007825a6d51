"""The projection of the Thread aggregate's events into the read model's row operations.

Stored events are decoded once, by the event mapper; each domain event becomes the row
operations of application/row_operations.py, which the read model executes without knowing
the events.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..domain import (
    AdministratorIdsJoined,
    AdministratorIdsLeft,
    Event,
    MemberIdsJoined,
    MemberIdsLeft,
    MessageEdited,
    MessagesAdded,
    MessagesRemoved,
    ReadMarkerMoved,
    ThreadCreated,
    ThreadDestroyed,
)
from . import event_mapper
from .ports import StoredEvent
from .row_operations import (
    MESSAGE_TYPE_TEXT,
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
    RowOperation,
    TouchThread,
)

MESSAGE_POSITION_STRIDE = 1000  # > limits.MESSAGES_PER_REQUEST_LIMIT - 1


def project(events: Sequence[StoredEvent]) -> list[ProjectedEvent]:
    """The stored events of a batch, in order, as the read model applies them. Raises
    ValueError for an event the mapper cannot decode (unknown type or schema)."""
    out = []
    for stored in events:
        event = event_mapper.to_domain(stored)
        out.append(
            ProjectedEvent(
                event.thread_id,
                stored.seq,
                stored.shard,
                stored.offset,
                thread_rows(event, stored.seq),
            )
        )
    return out


def thread_rows(event: Event, seq: int) -> tuple[RowOperation, ...]:
    """The row operations of `event`, the thread's event number `seq`."""
    tid, actor, at = event.thread_id, event.account_id, event.occurred_at
    change: RowOperation
    match event:
        case ThreadCreated():
            rows: list[RowOperation] = [
                InsertThread(
                    tid, actor, event.parent_thread_id, event.title, event.remarks, at, seq
                ),
                AddAdministrators(tid, event.administrator_ids, actor, at),
            ]
            if event.member_ids:
                rows.append(AddMembers(tid, event.member_ids, actor, at))
            return tuple(rows)  # the inserted row has the seq and time already
        case MessagesAdded():
            position = seq * MESSAGE_POSITION_STRIDE
            change = AddMessages(
                tid,
                actor,
                at,
                tuple(
                    MessageRow(m.id, MESSAGE_TYPE_TEXT, m.text, m.reply_message_id, position + i)
                    for i, m in enumerate(event.messages)
                ),
            )
        case AdministratorIdsJoined():
            change = AddAdministrators(tid, event.administrator_ids, actor, at)
        case MemberIdsJoined():
            change = AddMembers(tid, event.member_ids, actor, at)
        case AdministratorIdsLeft():
            change = RemoveAdministrators(tid, event.administrator_ids)
        case MemberIdsLeft():
            change = RemoveMembers(tid, event.member_ids)
        case MessagesRemoved():
            change = RemoveMessages(tid, event.message_ids, at)
        case ThreadDestroyed():
            change = DestroyThread(tid, at)
        case MessageEdited():
            change = EditMessage(tid, event.message_id, event.text, at)
        case ReadMarkerMoved():  # reading does not change the thread's update time
            return MoveReadMarker(tid, actor, event.message_id, at), TouchThread(tid, seq, None)
        case _:  # pragma: no cover - the mapper decodes only the types above
            raise ValueError(f"no projection for {type(event).__name__}")
    return change, TouchThread(tid, seq, at)
