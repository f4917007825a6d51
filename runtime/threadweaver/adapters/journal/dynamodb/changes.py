"""Change notes: how instances of the DynamoDB journal learn of each other's appends without
reading every shard (``Journal.changes``).

Each journal instance is a writer with a random *slot*. After appends of its have taken effect,
it publishes at most one *note* per ``interval`` (1 s): the shards they touched and the lowest
``ts`` among them. A reader polls the notes of every writer with one strongly consistent Query
and reads only the shards of its range that others wrote, after that ``ts`` minus one. A note is
published after the write it reports, so however long an append was retried, its note sends the
readers back to where it is stored: no offset window has to be wide enough. Own appends are not
reported to the instance itself (its projectors get them from the in-process feed), except those
whose outcome is unknown (the append failed after a try that may have taken effect), which are.

Items (in the journal table, not in the ``shard_ts`` index: they have no ``shard``/``ts``):
``pid = "__threadweaver_changes__"``, ``seq`` = the writer's slot, with ``v`` (N, the version of
its last note), ``at`` (N, when published, epoch microseconds) and the last :data:`RING` notes,
note ``v`` in attribute ``n{v % RING}`` as ``"v;low;shards"`` (``shards``: ranges ``"0-5,7"``, or
``"b"`` and a base64 bitmap when shorter, about S/6 characters for S shards). A reader that saw
version ``p`` of a writer and now sees ``v`` takes notes ``p+1..v`` from the ring; more than
:data:`RING` versions apart (or more than :data:`RING` versions for a writer it had not seen), it
reports the changes as incomplete (its caller then re-reads its range). A failed publication burns its version (the next one includes its shards), so a note in a
slot whose version is not the wanted one is skipped.

A reader's first poll takes every writer's current version as seen, and reports the ring notes
of writers that published within ``start_window`` (60 s): what a restarted process's previous
instance wrote just before it died. Notes stay retained ``retain`` seconds for callers that
start later. Items of writers silent for ``stale_after`` (a day) are deleted by the next reader
that starts.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ....application.ports import Changes, StoredEvent
from . import codec

__all__ = ["CHANGES_PID", "RING", "ChangeNotes", "decode_shards", "encode_shards"]

log = logging.getLogger(__name__)

CHANGES_PID = "__threadweaver_changes__"
RING = 8
_STALE_DELETES_PER_START = 25

Call = Callable[..., Awaitable[dict[str, Any]]]


def encode_shards(shards: Iterable[int]) -> str:
    """A set of shards as ranges (``"0-5,7"``) or, when shorter, ``"b"`` + a base64 bitmap."""
    ordered = sorted(set(shards))
    runs: list[str] = []
    for _, group in itertools.groupby(enumerate(ordered), lambda p: p[1] - p[0]):
        run = [s for _, s in group]
        runs.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    ranges = ",".join(runs)
    bits = sum(1 << s for s in ordered)
    raw = bits.to_bytes((bits.bit_length() + 7) // 8 or 1, "little")
    bitmap = "b" + base64.b64encode(raw).decode()
    return bitmap if len(bitmap) < len(ranges) else ranges


def decode_shards(text: str) -> set[int]:
    if text.startswith("b"):
        bits = int.from_bytes(base64.b64decode(text[1:]), "little")
        return {i for i in range(bits.bit_length()) if bits >> i & 1}
    out: set[int] = set()
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        out.update(range(int(first), int(last or first) + 1))
    return out


@dataclass(slots=True)
class _Notice:
    number: int
    at: float  # monotonic time it was learnt
    shards: dict[int, int]  # shard -> read after this offset
    complete: bool = True


class ChangeNotes:
    """One journal instance's side of the change notes: it publishes its own and reads the
    others'. `call(operation, params, ...)` is the journal's client call."""

    def __init__(
        self,
        call: Call,
        table: str,
        *,
        every: float = 1.0,
        retain: float = 60.0,
        start_window: float = 60.0,
        stale_after: float = 86_400.0,
    ) -> None:
        self._call = call
        self.table = table
        self.interval = every  # between two notes of this writer, at most one
        # Polls of the others' notes are shared by the callers within this much of one another
        # (a caller polling every `every` seconds gets a fresh poll each time).
        self.refresh = every * 0.8
        self.retain = retain
        self.start_window = start_window
        self.stale_after = stale_after
        self.slot = random.getrandbits(62) + 1
        # writer side
        self._touched: set[int] = set()
        self._low: int | None = None
        self._version = 0
        self._last_published = -every
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0  # notes written (metrics and tests)
        # reader side
        self._seen: dict[int, int] | None = None  # slot -> version seen; None: not polled yet
        self._notices: collections.deque[_Notice] = collections.deque()
        self._numbers = itertools.count(1)
        self._next_number = 1
        self._refreshed = -every
        self._refreshing = asyncio.Lock()
        self.polls = 0  # Queries of the notes (metrics and tests)

    # -- writer side ------------------------------------------------------------------------
    def landed(self, events: Sequence[StoredEvent]) -> None:
        """A listener of the journal: appends of this instance that took effect."""
        for ev in events:
            self._note(ev.shard, ev.offset)

    def uncertain(self, shard: int, floor: int) -> None:
        """An append of this instance to `shard` failed after a try that may have taken effect
        (at `floor` or above): the other instances are told, and so are this one's readers."""
        self._note(shard, floor)
        self._add_notice({shard: floor - 1})

    def _note(self, shard: int, offset: int) -> None:
        self._touched.add(shard)
        if self._low is None or offset < self._low:
            self._low = offset
        self._dirty.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._publish_forever(), name="change-notes")

    async def close(self, timeout: float = 5.0) -> None:
        """Stop publishing, after one last note of what is pending (bounded)."""
        if self._task is not None:
            task = self._task
            # Cancel until it ends: a cancellation swallowed inside a request (Python 3.11's
            # wait_for) would leave the loop waiting for the next change, and close() for good.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            await asyncio.gather(task, return_exceptions=True)
            self._task = None
        if self._touched:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    await self.publish()

    async def _publish_forever(self) -> None:
        while True:
            await self._dirty.wait()
            delay = self._last_published + self.interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._dirty.clear()
            try:
                await self.publish()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # kept for the next note
                log.warning("publishing a change note failed (%s); retrying", exc)
                self._dirty.set()
                self._last_published = time.monotonic()

    async def publish(self) -> None:
        """Publish what was noted since the last note, as one note (nothing: no request)."""
        if not self._touched or self._low is None:
            return
        touched, low = self._touched, self._low
        self._touched, self._low = set(), None
        self._version += 1  # burnt if this fails: the next note carries these shards
        version = self._version
        note = f"{version};{low};{encode_shards(touched)}"
        try:
            await self._call(
                "UpdateItem",
                {
                    "TableName": self.table,
                    "Key": {"pid": codec.string(CHANGES_PID), "seq": codec.number(self.slot)},
                    "UpdateExpression": "SET #v = :v, #at = :at, #n = :n",
                    "ExpressionAttributeNames": {
                        "#v": "v",
                        "#at": "at",
                        "#n": f"n{version % RING}",
                    },
                    "ExpressionAttributeValues": {
                        ":v": codec.number(version),
                        ":at": codec.number(time.time_ns() // 1000),
                        ":n": codec.string(note),
                    },
                },
            )
        except BaseException:
            self._touched |= touched
            self._low = low if self._low is None else min(low, self._low)
            raise
        self._last_published = time.monotonic()
        self.published += 1

    # -- reader side ------------------------------------------------------------------------
    async def changes(self, cursor: int | None) -> Changes:
        """The shards others wrote since `cursor` (see Journal.changes)."""
        await self._refresh()
        self._trim()
        number = self._next_number
        if cursor is None:
            notices = list(self._notices)
            complete = True
        else:
            notices = [n for n in self._notices if n.number >= cursor]
            oldest = self._notices[0].number if self._notices else number
            complete = cursor >= min(oldest, number) and all(n.complete for n in notices)
        shards: dict[int, int] = {}
        for notice in notices:
            for shard, after in notice.shards.items():
                shards[shard] = min(after, shards.get(shard, after))
        return Changes(number, shards, complete)

    def _add_notice(self, shards: Mapping[int, int], complete: bool = True) -> None:
        if shards or not complete:
            number = next(self._numbers)
            self._notices.append(_Notice(number, time.monotonic(), dict(shards), complete))
            self._next_number = number + 1

    def _trim(self) -> None:
        cutoff = time.monotonic() - self.retain
        while self._notices and self._notices[0].at < cutoff:
            self._notices.popleft()

    async def _refresh(self) -> None:
        """Poll the notes (one Query), at most once per `refresh` for all callers."""
        stale: list[dict[str, Any]] = []
        async with self._refreshing:
            started = time.monotonic()
            if started - self._refreshed < self.refresh:
                return
            items = await self._markers()
            self._refreshed = started
            first = self._seen is None
            seen = self._seen if self._seen is not None else {}
            now_us = time.time_ns() // 1000
            shards: dict[int, int] = {}
            complete = True
            for item in items:
                slot = int(item["seq"]["N"])
                if slot == self.slot:
                    continue
                version = int(item.get("v", {}).get("N", "0"))
                at = int(item.get("at", {}).get("N", "0"))
                previous = seen.get(slot)
                if first:
                    if at >= now_us - self.start_window * 1e6:
                        wanted = range(version - RING + 1, version + 1)
                    else:
                        wanted = range(0)
                        if at < now_us - self.stale_after * 1e6:
                            stale.append(item)
                elif previous is None:  # a writer that started since: all its notes are new
                    complete = complete and version <= RING
                    wanted = range(version - RING + 1, version + 1)
                elif version - previous > RING:
                    complete = False
                    wanted = range(0)
                else:
                    wanted = range(previous + 1, version + 1)
                seen[slot] = version
                for shard, after in _read_ring(item, wanted).items():
                    shards[shard] = min(after, shards.get(shard, after))
            present = {int(item["seq"]["N"]) for item in items}
            self._seen = {slot: v for slot, v in seen.items() if slot in present}
            self._add_notice(shards, complete)
        if stale:
            await self._delete_stale(stale[:_STALE_DELETES_PER_START])

    async def _markers(self) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pid = :p",
            "ExpressionAttributeValues": {":p": codec.string(CHANGES_PID)},
            "ConsistentRead": True,
        }
        items: list[dict[str, Any]] = []
        while True:
            self.polls += 1
            resp = await self._call("Query", params)
            items.extend(resp.get("Items") or [])
            if not resp.get("LastEvaluatedKey"):
                return items
            params["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    async def _delete_stale(self, items: Sequence[dict[str, Any]]) -> None:
        for item in items:
            try:
                await self._call(
                    "DeleteItem",
                    {
                        "TableName": self.table,
                        "Key": {"pid": item["pid"], "seq": item["seq"]},
                        "ConditionExpression": "#at = :at",
                        "ExpressionAttributeNames": {"#at": "at"},
                        "ExpressionAttributeValues": {":at": item["at"]},
                    },
                    refusals=("ConditionalCheckFailedException",),
                )
            except Exception:  # written meanwhile, or not now: the next start tries again
                log.debug("stale change notes %s not deleted", item["seq"], exc_info=True)


def _read_ring(item: Mapping[str, Any], versions: range) -> dict[int, int]:
    """shard -> read-after offset, from the ring notes of `item` with a version in `versions`."""
    out: dict[int, int] = {}
    for version in versions:
        if version < 1:
            continue
        note = item.get(f"n{version % RING}", {}).get("S")
        if not note:
            continue
        stored, low, shards = note.split(";", 2)
        if int(stored) != version:
            continue  # a burnt version: that slot still holds an older note
        for shard in decode_shards(shards):
            out[shard] = min(int(low) - 1, out.get(shard, int(low) - 1))
    return out
