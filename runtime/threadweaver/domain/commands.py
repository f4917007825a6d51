"""Commands to the Thread aggregate. Ids and times arrive inside the command (the application
generates message ids; `at` is the client's `createAt` in epoch milliseconds, as upstream)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NewMessage:
    id: str
    text: str
    reply_message_id: str | None = None
    to_account_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CreateThread:
    thread_id: str
    account_id: str  # the creator; need not be an administrator (upstream rule)
    title: str
    administrator_ids: tuple[str, ...]
    member_ids: tuple[str, ...] = ()
    parent_thread_id: str | None = None
    remarks: str | None = None
    at: int = 0
    idempotency_key: str | None = None  # request metadata; decide ignores it


@dataclass(frozen=True, slots=True)
class DestroyThread:
    thread_id: str
    account_id: str
    at: int = 0
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class JoinAdministratorIds:
    thread_id: str
    account_id: str
    account_ids: tuple[str, ...]
    at: int = 0
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class LeaveAdministratorIds:
    thread_id: str
    account_id: str
    account_ids: tuple[str, ...]
    at: int = 0
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class JoinMemberIds:
    thread_id: str
    account_id: str
    account_ids: tuple[str, ...]
    at: int = 0
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class LeaveMemberIds:
    thread_id: str
    account_id: str
    account_ids: tuple[str, ...]
    at: int = 0
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class AddMessages:
    thread_id: str
    account_id: str  # the sender of every message
    messages: tuple[NewMessage, ...]
    at: int = 0
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class RemoveMessages:
    thread_id: str
    account_id: str
    message_ids: tuple[str, ...]
    at: int = 0
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class EditMessage:
    """Replace the text of one of the sender's own live messages."""

    thread_id: str
    account_id: str  # must be the message's sender
    message_id: str
    text: str
    at: int = 0
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class MoveReadMarker:
    """The account has read the thread up to and including `message_id` (forward only)."""

    thread_id: str
    account_id: str
    message_id: str
    at: int = 0
    idempotency_key: str | None = None


Command = (
    CreateThread
    | DestroyThread
    | JoinAdministratorIds
    | LeaveAdministratorIds
    | JoinMemberIds
    | LeaveMemberIds
    | AddMessages
    | RemoveMessages
    | EditMessage
    | MoveReadMarker
)
