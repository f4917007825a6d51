"""The domain events and their JSON payloads.

Payloads are plain dicts with camelCase keys and a `schema` version. Every event carries
`threadId`, the acting `accountId` and `occurredAt` (epoch milliseconds, the command's time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class ThreadCreated:
    TYPE: ClassVar[str] = "ThreadCreated"
    thread_id: str
    account_id: str
    occurred_at: int
    title: str
    administrator_ids: tuple[str, ...]
    member_ids: tuple[str, ...]
    parent_thread_id: str | None = None
    remarks: str | None = None


@dataclass(frozen=True, slots=True)
class ThreadDestroyed:
    TYPE: ClassVar[str] = "ThreadDestroyed"
    thread_id: str
    account_id: str
    occurred_at: int


@dataclass(frozen=True, slots=True)
class AdministratorIdsJoined:
    TYPE: ClassVar[str] = "AdministratorIdsJoined"
    thread_id: str
    account_id: str
    occurred_at: int
    administrator_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AdministratorIdsLeft:
    TYPE: ClassVar[str] = "AdministratorIdsLeft"
    thread_id: str
    account_id: str
    occurred_at: int
    administrator_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MemberIdsJoined:
    TYPE: ClassVar[str] = "MemberIdsJoined"
    thread_id: str
    account_id: str
    occurred_at: int
    member_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MemberIdsLeft:
    TYPE: ClassVar[str] = "MemberIdsLeft"
    thread_id: str
    account_id: str
    occurred_at: int
    member_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AddedMessage:
    id: str
    text: str
    reply_message_id: str | None
    to_account_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MessagesAdded:
    TYPE: ClassVar[str] = "MessagesAdded"
    thread_id: str
    account_id: str  # the sender
    occurred_at: int
    messages: tuple[AddedMessage, ...]


@dataclass(frozen=True, slots=True)
class MessagesRemoved:
    TYPE: ClassVar[str] = "MessagesRemoved"
    thread_id: str
    account_id: str
    occurred_at: int
    message_ids: tuple[str, ...]  # only the ids actually removed


@dataclass(frozen=True, slots=True)
class MessageEdited:
    TYPE: ClassVar[str] = "MessageEdited"
    thread_id: str
    account_id: str  # the sender, the only account that may edit
    occurred_at: int
    message_id: str
    text: str  # the new text


@dataclass(frozen=True, slots=True)
class ReadMarkerMoved:
    TYPE: ClassVar[str] = "ReadMarkerMoved"
    thread_id: str
    account_id: str  # the reader, whose marker moved
    occurred_at: int
    message_id: str  # read up to and including this message


Event = (
    ThreadCreated
    | ThreadDestroyed
    | AdministratorIdsJoined
    | AdministratorIdsLeft
    | MemberIdsJoined
    | MemberIdsLeft
    | MessagesAdded
    | MessagesRemoved
    | MessageEdited
    | ReadMarkerMoved
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        ThreadCreated,
        ThreadDestroyed,
        AdministratorIdsJoined,
        AdministratorIdsLeft,
        MemberIdsJoined,
        MemberIdsLeft,
        MessagesAdded,
        MessagesRemoved,
        MessageEdited,
        ReadMarkerMoved,
    )
}

# Payload keys that differ from a plain snake->camel conversion of the field name.
_LIST_FIELDS = {
    "administrator_ids": "administratorIds",
    "member_ids": "memberIds",
    "message_ids": "messageIds",
}


def event_to_payload(event: Event) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "threadId": event.thread_id,
        "accountId": event.account_id,
        "occurredAt": event.occurred_at,
    }
    if isinstance(event, ThreadCreated):
        payload.update(
            title=event.title,
            remarks=event.remarks,
            parentThreadId=event.parent_thread_id,
            administratorIds=list(event.administrator_ids),
            memberIds=list(event.member_ids),
        )
    elif isinstance(event, MessagesAdded):
        payload["messages"] = [
            {
                "id": m.id,
                "text": m.text,
                "replyMessageId": m.reply_message_id,
                "toAccountIds": list(m.to_account_ids),
            }
            for m in event.messages
        ]
    elif isinstance(event, MessageEdited):
        payload.update(messageId=event.message_id, text=event.text)
    elif isinstance(event, ReadMarkerMoved):
        payload["messageId"] = event.message_id
    else:
        for field, key in _LIST_FIELDS.items():
            if hasattr(event, field):
                payload[key] = list(getattr(event, field))
    return payload


def event_from_payload(event_type: str, payload: dict[str, Any]) -> Event:
    """Rebuild an event from its stored form; raises ValueError on unknown types or schemas."""
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        raise ValueError(f"unknown event type {event_type!r}")
    schema = payload.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise ValueError(f"unsupported {event_type} schema {schema!r}")
    common = dict(
        thread_id=payload["threadId"],
        account_id=payload["accountId"],
        occurred_at=int(payload["occurredAt"]),
    )
    if cls is ThreadCreated:
        return ThreadCreated(
            **common,
            title=payload["title"],
            remarks=payload.get("remarks"),
            parent_thread_id=payload.get("parentThreadId"),
            administrator_ids=tuple(payload["administratorIds"]),
            member_ids=tuple(payload.get("memberIds", ())),
        )
    if cls is MessagesAdded:
        return MessagesAdded(
            **common,
            messages=tuple(
                AddedMessage(
                    id=m["id"],
                    text=m["text"],
                    reply_message_id=m.get("replyMessageId"),
                    to_account_ids=tuple(m.get("toAccountIds", ())),
                )
                for m in payload["messages"]
            ),
        )
    if cls is ThreadDestroyed:
        return ThreadDestroyed(**common)
    if cls is MessageEdited:
        return MessageEdited(**common, message_id=payload["messageId"], text=payload["text"])
    if cls is ReadMarkerMoved:
        return ReadMarkerMoved(**common, message_id=payload["messageId"])
    field = next(f for f in _LIST_FIELDS if f in cls.__dataclass_fields__)
    ids: dict[str, Any] = {field: tuple(payload[_LIST_FIELDS[field]])}
    return cls(**common, **ids)
