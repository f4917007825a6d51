"""Cursors of the message pages (`GET /v1/threads/{thread_id}/messages?cursor=`): opaque to
clients, a cursor is the position of the last message of the previous page (application/ports.py
`MessagePage`; positions never change and are unique within a thread), as the base64url form of
its 8 bytes, big-endian, without padding: 11 characters, the first of which keeps the position
below 2**63. Every string of that form is a place in a thread's posting order, so the OpenAPI
pattern says exactly which cursors are accepted; anything else is a 400 naming `cursor`.
An empty `cursor` asks for the first page.
"""

from __future__ import annotations

import base64
import binascii
import re

from .errors import ApiError

CURSOR = "cursor"
CURSOR_MAX_LENGTH = 11
# first character: the top bit is 0 (positions are signed 64-bit); last: 4 bits then padding
CURSOR_PATTERN = "^([A-Za-f][A-Za-z0-9_-]{9}[AEIMQUYcgkosw048])?$"
CURSOR_INVALID = "must be empty or a next_cursor of this route's answers"
_CURSOR_RE = re.compile(CURSOR_PATTERN)


def encode(position: int) -> str:
    return base64.urlsafe_b64encode(position.to_bytes(8, "big")).decode().rstrip("=")


def decode(raw: str) -> int | None:
    """The position after which the page starts (None: the first page), or ApiError 400."""
    if raw == "":
        return None
    if _CURSOR_RE.fullmatch(raw):
        try:
            return int.from_bytes(base64.urlsafe_b64decode(raw + "="), "big")
        except (binascii.Error, ValueError):  # pragma: no cover - the pattern excludes it
            pass
    raise ApiError(400, [f"{CURSOR}: {CURSOR_INVALID}"])
