"""Wire JSON -> domain commands, and query-string parsing.

Every function collects ALL field errors before failing, each message naming its field
(`accountIds[2]: ulidString must be exactly 26 chars long.`), and raises `ApiError(400, ...)`.
Unknown fields are ignored; ids are canonicalised to upper case; optional fields may be
omitted or null. The OpenAPI schemas in `openapi.py` are built from the same constants.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from ...domain import limits
from ...domain.commands import (
    AddMessages,
    CreateThread,
    DestroyThread,
    JoinAdministratorIds,
    JoinMemberIds,
    LeaveAdministratorIds,
    LeaveMemberIds,
    NewMessage,
    RemoveMessages,
)
from ...domain.ids import ulid_error
from .errors import ApiError

#: `createAt` bounds: epoch milliseconds up to the end of year 9999.
CREATE_AT_MAX = 253_402_300_799_999
#: `offset` upper bound (keeps SQL OFFSET in range everywhere).
OFFSET_MAX = 2_147_483_647
#: at most this many field errors are reported; the rest are summarised in one line.
MAX_REPORTED_ERRORS = 100
#: the `Idempotency-Key` request header of commands
IDEMPOTENCY_KEY = "Idempotency-Key"
IDEMPOTENCY_KEY_PATTERN = "^[A-Za-z0-9_.:-]{1,128}$"
IDEMPOTENCY_KEY_INVALID = "must be 1 to 128 characters of A-Z a-z 0-9 _ . : -"
_IDEMPOTENCY_KEY_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

REQUIRED = "is required"
NOT_A_LIST = "must be an array"
NOT_AN_OBJECT = "must be an object"
NOT_A_STRING = "must be a string"
ADMINS_EMPTY = "administrator-ids is empty"
CREATE_AT_INVALID = f"must be an integer between 0 and {CREATE_AT_MAX} (epoch milliseconds)"

_MISSING: Any = object()


class Errors(list):
    """Field errors of one request, in the order found."""

    __slots__ = ()

    def add(self, field: str, message: str) -> None:
        self.append(f"{field}: {message}")

    def raise_if_any(self) -> None:
        if self:
            if len(self) > MAX_REPORTED_ERRORS:
                rest = len(self) - MAX_REPORTED_ERRORS
                del self[MAX_REPORTED_ERRORS:]
                self.append(f"... and {rest} more errors")
            raise ApiError(400, list(self))


# ---------------------------------------------------------------------------------------------
# Field parsers: return the parsed value, or None after recording an error.
# ---------------------------------------------------------------------------------------------


def ulid(errors: Errors, field: str, value: Any) -> str | None:
    if value is _MISSING:
        errors.add(field, REQUIRED)
        return None
    err = ulid_error(value)
    if err is not None:
        errors.add(field, err)
        return None
    return value.upper()


def optional_ulid(errors: Errors, field: str, value: Any) -> str | None:
    if value is _MISSING or value is None:
        return None
    return ulid(errors, field, value)


def text(errors: Errors, field: str, value: Any, max_length: int, too_long: str) -> str | None:
    if value is _MISSING:
        errors.add(field, REQUIRED)
        return None
    if type(value) is not str:
        errors.add(field, NOT_A_STRING)
        return None
    if len(value) > max_length:
        errors.add(field, too_long)
        return None
    return value


def optional_text(
    errors: Errors, field: str, value: Any, max_length: int, too_long: str
) -> str | None:
    if value is _MISSING or value is None:
        return None
    return text(errors, field, value, max_length, too_long)


def ulid_list(
    errors: Errors,
    field: str,
    value: Any,
    *,
    non_empty: str | None = None,
    max_items: int = limits.IDS_PER_REQUEST_LIMIT,
) -> tuple[str, ...] | None:
    if value is _MISSING:
        errors.add(field, REQUIRED)
        return None
    if type(value) is not list:
        errors.add(field, NOT_A_LIST)
        return None
    if len(value) > max_items:
        errors.add(field, f"at most {max_items} items are allowed")
        return None
    if not value and non_empty is not None:
        errors.add(field, non_empty)
        return None
    out = []
    before = len(errors)
    for i, item in enumerate(value):
        err = ulid_error(item)
        if err is None:
            out.append(item.upper())
        else:
            errors.add(f"{field}[{i}]", err)
    return tuple(out) if len(errors) == before else None


def create_at(errors: Errors, value: Any) -> int | None:
    if value is _MISSING:
        errors.add("createAt", REQUIRED)
        return None
    kind = type(value)
    if kind is float and value.is_integer():  # JSON Schema: 1.0 is an integer
        value = int(value)
        kind = int
    if kind is not int or not 0 <= value <= CREATE_AT_MAX:
        errors.add("createAt", CREATE_AT_INVALID)
        return None
    return value


def path_thread_id(errors: Errors, value: str) -> str | None:
    err = ulid_error(value)
    if err is not None:
        errors.add("thread_id", err)
        return None
    return value.upper()


def idempotency_key(headers: Any) -> str | None:
    """The request's `Idempotency-Key` (None without one), or ApiError 400 naming the header.
    `headers` is a multidict (aiohttp's request.headers)."""
    values = headers.getall(IDEMPOTENCY_KEY, ())
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, [f"{IDEMPOTENCY_KEY}: give the header once"])
    if _IDEMPOTENCY_KEY_RE.fullmatch(values[0]) is None:
        raise ApiError(400, [f"{IDEMPOTENCY_KEY}: {IDEMPOTENCY_KEY_INVALID}"])
    return values[0]


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------

