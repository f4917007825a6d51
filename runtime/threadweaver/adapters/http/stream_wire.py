"""The one wire format of stream events (text/event-stream), generic over the domain events:
an event's fields become the API's camelCase names, nested values too (a message's fields),
so that a new event type flows to clients with no change here.

    id: 7
    event: MessagesAdded
    data: {"threadId": "01H...", "seq": 7, "type": "MessagesAdded", "occurredAt": 17000...,
           "accountId": "01H...", "messages": [{"id": ..., "text": ..., ...}]}

(`data` is one line.) An account stream writes its own `id:` line instead of the seq.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any

import orjson

from ...domain import Event

# the envelope's fields, in this order before the event's own
_HEAD = ("thread_id", "occurred_at")


@lru_cache(maxsize=256)
def wire_name(field: str) -> str:
    """snake_case -> camelCase (`reply_message_id` -> `replyMessageId`)."""
    first, *rest = field.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def wire_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            wire_name(f.name): wire_value(getattr(value, f.name)) for f in dataclasses.fields(value)
        }
    if isinstance(value, (tuple, list, frozenset, set)):
        return [wire_value(v) for v in value]
    return value


def event_json(seq: int, event: Event) -> dict[str, Any]:
    """`threadId`, `seq`, `type`, `occurredAt`, then the event's other fields."""
    data: dict[str, Any] = {
        "threadId": event.thread_id,
        "seq": seq,
        "type": event.TYPE,
        "occurredAt": event.occurred_at,
    }
    for f in dataclasses.fields(event):
        if f.name not in _HEAD:
            data[wire_name(f.name)] = wire_value(getattr(event, f.name))
    return data


def frame(seq: int, event: Event) -> bytes:
    """The event's SSE frame in a thread stream (StreamHub's `encode`)."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        seq,
        event.TYPE.encode(),
        orjson.dumps(event_json(seq, event)),
    )
