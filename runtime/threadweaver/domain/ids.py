"""ULID identifiers (26 characters of Crockford base32), as upstream uses for every id."""

from __future__ import annotations

import os
import re
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_DECODE.update({c.lower(): i for c, i in list(_DECODE.items())})
THREAD_PID_PREFIX = "thread-"


# Two base32 characters per 10 bits: 13 table lookups encode a ULID (hot path: every id).
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_VALID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}")


def new_ulid(timestamp_ms: int | None = None, randomness: bytes | None = None) -> str:
    """A new ULID. Time and randomness may be given, which keeps callers testable."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    rnd = os.urandom(10) if randomness is None else randomness
    value = (ts << 80) | int.from_bytes(rnd, "big")
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in range(120, -10, -10)])


def ulid_error(text: object) -> str | None:
    """Why `text` is not a ULID (sulky's wording), or None when it is one."""
    if not isinstance(text, str):
        return "must be a string"
    if _VALID.fullmatch(text):  # the common case, without the character loop
        return None
    if len(text) != 26:
        return "ulidString must be exactly 26 chars long."
    for ch in text:
        if ch not in _DECODE:
            return f"Illegal character '{ch}'!"
    if _DECODE[text[0]] > 7:
        return "ulidString must not exceed '7ZZZZZZZZZZZZZZZZZZZZZZZZZ'!"
    return None


def is_ulid(text: object) -> bool:
    return ulid_error(text) is None


def parse_ulid(text: str) -> str:
    """The canonical (upper-case) form of a valid ULID; raises ValueError otherwise."""
    err = ulid_error(text)
    if err:
        raise ValueError(err)
    return text.upper()


def ulid_timestamp_ms(text: str) -> int:
    value = 0
    for ch in text[:10]:
        value = (value << 5) | _DECODE[ch]
    return value


def thread_persistence_id(thread_id: str) -> str:
    return THREAD_PID_PREFIX + thread_id


def thread_id_of(persistence_id: str) -> str:
    if not persistence_id.startswith(THREAD_PID_PREFIX):
        raise ValueError(f"not a thread persistence id: {persistence_id!r}")
    return persistence_id[len(THREAD_PID_PREFIX) :]