_T = TypeVar("_T")


def _valid(value: _T | None) -> _T:
    """A required field's value once `Errors.raise_if_any()` passed: its validator returns None
    only after recording an error, so None here is a bug of this module."""
    if value is None:
        raise AssertionError("a required field is None although no error was recorded")
    return value


def create_thread(body: dict[str, Any], new_id: Callable[[], str]) -> CreateThread:
    """The command; its thread id comes from `new_id`, called only once the body is valid."""
    e = Errors()
    get = body.get
    account_id = ulid(e, "accountId", get("accountId", _MISSING))
    parent = optional_ulid(e, "parentThreadId", get("parentThreadId", _MISSING))
    title = text(e, "title", get("title", _MISSING), limits.TITLE_MAX_LENGTH, "title is too long")
    remarks = optional_text(
        e, "remarks", get("remarks", _MISSING), limits.REMARKS_MAX_LENGTH, "remarks is too long"
    )
    admins = ulid_list(
        e, "administratorIds", get("administratorIds", _MISSING), non_empty=ADMINS_EMPTY
    )
    members = ulid_list(e, "memberIds", get("memberIds", _MISSING))
    at = create_at(e, get("createAt", _MISSING))
    e.raise_if_any()
    return CreateThread(
        thread_id=new_id(),
        account_id=_valid(account_id),
        title=_valid(title),
        administrator_ids=_valid(admins),
        member_ids=_valid(members),
        parent_thread_id=parent,
        remarks=remarks,
        at=_valid(at),
    )


def destroy_thread(raw_thread_id: str, body: dict[str, Any]) -> DestroyThread:
    e = Errors()
    thread_id = path_thread_id(e, raw_thread_id)
    account_id = ulid(e, "accountId", body.get("accountId", _MISSING))
    at = create_at(e, body.get("createAt", _MISSING))
    e.raise_if_any()
    return DestroyThread(thread_id=_valid(thread_id), account_id=_valid(account_id), at=_valid(at))


def _ids_command(
    cls: Callable[..., Any],
    raw_thread_id: str,
    body: dict[str, Any],
    *,
    alias: str | None = None,
    non_empty: str | None = None,
) -> Any:
    e = Errors()
    thread_id = path_thread_id(e, raw_thread_id)
    account_id = ulid(e, "accountId", body.get("accountId", _MISSING))
    field = "accountIds"
    value = body.get(field, _MISSING)
    ids = None
    if alias is not None and alias in body and value is not _MISSING:
        e.add(alias, f"give either accountIds or its alias {alias}, not both")
    else:
        if alias is not None and alias in body:
            field, value = alias, body[alias]
        ids = ulid_list(e, field, value, non_empty=non_empty)
    at = create_at(e, body.get("createAt", _MISSING))
    e.raise_if_any()
    return cls(thread_id=thread_id, account_id=account_id, account_ids=ids, at=at)


def join_administrator_ids(raw_thread_id: str, body: dict[str, Any]) -> JoinAdministratorIds:
    return _ids_command(JoinAdministratorIds, raw_thread_id, body, non_empty=ADMINS_EMPTY)


def leave_administrator_ids(raw_thread_id: str, body: dict[str, Any]) -> LeaveAdministratorIds:
    """`accountIds`, or upstream's `administratorIds` as an alias (give one of the two)."""
    return _ids_command(
        LeaveAdministratorIds, raw_thread_id, body, alias="administratorIds", non_empty=ADMINS_EMPTY
    )


