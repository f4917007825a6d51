"""The read model's row operations: what applying one journal event changes in its tables.

The projection (application/thread_projection.py) turns domain events into these; the read
model adapter executes them and knows neither event types nor persistence ids. Times are epoch
milliseconds. Membership and message rows are inserted, removed or soft-deleted, message bodies
edited, read markers set; the thread row is inserted with its first sequence number and touched
(sequence number, update time) by every later event. Values, never changed once made (not frozen: a frozen dataclass costs four times as
much to create, and the projection makes several per event).
"""

from __future__ import annotations

from dataclasses import dataclass

MESSAGE_TYPE_TEXT = "text"  # the only message type upstream's API has


@dataclass(slots=True)
class InsertThread:
    thread_id: str
    creator_id: str
    parent_id: str | None
    title: str
    remarks: str | None
    created_at: int
    sequence_nr: int


@dataclass(slots=True)
class TouchThread:
    """The thread row after one of its events: that event's seq and time (None: the event does
    not change the thread's update time, e.g. a read marker)."""

    thread_id: str
    sequence_nr: int
    at: int | None


@dataclass(slots=True)
class DestroyThread:
    """Soft delete: the row stays, invisible to queries."""

    thread_id: str
    at: int


@dataclass(slots=True)
class AddAdministrators:
    thread_id: str
    account_ids: tuple[str, ...]
    adder_id: str
    at: int


@dataclass(slots=True)
class RemoveAdministrators:
    thread_id: str
    account_ids: tuple[str, ...]


@dataclass(slots=True)
class AddMembers:
    thread_id: str
    account_ids: tuple[str, ...]
    adder_id: str
    at: int


@dataclass(slots=True)
class RemoveMembers:
    thread_id: str
    account_ids: tuple[str, ...]


@dataclass(slots=True)
class MessageRow:
    id: str
    type: str
    body: str
    reply_message_id: str | None
    position: int  # the thread's messages are listed in this order


@dataclass(slots=True)
class AddMessages:
    thread_id: str
    sender_id: str
    at: int
    messages: tuple[MessageRow, ...]


@dataclass(slots=True)
class RemoveMessages:
    """Soft delete of the thread's messages with these ids."""

    thread_id: str
    message_ids: tuple[str, ...]
    at: int


@dataclass(slots=True)
class EditMessage:
    """A message's new body; its update time becomes `at`."""

    thread_id: str
    message_id: str
    body: str
    at: int


@dataclass(slots=True)
class MoveReadMarker:
    """The account's read marker now names `message_id` (and takes that message's position)."""

    thread_id: str
    account_id: str
    message_id: str
    at: int


RowOperation = (
    InsertThread
    | TouchThread
    | DestroyThread
    | AddAdministrators
    | RemoveAdministrators
    | AddMembers
    | RemoveMembers
    | AddMessages
    | RemoveMessages
    | EditMessage
    | MoveReadMarker
)


@dataclass(slots=True)
class ProjectedEvent:
    """One journal event as the read model applies it: its place in the journal (shard, offset),
    the thread whose row keeps the sequence number of the last event applied, and its rows."""

    thread_id: str
    seq: int
    shard: int
    offset: int
    operations: tuple[RowOperation, ...]
