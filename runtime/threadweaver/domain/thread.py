"""The Thread aggregate: state, the rules that decide events from commands, and replay.

`decide(thread, command)` checks the rules and returns the events the command causes (an empty
list when it changes nothing, e.g. joining ids that are already there); it never mutates.
`evolve(thread, event)` applies one event. For speed, evolve mutates the Thread it is given
(a thread with 5,000 messages must not be copied per event); each entity owns its state alone.

Rules follow upstream thread-weaver with its bugs fixed: leave-members removes ids (upstream
added them), `parentThreadId` is kept, joins do not duplicate ids, and the last administrator
cannot leave.

Additions over upstream: a sender edits the text of a live message of theirs; a member's read
marker names the last message it has read and only moves forward (a marker on an earlier message,
or on the one it names, changes nothing). Only the order of live messages matters to a marker, so
when its message is removed it moves back to the nearest earlier live message (None: before all
of them), which keeps every forward comparison and every unread count the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from . import limits
from .commands import (
    AddMessages,
    Command,
    CreateThread,
    DestroyThread,
    EditMessage,
    JoinAdministratorIds,
    JoinMemberIds,
    LeaveAdministratorIds,
    LeaveMemberIds,
    MoveReadMarker,
    RemoveMessages,
)
from .errors import DomainError, ErrorKind, FieldError, ValidationError
from .events import (
    AddedMessage,
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

NOT_FOUND = "thread is not found"
ALREADY_CREATED = "Already created"
ALREADY_REMOVED = "already removed the thread"
NOT_ADMINISTRATOR = "The senderId is not the administrator"
NOT_MEMBER = "The senderId is not the member"
REMOVER_NOT_MEMBER = "The removerId is not the member"
REMOVER_NOT_SENDER = "The removerId is not the senderId"
ADMINISTRATORS_EMPTY = "Administrators can not be empty."
MESSAGES_LIMIT_OVER = "The limit of messages size is over"
MESSAGE_NOT_FOUND = "message is not found"  # unknown, or removed
EDITOR_NOT_MEMBER = "The editorId is not the member"
EDITOR_NOT_SENDER = "The editorId is not the senderId"
READER_NOT_MEMBER = "The readerId is not the member"

#: the layout version `Thread.to_snapshot` writes (`from_snapshot` reads 1 and 2)
SNAPSHOT_SCHEMA = 2


@dataclass(slots=True)
class Message:
    id: str
    sender_id: str
    text: str
    reply_message_id: str | None
    to_account_ids: tuple[str, ...]
    created_at: int


@dataclass(slots=True)
class Thread:
    id: str
    creator_id: str
    title: str
    parent_thread_id: str | None
    remarks: str | None
    administrator_ids: dict[str, None]  # insertion-ordered sets
    member_ids: dict[str, None]
    messages: dict[str, Message]  # live messages, in posting order
    created_at: int
    updated_at: int
    removed_at: int | None = None
    #: account -> the last live message it has read (None: its messages were all removed);
    #: kept when the account leaves, so that a rejoining account resumes from it
    read_markers: dict[str, str | None] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """How many items the state holds (what a snapshot's cost grows with)."""
        return (
            len(self.messages)
            + len(self.administrator_ids)
            + len(self.member_ids)
            + len(self.read_markers)
        )

    @property
    def is_removed(self) -> bool:
        return self.removed_at is not None

    def is_administrator(self, account_id: str) -> bool:
        return account_id in self.administrator_ids

    def is_member(self, account_id: str) -> bool:
        """Upstream's isMemberId: members and administrators alike."""
        return account_id in self.member_ids or account_id in self.administrator_ids

    # Queries with upstream's permission rules.
    def get_administrator_ids(self, account_id: str) -> list[str]:
        self._check_readable(account_id)
        return list(self.administrator_ids)

    def get_member_ids(self, account_id: str) -> list[str]:
        self._check_readable(account_id)
        return list(self.member_ids)

    def get_messages(self, account_id: str) -> list[Message]:
        self._check_readable(account_id)
        return list(self.messages.values())

    def _check_readable(self, account_id: str) -> None:
        if self.is_removed:
            raise DomainError(ErrorKind.NOT_FOUND, ALREADY_REMOVED)
        if not self.is_member(account_id):
            raise DomainError(ErrorKind.FORBIDDEN, NOT_MEMBER)

    # Snapshots: a plain JSON-able dict. Schema 2 is schema 1 plus `readMarkers` (always
    # written, so that an image that predates markers refuses the snapshot and replays the
    # events instead of dropping the markers); schema 1 snapshots read as "no markers".
    def to_snapshot(self) -> dict[str, Any]:
        snapshot: dict[str, Any] = {
            "schema": SNAPSHOT_SCHEMA,
            "id": self.id,
            "creatorId": self.creator_id,
            "title": self.title,
            "parentThreadId": self.parent_thread_id,
            "remarks": self.remarks,
            "administratorIds": list(self.administrator_ids),
            "memberIds": list(self.member_ids),
            "messages": [
                [
                    m.id,
                    m.sender_id,
                    m.text,
                    m.reply_message_id,
                    list(m.to_account_ids),
                    m.created_at,
                ]
                for m in self.messages.values()
            ],
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "removedAt": self.removed_at,
        }
        snapshot["readMarkers"] = [[a, m] for a, m in self.read_markers.items()]
        return snapshot

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> Thread:
        schema = data.get("schema")
        if schema not in (1, 2) or type(schema) is not int:
            raise ValueError(f"unsupported snapshot schema {schema!r}")
        if schema == 2 and not isinstance(data.get("readMarkers"), list):
            raise ValueError("a schema 2 snapshot must hold readMarkers")
        return cls(
            id=data["id"],
            creator_id=data["creatorId"],
            title=data["title"],
            parent_thread_id=data["parentThreadId"],
            remarks=data["remarks"],
            administrator_ids=dict.fromkeys(data["administratorIds"]),
            member_ids=dict.fromkeys(data["memberIds"]),
            messages={
                m[0]: Message(m[0], m[1], m[2], m[3], tuple(m[4]), m[5]) for m in data["messages"]
            },
            created_at=data["createdAt"],
            updated_at=data["updatedAt"],
            removed_at=data["removedAt"],
            read_markers={a: m for a, m in data.get("readMarkers", ())},
        )


def _new_ids(existing: dict[str, None], requested: Iterable[str]) -> tuple[str, ...]:
    """Requested ids not yet present, de-duplicated, in request order."""
    return tuple(i for i in dict.fromkeys(requested) if i not in existing)


def _present_ids(existing: dict[str, None], requested: Iterable[str]) -> tuple[str, ...]:
    return tuple(i for i in dict.fromkeys(requested) if i in existing)


def _check_lengths(command: CreateThread) -> None:
    errors = []
    if len(command.title) > limits.TITLE_MAX_LENGTH:
        errors.append(FieldError("title", "title is too long"))
    if command.remarks is not None and len(command.remarks) > limits.REMARKS_MAX_LENGTH:
        errors.append(FieldError("remarks", "remarks is too long"))
    if not command.administrator_ids:
        errors.append(FieldError("administratorIds", "administrator-ids is empty"))
    if errors:
        raise ValidationError(errors)


def _live(thread: Thread | None) -> Thread:
    if thread is None:
        raise DomainError(ErrorKind.NOT_FOUND, NOT_FOUND)
    if thread.is_removed:
        raise DomainError(ErrorKind.NOT_FOUND, ALREADY_REMOVED)
    return thread


def _administered(thread: Thread | None, account_id: str) -> Thread:
    thread = _live(thread)
    if not thread.is_administrator(account_id):
        raise DomainError(ErrorKind.FORBIDDEN, NOT_ADMINISTRATOR)
    return thread


def _own_live_message(thread: Thread | None, command: EditMessage) -> Message:
    t = _live(thread)
    if not t.is_member(command.account_id):
        raise DomainError(ErrorKind.FORBIDDEN, EDITOR_NOT_MEMBER)
    message = t.messages.get(command.message_id)
    if message is None:
        raise DomainError(ErrorKind.NOT_FOUND, MESSAGE_NOT_FOUND)
    if message.sender_id != command.account_id:
        raise DomainError(ErrorKind.FORBIDDEN, EDITOR_NOT_SENDER)
    if len(command.text) > limits.TEXT_MAX_LENGTH:
        raise ValidationError([FieldError("text", "too long text")])
    return message


def _marker_moves_forward(thread: Thread | None, command: MoveReadMarker) -> bool:
    """Whether the marker moves (to a later message than it names); refusals raise."""
    t = _live(thread)
    if not t.is_member(command.account_id):
        raise DomainError(ErrorKind.FORBIDDEN, READER_NOT_MEMBER)
    if command.message_id not in t.messages:
        raise DomainError(ErrorKind.NOT_FOUND, MESSAGE_NOT_FOUND)
    if command.account_id not in t.read_markers:
        return True
    current = t.read_markers[command.account_id]
    if current is None:  # before every live message
        return True
    order = list(t.messages)  # posting order; the named message is live (see evolve)
    return order.index(command.message_id) > order.index(current)


def _markers_after_removal(thread: Thread, removed: Iterable[str]) -> None:
    """Markers on removed messages move back to the nearest earlier live message."""
    gone = set(removed)
    if not any(m in gone for m in thread.read_markers.values()):
        return
    previous: dict[str, str | None] = {}
    last_live: str | None = None
    for message_id in thread.messages:
        if message_id in gone:
            previous[message_id] = last_live
        else:
            last_live = message_id
    for account, marked in thread.read_markers.items():
        if marked in previous:
            thread.read_markers[account] = previous[marked]


def decide(thread: Thread | None, command: Command) -> list[Event]:
    """The events `command` causes on `thread` (None: not created), or a DomainError."""
    at, actor, tid = command.at, command.account_id, command.thread_id
    match command:
        case CreateThread():
            if thread is not None:
                raise DomainError(ErrorKind.CONFLICT, ALREADY_CREATED)
            _check_lengths(command)
            admins = tuple(dict.fromkeys(command.administrator_ids))
            members = tuple(dict.fromkeys(command.member_ids))
            if len(admins) > limits.ADMINISTRATORS_LIMIT or len(members) > limits.MEMBERS_LIMIT:
                raise DomainError(ErrorKind.CONFLICT, "too many administrators or members")
            return [
                ThreadCreated(
                    tid,
                    actor,
                    at,
                    command.title,
                    admins,
                    members,
                    command.parent_thread_id,
                    command.remarks,
                )
            ]
        case DestroyThread():
            _administered(thread, actor)
            return [ThreadDestroyed(tid, actor, at)]
        case JoinAdministratorIds():
            t = _administered(thread, actor)
            new = _new_ids(t.administrator_ids, command.account_ids)
            if len(t.administrator_ids) + len(new) > limits.ADMINISTRATORS_LIMIT:
                raise DomainError(ErrorKind.CONFLICT, "The limit of administrators is over")
            return [AdministratorIdsJoined(tid, actor, at, new)] if new else []
        case LeaveAdministratorIds():
            t = _administered(thread, actor)
            gone = _present_ids(t.administrator_ids, command.account_ids)
            if gone and len(gone) == len(t.administrator_ids):
                raise DomainError(ErrorKind.CONFLICT, ADMINISTRATORS_EMPTY)
            return [AdministratorIdsLeft(tid, actor, at, gone)] if gone else []
        case JoinMemberIds():
            t = _administered(thread, actor)
            new = _new_ids(t.member_ids, command.account_ids)
            if len(t.member_ids) + len(new) > limits.MEMBERS_LIMIT:
                raise DomainError(ErrorKind.CONFLICT, "The limit of members is over")
            return [MemberIdsJoined(tid, actor, at, new)] if new else []
        case LeaveMemberIds():
            t = _administered(thread, actor)
            gone = _present_ids(t.member_ids, command.account_ids)
            return [MemberIdsLeft(tid, actor, at, gone)] if gone else []
        case AddMessages():
            t = _live(thread)
            if not command.messages:
                return []
            if not t.is_member(actor):
                raise DomainError(ErrorKind.FORBIDDEN, NOT_MEMBER)
            if len(t.messages) + len(command.messages) > limits.MESSAGES_LIMIT:
                raise DomainError(ErrorKind.CONFLICT, MESSAGES_LIMIT_OVER)
            ids = [m.id for m in command.messages]
            if len(set(ids)) != len(ids) or any(i in t.messages for i in ids):
                raise DomainError(ErrorKind.CONFLICT, "message id already exists")
            too_long = [
                i for i, m in enumerate(command.messages) if len(m.text) > limits.TEXT_MAX_LENGTH
            ]
            if too_long:
                raise ValidationError(
                    [FieldError(f"messages[{i}].text", "too long text") for i in too_long]
                )
            return [
                MessagesAdded(
                    tid,
                    actor,
                    at,
                    tuple(
                        AddedMessage(m.id, m.text, m.reply_message_id, tuple(m.to_account_ids))
                        for m in command.messages
                    ),
                )
            ]
        case RemoveMessages():
            t = _live(thread)
            if not t.is_member(actor):
                raise DomainError(ErrorKind.FORBIDDEN, REMOVER_NOT_MEMBER)
            found = [t.messages[i] for i in dict.fromkeys(command.message_ids) if i in t.messages]
            if any(m.sender_id != actor for m in found):
                raise DomainError(ErrorKind.FORBIDDEN, REMOVER_NOT_SENDER)
            return [MessagesRemoved(tid, actor, at, tuple(m.id for m in found))] if found else []
        case EditMessage():
            message = _own_live_message(thread, command)
            if message.text == command.text:
                return []  # nothing changes
            return [MessageEdited(tid, actor, at, message.id, command.text)]
        case MoveReadMarker():
            if not _marker_moves_forward(thread, command):
                return []  # a marker never moves back
            return [ReadMarkerMoved(tid, actor, at, command.message_id)]
    raise TypeError(f"not a thread command: {command!r}")


def evolve(thread: Thread | None, event: Event) -> Thread:
    """Apply one event. Mutates and returns `thread` (see the module docstring)."""
    if isinstance(event, ThreadCreated):
        return Thread(
            id=event.thread_id,
            creator_id=event.account_id,
            title=event.title,
            parent_thread_id=event.parent_thread_id,
            remarks=event.remarks,
            administrator_ids=dict.fromkeys(event.administrator_ids),
            member_ids=dict.fromkeys(event.member_ids),
            messages={},
            created_at=event.occurred_at,
            updated_at=event.occurred_at,
        )
    if thread is None:
        raise ValueError(f"{type(event).__name__} before ThreadCreated for {event.thread_id}")
    if isinstance(event, ReadMarkerMoved):  # reading changes the reader's marker, not the thread
        thread.read_markers[event.account_id] = event.message_id
        return thread
    thread.updated_at = event.occurred_at
    match event:
        case ThreadDestroyed():
            thread.removed_at = event.occurred_at
        case AdministratorIdsJoined():
            thread.administrator_ids.update(dict.fromkeys(event.administrator_ids))
        case AdministratorIdsLeft():
            for i in event.administrator_ids:
                thread.administrator_ids.pop(i, None)
        case MemberIdsJoined():
            thread.member_ids.update(dict.fromkeys(event.member_ids))
        case MemberIdsLeft():
            for i in event.member_ids:
                thread.member_ids.pop(i, None)
        case MessagesAdded():
            for m in event.messages:
                thread.messages[m.id] = Message(
                    m.id,
                    event.account_id,
                    m.text,
                    m.reply_message_id,
                    m.to_account_ids,
                    event.occurred_at,
                )
        case MessagesRemoved():
            _markers_after_removal(thread, event.message_ids)
            for i in event.message_ids:
                thread.messages.pop(i, None)
        case MessageEdited():
            message = thread.messages.get(event.message_id)
            if message is not None:  # replaced, not mutated: callers may hold the old value
                thread.messages[event.message_id] = replace(message, text=event.text)
    return thread


def replay(events: Iterable[Event], thread: Thread | None = None) -> Thread | None:
    for event in events:
        thread = evolve(thread, event)
    return thread
