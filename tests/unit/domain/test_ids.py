"""ULIDs: generation, sulky-compatible validation messages, canonical form, persistence ids.

Upstream validates every id with sulky ULID (de.huxhorn.sulky.ulid.ULID.parseULID); its
messages reach clients in `error_messages`, so ours must read the same:
  - "ulidString must be exactly 26 chars long."
  - "Illegal character 'c'!"                      (internalParseCrockford)
  - "ulidString must not exceed '7ZZZZZZZZZZZZZZZZZZZZZZZZZ'!"
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadweaver.domain.ids import (
    is_ulid,
    new_ulid,
    parse_ulid,
    thread_id_of,
    thread_persistence_id,
    ulid_error,
    ulid_timestamp_ms,
)

ULID_RE = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
LENGTH = "ulidString must be exactly 26 chars long."
OVERFLOW = "ulidString must not exceed '7ZZZZZZZZZZZZZZZZZZZZZZZZZ'!"
MAX_TS = 2**48 - 1


def test_new_ulid_format() -> None:
    for _ in range(200):
        u = new_ulid()
        assert ULID_RE.match(u), u
        assert ulid_error(u) is None and is_ulid(u)
        assert parse_ulid(u) == u


def test_new_ulid_uses_the_clock() -> None:
    before = int(time.time() * 1000)
    u = new_ulid()
    after = int(time.time() * 1000)
    assert before <= ulid_timestamp_ms(u) <= after


def test_new_ulid_is_random() -> None:
    assert len({new_ulid() for _ in range(1000)}) == 1000


def test_new_ulid_timestamp_prefix_is_monotonic() -> None:
    prefixes = [new_ulid()[:10] for _ in range(2000)]
    assert prefixes == sorted(prefixes)


def test_known_vectors() -> None:
    # The ULID spec's example time part (1469918176385 ms -> 01ARYZ6S41).
    assert new_ulid(1469918176385, bytes(10)) == "01ARYZ6S41" + "0" * 16
    assert new_ulid(0, bytes(10)) == "0" * 26
    assert new_ulid(MAX_TS, b"\xff" * 10) == "7" + "Z" * 25
    assert new_ulid(0, b"\x00" * 9 + b"\x01") == "0" * 25 + "1"


@settings(max_examples=100, deadline=None)
@given(st.integers(0, MAX_TS), st.binary(min_size=10, max_size=10))
def test_timestamp_and_randomness_are_encoded(ts: int, rnd: bytes) -> None:
    u = new_ulid(ts, rnd)
    assert ULID_RE.match(u)
    assert ulid_timestamp_ms(u) == ts
    value = 0
    for ch in u:
        value = value * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".index(ch)
    assert value == (ts << 80) | int.from_bytes(rnd, "big")


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, MAX_TS - 1),
    st.integers(1, 1000),
    st.binary(min_size=10, max_size=10),
    st.binary(min_size=10, max_size=10),
)
def test_later_timestamp_sorts_later_whatever_the_randomness(ts, delta, r1, r2) -> None:
    later = min(ts + delta, MAX_TS)
    assert new_ulid(ts, r1) < new_ulid(later, r2)
    assert new_ulid(ts, r1)[:10] < new_ulid(later, r2)[:10]


@pytest.mark.parametrize("text", ["", "0", "0" * 25, "0" * 27, "0" * 52, "01ARYZ6S41 "])
def test_wrong_length(text: str) -> None:
    assert ulid_error(text) == LENGTH
    assert not is_ulid(text)
    with pytest.raises(ValueError, match=re.escape(LENGTH)):
        parse_ulid(text)


@pytest.mark.parametrize("first", list("89ABCDEFGHJKMNPQRSTVWXYZ") + list("89abcz"))
def test_timestamp_overflow(first: str) -> None:
    text = first + "0" * 25
    assert ulid_error(text) == OVERFLOW
    with pytest.raises(ValueError, match=re.escape(OVERFLOW)):
        parse_ulid(text)


def test_largest_valid_ulid() -> None:
    assert ulid_error("7" + "Z" * 25) is None
    assert ulid_error("7" + "z" * 25) is None
    assert ulid_error("0" * 26) is None


@pytest.mark.parametrize(
    "text, char",
    [
        ("U" + "0" * 25, "U"),  # in the timestamp part
        ("01ARYZ6S41-SV4RRFFQ69G5FAV", "-"),  # in the randomness part
    ],
)
def test_illegal_character_uses_sulky_wording(text: str, char: str) -> None:
    # sulky ULID.internalParseCrockford: "Illegal character '" + current + "'!"
    expected = f"Illegal character '{char}'!"
    assert not is_ulid(text)
    assert ulid_error(text) == expected
    with pytest.raises(ValueError, match=re.escape(expected)):
        parse_ulid(text)


def test_non_strings_are_refused() -> None:
    for value in (None, 123, b"0" * 26, ["0"] * 26):
        assert ulid_error(value) is not None
        assert not is_ulid(value)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, MAX_TS), st.binary(min_size=10, max_size=10), st.integers(0, 2**26 - 1))
def test_parse_canonicalises_case(ts: int, rnd: bytes, lower_mask: int) -> None:
    canonical = new_ulid(ts, rnd)
    mixed = "".join(c.lower() if lower_mask >> i & 1 else c for i, c in enumerate(canonical))
    assert is_ulid(mixed)
    assert parse_ulid(mixed) == canonical
    assert parse_ulid(canonical.lower()) == canonical
    assert ulid_timestamp_ms(mixed) == ts


def test_parse_lower_case_example() -> None:
    assert parse_ulid("01aryz6s41tsv4rrffq69g5fav") == "01ARYZ6S41TSV4RRFFQ69G5FAV"


def test_persistence_ids() -> None:
    tid = new_ulid()
    assert thread_persistence_id(tid) == "thread-" + tid
    assert thread_id_of(thread_persistence_id(tid)) == tid
    for bad in (tid, "threads-" + tid, "Thread-" + tid, ""):
        with pytest.raises(ValueError):
            thread_id_of(bad)
