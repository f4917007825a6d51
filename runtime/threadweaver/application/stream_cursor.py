"""The resume id of an account stream (`Last-Event-ID`), opaque to clients: every followed
thread's position (the seq of its last event sent), each thread named by a 48-bit hash of its
id so that the id stays short (16 characters a thread). Pure.

Form: `a1.` then, per thread, 16 base64url characters of 12 bytes: 6 bytes of the thread id's
hash, then the seq (6 bytes, big-endian). Every string of that form decodes (`PATTERN`), so a
client can only name positions, never break the stream. A collision of two hashes among one
account's threads (about 1 in 10^9 for 500 threads) would resume one of them from the other's
position.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping

PREFIX = "a1."
KEY_BYTES = 6
SEQ_BYTES = 6
ENTRY_CHARS = 16  # base64 of KEY_BYTES + SEQ_BYTES (12 bytes, no padding)
MAX_SEQ = (1 << (8 * SEQ_BYTES)) - 1
PATTERN = r"^a1[.]([A-Za-z0-9_-]{16})*$"
_FORM = re.compile(PATTERN)


class BadCursor(ValueError):
    """Not a resume id of an account stream."""


def thread_key(thread_id: str) -> bytes:
    return hashlib.blake2b(thread_id.encode(), digest_size=KEY_BYTES).digest()


def encode(positions: Mapping[bytes, int]) -> str:
    """`positions`: thread key (`thread_key`) -> seq of the last event sent."""
    raw = b"".join(
        key + min(seq, MAX_SEQ).to_bytes(SEQ_BYTES, "big") for key, seq in positions.items()
    )
    return PREFIX + base64.urlsafe_b64encode(raw).decode()


def decode(token: str) -> dict[bytes, int]:
    if not _FORM.match(token):
        raise BadCursor("not an account stream id")
    try:
        raw = base64.urlsafe_b64decode(token[len(PREFIX) :])
    except (binascii.Error, ValueError):
        raise BadCursor("not base64url") from None
    entry = KEY_BYTES + SEQ_BYTES
    return {
        raw[i : i + KEY_BYTES]: int.from_bytes(raw[i + KEY_BYTES : i + entry], "big")
        for i in range(0, len(raw), entry)
    }
