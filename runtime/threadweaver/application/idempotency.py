"""Idempotent commands: a retried request returns the first result instead of applying twice.

A command may carry `idempotency_key` (the HTTP `Idempotency-Key` header). The design needs no
store besides the journal, and survives crashes, passivation and shard handoffs:

- The EntityManager records the key on the envelope of every event the command appends (the
  stored event's metadata, `idempotency`, see application/event_mapper.py; never in the domain
  payload): `{"idempotencyKey": k, "accountId": actor, "requestHash": h}` (see `meta`; plus
  `part`/`parts` when one command appends several events). Journals written before the envelope
  kept it in the payload under `_meta`; the mapper reads those the same way.
- Each in-memory entity keeps a `RecentKeys`: (accountId, key) -> where that command's events are
  in the journal (first seq, count), the command's `request_hash` and the journal's write time of
  the events. It is rebuilt on replay from the records and kept in snapshots (reserved key
  `_recent` of the snapshot dict, which `Thread.from_snapshot` ignores, so snapshots stay
  readable by versions without this module). Only references are kept, never the events, so
  memory and snapshots stay small (~100 bytes a key); a retry reads its events back from the
  journal.
- A command whose (accountId, key) is known returns its recorded events without deciding again
  (even if the state changed since); with a different `request_hash` it is refused
  (`IdempotencyKeyReused`). A command that changes nothing records nothing (a retry decides
  again, which is harmless). Failed commands record nothing either.
- Bounded per entity: the most recent `max_keys` keys, and none older than `window_seconds` of
  journal write time. A retry after that is decided again.
- CreateThread has no thread yet to look in: with a key, its thread id is derived from
  (accountId, key) by `derive_thread_id`, so a retry lands on the same entity and finds the
  ThreadCreated carrying the same key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ..domain import AddMessages, Command, CreateThread, DomainError, ErrorKind, new_ulid

SNAPSHOT_KEY = "_recent"  # reserved key in a stored snapshot dict
KEY_REUSED = "Idempotency-Key was used for a different request"
MAX_KEY_LENGTH = 128


class IdempotencyKeyReused(DomainError):
    """The same account used the same key for a different command on this thread (HTTP 422).
    A DomainError (CONFLICT) so that forwarding carries it; adapters recognise `KEY_REUSED`."""

    def __init__(self) -> None:
        super().__init__(ErrorKind.CONFLICT, KEY_REUSED)


def is_key_reused(exc: BaseException) -> bool:
    """True for IdempotencyKeyReused, also after a round trip through the forwarding codec."""
    return (
        isinstance(exc, DomainError)
        and exc.kind is ErrorKind.CONFLICT
        and exc.message == KEY_REUSED
    )


# ---------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------


def derive_thread_id(account_id: str, key: str) -> str:
    """A valid ULID (first character <= '7') from sha256 of (accountId, key): the same pair always
    gives the same thread id, another account's same key another id."""
    digest = hashlib.sha256(f"threadweaver/create-thread\n{account_id}\n{key}".encode()).digest()
    # 48 "time" bits and 80 "random" bits: 128 bits, so the first character is at most '7'
    return new_ulid(int.from_bytes(digest[:6], "big"), digest[6:16])


def request_hash(command: Command) -> str:
    """A digest of what the client asked for: the command without its key and without the ids
    the server generates per request (message ids; a keyed CreateThread's id is derived from the
    key anyway). The same request retried gives the same hash."""
    data: dict[str, Any] = dataclasses.asdict(command)
    data.pop("idempotency_key", None)
    if isinstance(command, CreateThread):
        data.pop("thread_id", None)
    if isinstance(command, AddMessages):
        for message in data["messages"]:
            message.pop("id", None)
    data["type"] = type(command).__name__
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def meta(account_id: str, key: str, digest: str, part: int = 0, parts: int = 1) -> dict[str, Any]:
    """The idempotency record on the envelope of event `part` of a keyed command's events."""
    data: dict[str, Any] = {"idempotencyKey": key, "accountId": account_id, "requestHash": digest}
    if parts > 1:
        data["part"] = part
        data["parts"] = parts
    return data


def now_us() -> int:
    return time.time_ns() // 1000


# ---------------------------------------------------------------------------------------------
# The bounded map of one entity
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    """Where a keyed command's events are: seq first_seq .. first_seq+count-1 of the entity."""

    request_hash: str
    first_seq: int
    count: int
    ts: int  # journal write time of the first event, epoch microseconds


class RecentKeys:
    """(accountId, key) -> Recorded for the most recent keyed commands of one entity, bounded by
    count (`max_keys`, oldest evicted first) and age (`window_seconds` of journal time)."""

    __slots__ = ("_entries", "max_keys", "window_us")

    def __init__(self, max_keys: int = 1000, window_seconds: float = 86_400.0) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self.window_us = int(window_seconds * 1_000_000)
        self._entries: OrderedDict[tuple[str, str], Recorded] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, item: tuple[str, str]) -> bool:
        return item in self._entries

    def _expired(self, entry: Recorded, now: int) -> bool:
        return self.window_us > 0 and entry.ts < now - self.window_us

    def get(self, account_id: str, key: str, now: int | None = None) -> Recorded | None:
        entry = self._entries.get((account_id, key))
        if entry is None:
            return None
        if self._expired(entry, now_us() if now is None else now):
            del self._entries[(account_id, key)]
            return None
        return entry

    def record(self, account_id: str, key: str, entry: Recorded, now: int | None = None) -> None:
        now = now_us() if now is None else now
        if self._expired(entry, now):
            return
        self._entries.pop((account_id, key), None)
        self._entries[(account_id, key)] = entry
        self.prune(now)

    def prune(self, now: int | None = None) -> None:
        """Drop what is over the count bound, then what is older than the window (oldest first:
        entries are kept in journal order, whose write times only go forward per entity)."""
        entries = self._entries
        while len(entries) > self.max_keys:
            entries.popitem(last=False)
        if self.window_us > 0 and entries:
            cutoff = (now_us() if now is None else now) - self.window_us
            while entries and next(iter(entries.values())).ts < cutoff:
                entries.popitem(last=False)

    def observe(self, seq: int, ts: int, data: Mapping[str, Any] | None) -> None:
        """Replay: note the key of a stored event's idempotency record (no-op for None).
        Call `prune` once the replay is done."""
        if not isinstance(data, Mapping) or data.get("part", 0) != 0:
            return
        try:
            key, account, digest = data["idempotencyKey"], data["accountId"], data["requestHash"]
            parts = int(data.get("parts", 1))
        except (KeyError, TypeError, ValueError):
            return  # not ours, or damaged: a retry is decided again, as without a key
        entries = self._entries
        entries.pop((account, key), None)
        entries[(account, key)] = Recorded(digest, seq, parts, ts)
        if len(entries) > self.max_keys:
            entries.popitem(last=False)

    # snapshots: [[accountId, key, requestHash, firstSeq, count, ts], ...] in journal order
    def to_snapshot(self) -> list[list[Any]]:
        return [
            [a, k, e.request_hash, e.first_seq, e.count, e.ts]
            for (a, k), e in self._entries.items()
        ]

    def load_snapshot(self, rows: Iterable[Any] | None) -> None:
        if not isinstance(rows, list):
            return
        for row in rows:
            try:
                account, key, digest, first, count, ts = row
                self._entries[(account, key)] = Recorded(digest, int(first), int(count), int(ts))
            except (TypeError, ValueError):
                continue
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
