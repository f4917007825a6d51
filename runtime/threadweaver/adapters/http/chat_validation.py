"""Wire JSON -> the edit and read-marker commands, in the style of validation.py (every field
error at once, each naming its field; ids canonicalised to upper case)."""

from __future__ import annotations

from typing import Any

from ...domain import limits
from ...domain.commands import EditMessage, MoveReadMarker
from .validation import _MISSING as MISSING
from .validation import Errors, create_at, path_thread_id, text, ulid
from .validation import _valid as valid


def edit_message(raw_thread_id: str, body: dict[str, Any]) -> EditMessage:
    e = Errors()
    thread_id = path_thread_id(e, raw_thread_id)
    account_id = ulid(e, "accountId", body.get("accountId", MISSING))
    message_id = ulid(e, "messageId", body.get("messageId", MISSING))
    new_text = text(e, "text", body.get("text", MISSING), limits.TEXT_MAX_LENGTH, "too long text")
    at = create_at(e, body.get("createAt", MISSING))
    e.raise_if_any()
    return EditMessage(
        thread_id=valid(thread_id),
        account_id=valid(account_id),
        message_id=valid(message_id),
        text=valid(new_text),
        at=valid(at),
    )


def move_read_marker(raw_thread_id: str, body: dict[str, Any]) -> MoveReadMarker:
    e = Errors()
    thread_id = path_thread_id(e, raw_thread_id)
    account_id = ulid(e, "accountId", body.get("accountId", MISSING))
    message_id = ulid(e, "messageId", body.get("messageId", MISSING))
    at = create_at(e, body.get("createAt", MISSING))
    e.raise_if_any()
    return MoveReadMarker(
        thread_id=valid(thread_id),
        account_id=valid(account_id),
        message_id=valid(message_id),
        at=valid(at),
    )
