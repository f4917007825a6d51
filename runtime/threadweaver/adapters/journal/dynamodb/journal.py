"""The production journal: Amazon DynamoDB (or any server speaking its API, e.g. dynalite).

Tables (:mod:`.tables`; created by ``threadweaver create-tables`` or the operator)
---------------------------------------------------------------------------------
``<prefix>-journal``  HASH ``pid`` (S), RANGE ``seq`` (N); one item per event (:mod:`.codec`
    has the attributes). GSI ``shard_ts``: HASH ``shard`` (N), RANGE ``ts`` (N), projecting
    ALL, so a projection reads "events of shard s after offset t" with one Query per shard and
    never a Scan (the slice index of Akka Persistence DynamoDB).
``<prefix>-snapshot`` HASH ``pid`` (S). A save keeps the snapshot with the highest seq
    (conditional put), like the SQLite journal.

One more item lives in the journal table: ``pid = "__threadweaver_meta__", seq = 0`` records the
shard count the table was created for (it has no ``shard``/``ts``, so it is not in the index).
Starting a journal with another shard count fails, as with SQLite.

Appends and the single-writer guarantee
---------------------------------------
All events of one append get one ``ts``: the write time, made strictly increasing within this
process (so one writer never produces equal offsets) and, when this instance has seen the pid,
above that pid's last ``ts``. ``StoredEvent.offset`` is ``ts``.

*Transactional mode* (AWS DynamoDB, DynamoDB Local, LocalStack): a one-event append is a
``PutItem`` with ``attribute_not_exists(pid)``; a multi-event append is one
``TransactWriteItems`` with one such conditional ``Put`` per event, so the condition is checked
on every sequence number and nothing partial is ever written. A retried transaction carries the
same ``ClientRequestToken``, which makes it idempotent.

*Batch-item mode* (servers without transactions, detected once at ``start()``: dynalite answers
``UnknownOperationException``). Atomicity without transactions needs every append to be ONE
item write, so a multi-event append is written as one *batch item* keyed by its first sequence
number (:mod:`.codec`). Readers expand it into its events (all with the item's
``shard``/``ts``/``writer``). A put only checks its own key, so overlap with other sequence
numbers is excluded by a protocol.

Why a put at key ``e + 1`` is safe when ``e`` is a *boundary*: items are never updated or
deleted, so the pid's items always partition ``1..h`` into consecutive ranges, each item keyed
by the first seq of its range. A boundary (0, or the last seq of an item) is permanent. If ``e``
is a boundary and ``h > e``, the item after it is keyed ``e + 1`` and the put fails
(ConcurrencyConflict); if ``h = e`` it succeeds and extends the partition. So two successful
appends never cover the same seq, and a seq never appears without all seqs below it.

The journal remembers per pid the highest boundary it has seen (:class:`_KnownHeads`: its own
appends, reads, ``highest_seq``, snapshots it wrote at a boundary) with that item's ``ts``. An
append with ``expected_seq`` equal to it (what an entity that loaded or appended through this
journal passes) is the conditional put alone: one request, in both modes. ``expected_seq``
below it is a ConcurrencyConflict without a request (that seq exists). Above it, or for a pid
this journal has not seen, batch-item mode first *prechecks*: a strongly consistent Query for
the pid's newest item gives the highest seq ``h``; ``h > expected_seq`` -> ConcurrencyConflict,
``h < expected_seq`` -> JournalError (the append would leave a gap, which this mode cannot
allow); ``h = expected_seq`` makes it a boundary. (Transactional mode checks every seq in the
transaction and never prechecks.)

Both modes read both item shapes, so a table written in batch-item mode stays readable
everywhere. An append holds at most :data:`MAX_EVENTS_PER_APPEND` events (the TransactWriteItems
limit), and an item at most 400 KB.

Snapshots
---------
Written in the background by the entities (off the command's path). A snapshot saved at the
pid's known boundary records that item's ``ts`` (``boundary_ts``); loading it makes its seq a
known boundary again, so the recovering entity's read starts right after it (no Query for a
batch item reaching across it) and its next append is the put alone: a cold entity costs the
snapshot GetItem, one Query and the put.

Offsets and reads
-----------------
``read_shards``: per shard a Query on the index with ``shard = :s AND ts > :after``, paginated,
merged across shards in ``(offset, pid, seq)`` order (:mod:`.cursor`). Offsets are write times
stamped before the write, by several writers, and the index is eventually consistent, so an
event can become visible *behind* an offset already read (``offset_slack``, default 10 s in
microseconds: what a projector's catch-up re-reads). So no reader relies on offsets alone: this
instance's appends reach its projectors in process, its appends in flight hold their checkpoints
back (:mod:`.inflight`), other instances' appends are announced by change notes (:mod:`.changes`,
``changes``), and a gap is repaired by a read by seq (``application.thread_continuity``).

Errors
------
Retries and error messages are the client's (:mod:`.client`, over the lean HTTP transport of
:mod:`.http_transport` unless ``transport="sdk"``). A write whose outcome was unknown
(connection dropped) and whose retry hits its own condition is recognised as ours (same
``ts``/``writer``/content) instead of reported as a conflict.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ....application.ports import (
    AppendListener,
    Changes,
    ConcurrencyConflict,
    JournalError,
    NewEvent,
    Snapshot,
    StoredEvent,
)
from ....shards.hashing import DEFAULT_SHARDS, shard_of
from ..listeners import AppendListeners
from . import codec, cursor, startup
from .changes import CHANGES_PID, ChangeNotes
from .client import Attempt, ClientStats, DynamoDBClient, Refused, RetryPolicy, connect
from .codec import META_PID
from .heads import KnownHeads
from .inflight import InFlightAppends
from .settings import DynamoDBSettings

__all__ = ["DEFAULT_OFFSET_SLACK_US", "MAX_EVENTS_PER_APPEND", "META_PID", "DynamoDBJournal"]

log = logging.getLogger(__name__)

MAX_EVENTS_PER_APPEND = 100
DEFAULT_OFFSET_SLACK_US = 10_000_000
_CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"
_TRANSACTION_CANCELED = "TransactionCanceledException"


class DynamoDBJournal:
    """The Journal port on DynamoDB; see the module docstring for the layout and protocols."""

    def __init__(
        self,
        settings: DynamoDBSettings,
        *,
        shards: int = DEFAULT_SHARDS,
        offset_slack: int = DEFAULT_OFFSET_SLACK_US,
        transactions: bool | None = None,
        retry: RetryPolicy | None = None,
        query_concurrency: int = 32,
        max_pool_connections: int = 64,
        known_pids: int = 65536,
        read_page_size: int | None = None,
        transport: str = "http",
        change_notes_every: float = 1.0,  # s between notes published, and polls of others'
    ) -> None:
        if shards < 1:
            raise ValueError(f"shards must be >= 1, got {shards}")
        self.settings = settings
        self.shards = shards
        self.offset_slack = offset_slack
        self.retry = retry or RetryPolicy()
        #: None: detect at start(); True/False: force (tests, servers known to lack them)
        self.transactions = transactions
        self._query_concurrency = max(1, query_concurrency)
        self._max_pool = max_pool_connections
        self._transport = transport  # "http" (the lean client) or "sdk" (aiobotocore)
        self._client: DynamoDBClient | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._listeners = AppendListeners()
        self._last_ts = 0
        self._heads = KnownHeads(known_pids)
        self._read_page_size = read_page_size  # Query Limit of read(); None: 1 MB pages
        self._in_flight: set[asyncio.Task] = set()  # appends started by append_nowait
        self.change_notes = ChangeNotes(self._call, self.journal_table, every=change_notes_every)
        self._listeners.subscribe(self.change_notes.landed)  # before any caller's listener
        self._unsettled = InFlightAppends(self.change_notes.uncertain)  # appends in flight
        self._started = False
        self._closed = False
        # counters for metrics and tests
        self.client_stats = ClientStats()
        self.appends = 0
        self.prechecks = 0  # appends that had to query the pid's newest item first

    @property
    def retries(self) -> int:
        return self.client_stats.retries

    @property
    def journal_table(self) -> str:
        return self.settings.journal_table

    @property
    def snapshot_table(self) -> str:
        return self.settings.snapshot_table

    def __repr__(self) -> str:
        return f"DynamoDBJournal({self.settings!r}, shards={self.shards})"

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the client, check both tables exist (clear error otherwise), detect whether the
        server supports transactions, and check the table's shard count."""
        if self._started:
            return
        stack = contextlib.AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(
                connect(
                    self.settings,
                    retry=self.retry,
                    stats=self.client_stats,
                    max_pool_connections=self._max_pool,
                    transport=self._transport,
                )
            )
            self._stack = stack
            await startup.check_tables(self._client, self.settings)
            self.transactions = await startup.init_meta(
                self._client, self.settings, self.shards, self.transactions
            )
        except BaseException:
            self._client = None
            self._stack = None
            await stack.aclose()
            raise
        self._started = True
        self.change_notes.start()
        log.info(
            "DynamoDB journal on %s (%s, %d shards)",
            self.settings.describe(),
            "transactions" if self.transactions else "batch items",
            self.shards,
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._in_flight:  # appends whose callers gave up still reach their outcome
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._client is not None:
            await self.change_notes.close()  # the last note: what this instance appended since
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    def _require_client(self) -> DynamoDBClient:
        if self._client is None:
            raise JournalError(
                "journal is not running (start() it first)"
                if not self._closed
                else "journal is closed"
            )
        return self._client

    async def _call(
        self,
        operation: str,
        params: Mapping[str, Any],
        *,
        refusals: Sequence[str] = (),
        attempt: Attempt | None = None,
        table: str | None = None,
    ) -> dict[str, Any]:
        return await self._require_client().call(
            operation, params, table=table, refusals=refusals, attempt=attempt
        )

    # -- time -------------------------------------------------------------------------------
    def _next_ts(self, pid: str, floor: int = 0) -> int:
        now = time.time_ns() // 1000
        ts = max(now, self._last_ts + 1, self._heads.ts(pid) + 1, floor + 1)
        self._last_ts = ts
        return ts

    # -- appends ----------------------------------------------------------------------------
    def append_nowait(
        self, pid: str, expected_seq: int, events: Sequence[NewEvent], *, writer: str = ""
    ) -> asyncio.Future[list[StoredEvent]]:
        """`append` in a task of its own; cancelling the returned future leaves it running."""
        self._require_client()
        task = asyncio.ensure_future(self.append(pid, expected_seq, events, writer=writer))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return asyncio.shield(task)

    async def append(
        self, pid: str, expected_seq: int, events: Sequence[NewEvent], *, writer: str = ""
    ) -> list[StoredEvent]:
        # .inflight: every ts stamped from now on is at least this floor (_next_ts)
        if pid == CHANGES_PID:
            raise ValueError(f"{CHANGES_PID} is reserved")
        floor = max(self._last_ts + 1, time.time_ns() // 1000)
        with self._unsettled.appending(shard_of(pid, self.shards), floor):
            return await self._append(pid, expected_seq, events, writer=writer)

    async def _append(
        self, pid: str, expected_seq: int, events: Sequence[NewEvent], *, writer: str = ""
    ) -> list[StoredEvent]:
        self._require_client()
        if not events:
            return []
        if expected_seq < 0:
            raise ValueError(f"expected_seq must be >= 0, got {expected_seq}")
        if len(events) > MAX_EVENTS_PER_APPEND:
            raise JournalError(
                f"an append holds at most {MAX_EVENTS_PER_APPEND} events, got {len(events)}"
            )
        if pid == META_PID:
            raise ValueError(f"{META_PID} is reserved")
        shard = shard_of(pid, self.shards)
        known, floor = self._heads.get(pid)
        if expected_seq < known:  # that seq exists: no request can succeed
            raise ConcurrencyConflict(pid, expected_seq + 1)
        if expected_seq > known and not self.transactions:
            floor = await self._precheck(pid, expected_seq)
        ts = self._next_ts(pid, floor)
        first = expected_seq + 1
        if len(events) == 1 or not self.transactions:
            item = codec.event_item(pid, first, shard, ts, writer, events)
            await self._put_conditional(pid, first, item)
        else:
            await self._transact_append(pid, first, shard, ts, writer, events)
        self.appends += 1
        self._heads.remember(pid, expected_seq + len(events), ts)
        stored = [
            StoredEvent(
                pid=pid,
                seq=first + i,
                shard=shard,
                type=e.type,
                payload=e.payload,
                ts=ts,
                offset=ts,
                writer=writer,
                metadata=e.metadata,
            )
            for i, e in enumerate(events)
        ]
        self._listeners.notify(stored)
        return stored

    async def _precheck(self, pid: str, expected_seq: int) -> int:
        """Batch-item mode, `expected_seq` not a known boundary: the pid's highest seq must be
        exactly expected_seq. Returns the ts of the newest item (the new ts must be above it)."""
        self.prechecks += 1
        newest = await self._newest_item(pid)
        highest = codec.item_last_seq(newest) if newest else 0
        if newest is not None:
            self._heads.remember(pid, highest, codec.item_ts(newest))
        if highest > expected_seq:
            raise ConcurrencyConflict(pid, expected_seq + 1)
        if highest < expected_seq:
            raise JournalError(
                f"append to {pid} at seq {expected_seq + 1} would leave a gap: "
                f"its highest seq is {highest}"
            )
        return codec.item_ts(newest) if newest else 0

    async def _newest_item(self, pid: str) -> dict[str, Any] | None:
        resp = await self._call(
            "Query",
            {
                "TableName": self.journal_table,
                "KeyConditionExpression": "pid = :p",
                "ExpressionAttributeValues": {":p": codec.string(pid)},
                "ProjectionExpression": "seq, last_seq, ts",
                "ScanIndexForward": False,
                "Limit": 1,
                "ConsistentRead": True,
            },
        )
        items = resp.get("Items") or []
        return items[0] if items else None

    async def _put_conditional(self, pid: str, first: int, item: dict[str, Any]) -> None:
        attempt = Attempt()
        try:
            await self._call(
                "PutItem",
                {
                    "TableName": self.journal_table,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(pid)",
                },
                refusals=(_CONDITIONAL_CHECK_FAILED,),
                attempt=attempt,
            )
        except Refused:
            if attempt.ambiguous and await self._is_ours(item):
                return
            raise ConcurrencyConflict(pid, first) from None

    async def _is_ours(self, item: Mapping[str, Any]) -> bool:
        """After a lost response: is the item at this key the one we tried to write?"""
        got = await self._call(
            "GetItem",
            {
                "TableName": self.journal_table,
                "Key": {"pid": item["pid"], "seq": item["seq"]},
                "ConsistentRead": True,
            },
        )
        stored = got.get("Item")
        return stored is not None and codec.same_write(stored, item)

    async def _transact_append(
        self, pid: str, first: int, shard: int, ts: int, writer: str, events: Sequence[NewEvent]
    ) -> None:
        items = [
            {
                "Put": {
                    "TableName": self.journal_table,
                    "Item": codec.event_item(pid, first + i, shard, ts, writer, [e]),
                    "ConditionExpression": "attribute_not_exists(pid)",
                }
            }
            for i, e in enumerate(events)
        ]
        # The same token on every retry (the client's): DynamoDB applies it at most once.
        try:
            await self._call(
                "TransactWriteItems",
                {"TransactItems": items, "ClientRequestToken": str(uuid.uuid4())},
                table=self.journal_table,
                refusals=(_TRANSACTION_CANCELED,),
            )
        except Refused as exc:
            for i, reason in enumerate(exc.reasons):
                if reason == "ConditionalCheckFailed":
                    raise ConcurrencyConflict(pid, first + i) from None
            raise JournalError(str(exc)) from None

    # -- reads ------------------------------------------------------------------------------
    async def read(self, pid: str, from_seq: int = 1) -> list[StoredEvent]:
        self._require_client()
        from_seq = max(1, from_seq)
        out: list[StoredEvent] = []
        boundary, boundary_ts = self._heads.get(pid)
        if from_seq > 1 and boundary != from_seq - 1:
            # A batch item keyed below from_seq may hold events at and after it.
            resp = await self._call(
                "Query",
                {
                    "TableName": self.journal_table,
                    "KeyConditionExpression": "pid = :p AND seq < :s",
                    "ExpressionAttributeValues": {
                        ":p": codec.string(pid),
                        ":s": codec.number(from_seq),
                    },
                    "ScanIndexForward": False,
                    "Limit": 1,
                    "ConsistentRead": True,
                },
            )
            for item in resp.get("Items") or []:
                if "batch" in item and codec.item_last_seq(item) >= from_seq:
                    out.extend(e for e in codec.item_events(item) if e.seq >= from_seq)
                elif codec.item_last_seq(item) == from_seq - 1:
                    boundary, boundary_ts = from_seq - 1, codec.item_ts(item)
        params: dict[str, Any] = {
            "TableName": self.journal_table,
            "KeyConditionExpression": "pid = :p AND seq >= :s",
            "ExpressionAttributeValues": {":p": codec.string(pid), ":s": codec.number(from_seq)},
            "ConsistentRead": True,
        }
        if self._read_page_size:
            params["Limit"] = self._read_page_size
        while True:
            resp = await self._call("Query", params)
            for item in resp.get("Items") or []:
                out.extend(codec.item_events(item))
            lek = resp.get("LastEvaluatedKey")
            if not lek:
                break
            params["ExclusiveStartKey"] = lek
        if out:  # the last event read ends an item: a boundary
            self._heads.remember(pid, out[-1].seq, max(e.ts for e in out))
        elif boundary == from_seq - 1:
            self._heads.remember(pid, boundary, boundary_ts)
        return out

    async def highest_seq(self, pid: str) -> int:
        self._require_client()
        newest = await self._newest_item(pid)
        if newest is None:
            return 0
        highest = codec.item_last_seq(newest)
        self._heads.remember(pid, highest, codec.item_ts(newest))
        return highest

    # -- snapshots --------------------------------------------------------------------------
    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep the snapshot with the highest seq: an older one does not replace a newer one.
        A snapshot at the pid's known boundary records that item's ts (module docstring)."""
        self._require_client()
        boundary, boundary_ts = self._heads.get(snapshot.pid)
        item = codec.snapshot_item(
            snapshot,
            snapshot.ts or time.time_ns() // 1000,
            boundary_ts if boundary == snapshot.seq and boundary else None,
        )
        try:
            await self._call(
                "PutItem",
                {
                    "TableName": self.snapshot_table,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(pid) OR seq < :seq",
                    "ExpressionAttributeValues": {":seq": codec.number(snapshot.seq)},
                },
                refusals=(_CONDITIONAL_CHECK_FAILED,),
            )
        except Refused:
            pass  # a snapshot at this seq or newer is stored already

    async def load_snapshot(self, pid: str) -> Snapshot | None:
        self._require_client()
        resp = await self._call(
            "GetItem",
            {
                "TableName": self.snapshot_table,
                "Key": {"pid": codec.string(pid)},
                "ConsistentRead": True,
            },
        )
        item = resp.get("Item")
        if not item:
            return None
        snapshot = codec.item_snapshot(item)
        boundary_ts = codec.snapshot_boundary_ts(item)
        if boundary_ts is not None:
            self._heads.remember(pid, snapshot.seq, boundary_ts)
        return snapshot

    # -- projections ------------------------------------------------------------------------
    async def read_shards(
        self, start: int, end: int, after: Mapping[int, int], limit: int
    ) -> list[StoredEvent]:
        """Up to `limit` events of shards [start, end) with offset > after.get(shard, 0), in
        (offset, pid, seq) order; events sharing (shard, offset) are never split (see
        :mod:`.cursor`). One paginated index Query per shard, run concurrently; no scans."""
        return await self.read_shard_set(range(max(0, start), min(end, self.shards)), after, limit)

    async def read_shard_set(
        self, shards: Sequence[int], after: Mapping[int, int], limit: int
    ) -> list[StoredEvent]:
        """`read_shards` for a set of shards: one paginated Query per shard, concurrently."""
        wanted = sorted({s for s in shards if 0 <= s < self.shards})
        client, table = self._require_client(), self.journal_table
        return await cursor.read_shards(
            client, table, wanted, after, limit, self._query_concurrency
        )

    # -- notifications ----------------------------------------------------------------------
    def subscribe(self, listener: AppendListener) -> Callable[[], None]:
        return self._listeners.subscribe(listener)

    def in_flight_floor(self, shard: int) -> int | None:
        return self._unsettled.floor(shard)

    async def changes(self, cursor: int | None) -> Changes:
        """From the writers' change notes (:mod:`.changes`), one Query for every caller."""
        self._require_client()
        return await self.change_notes.changes(cursor)
