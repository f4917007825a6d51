"""The Thread aggregate: state, the rules that decide events from commands, and replay.

`decide(thread, command)` checks the rules and returns the events the command causes (an empty
list when it changes nothing, e.g. joining ids that are already there); it never mutates.
`evolve(thread, event)` applies one event. For speed, evolve mutates the Thread it is given
(a thread with 5,000 messages must not be copied per event); each entity owns its state alone.

Rules follow upstream thread-weaver with its bugs fixed: leave-members removes ids (upstream
added them), `parentThreadId` is kept, joins do not duplicate ids, and the last administrator
cannot leave.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import limits
from .commands import (
    AddMessages,
    Command,
    CreateThread,
    DestroyThread,
    JoinAdministratorIds,
    JoinMemberIds,
    LeaveAdministratorIds,
    LeaveMemberIds,
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
    MessagesAdded,
    MessagesRemoved,
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

    @property
    def size(self) -> int:
        """How many items the state holds (what a snapshot's cost grows with)."""
        return len(self.messages) + len(self.administrator_ids) + len(self.member_ids)

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

    # Snapshots: a plain JSON-able dict.
    def to_snapshot(self) -> dict[str, Any]:
        return {
            "schema": 1,
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

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> Thread:
        if data.get("schema") != 1:
            raise ValueError(f"unsupported snapshot schema {data.get('schema')!r}")
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
            for i in event.message_ids:
                thread.messages.pop(i, None)
    return thread


def replay(events: Iterable[Event], thread: Thread | None = None) -> Thread | None:
    for event in events:
        thread = evolve(thread, event)
    return thread
