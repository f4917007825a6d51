"""Commands, events and refusals as JSON, for forwarding a command to the member owning its shard.

The forwarding member has already generated every id (thread id, message ids), so the owner runs
exactly the command the client's request became: no id is generated twice. Events travel at
their types' current schema versions and are read through the event mapper's upcasters
(application/event_schema.py), as stored events are: during a rolling upgrade an owner of the
previous image answers in the versions it writes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..domain import (
    DomainError,
    ErrorKind,
    FieldError,
    ValidationError,
)
from ..domain import commands as c
from ..domain.events import Event
from .event_mapper import MAPPER

_COMMANDS = {
    cls.__name__: cls
    for cls in (
        c.CreateThread,
        c.DestroyThread,
        c.JoinAdministratorIds,
        c.LeaveAdministratorIds,
        c.JoinMemberIds,
        c.LeaveMemberIds,
        c.AddMessages,
        c.RemoveMessages,
        c.EditMessage,
        c.MoveReadMarker,
    )
}


def command_to_json(command: c.Command) -> dict[str, Any]:
    data = dataclasses.asdict(command)
    if data.get("idempotency_key") is None:
        # Absent rather than null: a member of the previous version (rolling upgrade) does not
        # know the field, and an unkeyed command must stay readable to it.
        data.pop("idempotency_key", None)
    data["type"] = type(command).__name__
    return data


def command_from_json(data: dict[str, Any]) -> c.Command:
    data = dict(data)
    cls = _COMMANDS.get(data.pop("type", None))
    if cls is None:
        raise ValueError("unknown command type")
    if cls is c.AddMessages:
        data["messages"] = tuple(
            c.NewMessage(
                m["id"], m["text"], m.get("reply_message_id"), tuple(m.get("to_account_ids", ()))
            )
            for m in data["messages"]
        )
    for key in ("administrator_ids", "member_ids", "account_ids", "message_ids"):
        if key in data:
            data[key] = tuple(data[key])
    return cls(**data)


def events_to_json(events: list[Event]) -> list[dict[str, Any]]:
    return [{"type": e.TYPE, "payload": MAPPER.schemas.to_payload(e)} for e in events]


def events_from_json(data: list[dict[str, Any]]) -> list[Event]:
    return [MAPPER.schemas.to_domain(e["type"], e["payload"]) for e in data]


def error_to_json(exc: Exception) -> dict[str, Any] | None:
    if isinstance(exc, DomainError):
        return {"kind": exc.kind.value, "message": exc.message}
    if isinstance(exc, ValidationError):
        return {"kind": "validation", "errors": [[e.field, e.message] for e in exc.errors]}
    return None


def error_from_json(data: dict[str, Any]) -> Exception:
    if data.get("kind") == "validation":
        return ValidationError([FieldError(f, m) for f, m in data["errors"]])
    return DomainError(ErrorKind(data["kind"]), data["message"])
