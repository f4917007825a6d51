"""A projection's read of shards on the ``shard_ts`` index: one cursor per shard, merged.

Events that share an offset in a shard (one append, or a same-microsecond collision between
writers) are never split across two results, because a caller resumes *after* an offset: a
result is cut before such a group, and only a single group larger than ``limit`` is returned
whole (more than ``limit`` events).
"""

from __future__ import annotations

import asyncio
import collections
import heapq
from collections.abc import Mapping, Sequence
from typing import Any

from ....application.ports import StoredEvent
from . import codec
from .client import DynamoDBClient
from .tables import SHARD_INDEX

__all__ = ["ShardCursor", "read_shards"]

MAX_PAGE = 1000


async def read_shards(
    client: DynamoDBClient,
    table: str,
    shards: Sequence[int],
    after: Mapping[int, int],
    limit: int,
    concurrency: int,
) -> list[StoredEvent]:
    """Up to `limit` events of `shards` with offset > after.get(shard, 0), in (offset, pid, seq)
    order, groups never split. One paginated index Query per shard, `concurrency` at a time."""
    n = len(shards)
    if limit <= 0 or n == 0:
        return []
    first_page = max(2, min(limit + 1, 2 * (-(-limit // n)) + 1))
    sem = asyncio.Semaphore(concurrency)
    cursors = [ShardCursor(client, table, s, after.get(s, 0), first_page, sem) for s in shards]
    await asyncio.gather(*(c.ensure_group() for c in cursors))
    heap = [(c.head_key(), i) for i, c in enumerate(cursors) if c.has_group()]
    heapq.heapify(heap)
    out: list[StoredEvent] = []
    while heap:
        _, i = heapq.heappop(heap)
        cursor = cursors[i]
        group = cursor.peek_group()
        if out and len(out) + len(group) > limit:
            break
        out.extend(cursor.pop_group())
        if len(out) >= limit:
            break
        await cursor.ensure_group()
        if cursor.has_group():
            heapq.heappush(heap, (cursor.head_key(), i))
    out.sort(key=codec.event_sort_key)
    return out


class ShardCursor:
    """One shard's stream from the index, read page by page, served in groups of events that
    share an offset (a group is complete once an item with a larger ts or the end is seen)."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        shard: int,
        after: int,
        page: int,
        sem: asyncio.Semaphore,
    ) -> None:
        self.client = client
        self.table = table
        self.shard = shard
        self.after = after
        self.page = page
        self.sem = sem
        self.items: collections.deque[dict[str, Any]] = collections.deque()
        self.start_key: dict[str, Any] | None = None
        self.exhausted = False

    async def _fetch(self) -> None:
        params: dict[str, Any] = dict(
            TableName=self.table,
            IndexName=SHARD_INDEX,
            KeyConditionExpression="#sh = :s AND #ts > :t",
            ExpressionAttributeNames={"#sh": "shard", "#ts": "ts"},
            ExpressionAttributeValues={
                ":s": codec.number(self.shard),
                ":t": codec.number(self.after),
            },
            Limit=self.page,
        )
        if self.start_key:
            params["ExclusiveStartKey"] = self.start_key
        async with self.sem:
            resp = await self.client.call("Query", params)
        self.items.extend(resp.get("Items") or [])
        self.start_key = resp.get("LastEvaluatedKey") or None
        if self.start_key is None:
            self.exhausted = True
        self.page = min(MAX_PAGE, self.page * 2)

    def _complete(self) -> bool:
        if not self.items:
            return self.exhausted
        if self.exhausted:
            return True
        head = self.items[0]["ts"]["N"]
        return self.items[-1]["ts"]["N"] != head

    async def ensure_group(self) -> None:
        while not self._complete():
            await self._fetch()

    def has_group(self) -> bool:
        return bool(self.items)

    def peek_group(self) -> list[StoredEvent]:
        head = self.items[0]["ts"]["N"]
        events: list[StoredEvent] = []
        for item in self.items:
            if item["ts"]["N"] != head:
                break
            events.extend(codec.item_events(item))
        events.sort(key=codec.event_sort_key)
        return events

    def head_key(self) -> tuple[int, str, int]:
        return codec.event_sort_key(self.peek_group()[0])

    def pop_group(self) -> list[StoredEvent]:
        events = self.peek_group()
        head = self.items[0]["ts"]["N"]
        while self.items and self.items[0]["ts"]["N"] == head:
            self.items.popleft()
        return events