def join_member_ids(raw_thread_id: str, body: dict[str, Any]) -> JoinMemberIds:
    return _ids_command(JoinMemberIds, raw_thread_id, body)


def leave_member_ids(raw_thread_id: str, body: dict[str, Any]) -> LeaveMemberIds:
    return _ids_command(LeaveMemberIds, raw_thread_id, body)


def add_messages(
    raw_thread_id: str, body: dict[str, Any], new_id: Callable[[], str]
) -> AddMessages:
    """The command; each message gets an id from `new_id`, once the whole body is valid."""
    e = Errors()
    thread_id = path_thread_id(e, raw_thread_id)
    account_id = ulid(e, "accountId", body.get("accountId", _MISSING))
    raw = body.get("messages", _MISSING)
    parsed: list[tuple[str, str | None, tuple[str, ...]]] = []
    if raw is _MISSING:
        e.add("messages", REQUIRED)
    elif type(raw) is not list:
        e.add("messages", NOT_A_LIST)
    elif len(raw) > limits.MESSAGES_PER_REQUEST_LIMIT:
        e.add("messages", f"at most {limits.MESSAGES_PER_REQUEST_LIMIT} items are allowed")
    else:
        for i, m in enumerate(raw):
            if type(m) is not dict:
                e.add(f"messages[{i}]", NOT_AN_OBJECT)
                continue
            prefix = f"messages[{i}]."
            reply = optional_ulid(e, prefix + "replyMessageId", m.get("replyMessageId", _MISSING))
            to = ulid_list(e, prefix + "toAccountIds", m.get("toAccountIds", _MISSING))
            body_text = text(
                e, prefix + "text", m.get("text", _MISSING), limits.TEXT_MAX_LENGTH, "too long text"
            )
            if body_text is not None and to is not None:  # else an error is recorded
                parsed.append((body_text, reply, to))
    at = create_at(e, body.get("createAt", _MISSING))
    e.raise_if_any()
    messages = tuple(
        NewMessage(id=new_id(), text=t, reply_message_id=r, to_account_ids=to)
        for t, r, to in parsed
    )
    return AddMessages(
        thread_id=_valid(thread_id), account_id=_valid(account_id), messages=messages, at=_valid(at)
    )


def remove_messages(raw_thread_id: str, body: dict[str, Any]) -> RemoveMessages:
    e = Errors()
    thread_id = path_thread_id(e, raw_thread_id)
    account_id = ulid(e, "accountId", body.get("accountId", _MISSING))
    ids = ulid_list(e, "messageIds", body.get("messageIds", _MISSING))
    at = create_at(e, body.get("createAt", _MISSING))
    e.raise_if_any()
    return RemoveMessages(
        thread_id=_valid(thread_id),
        account_id=_valid(account_id),
        message_ids=_valid(ids),
        at=_valid(at),
    )


# ---------------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------------


def _non_negative_int(e: Errors, field: str, raw: str, low: int, high: int) -> int | None:
    if raw.isascii() and raw.isdigit() and len(raw) <= 19:
        value = int(raw)
        if low <= value <= high:
            return value
    e.add(field, f"must be an integer between {low} and {high}")
    return None


def query_params(
    query: Any,
    default_limit: int,
    max_limit: int,
    raw_thread_id: str | None = None,
    paged: bool = True,
) -> tuple[str | None, str, int, int]:
    """(thread_id, account_id, offset, limit) from a request's query (and path thread id).
    Without `paged`, offset and limit are ignored (get-thread)."""
    e = Errors()
    thread_id = None if raw_thread_id is None else path_thread_id(e, raw_thread_id)
    raw = query.get("account_id")
    account_id = None
    if raw is None:
        e.add("account_id", REQUIRED)
    else:
        account_id = ulid(e, "account_id", raw)
    offset, limit = 0, default_limit
    if paged:
        raw = query.get("offset")
        if raw is not None:
            offset = _non_negative_int(e, "offset", raw, 0, OFFSET_MAX) or 0
        raw = query.get("limit")
        if raw is not None:
            limit = _non_negative_int(e, "limit", raw, 1, max_limit) or default_limit
    e.raise_if_any()  # the `or` defaults above are never returned: a None recorded an error
    return thread_id, _valid(account_id), offset, limit
