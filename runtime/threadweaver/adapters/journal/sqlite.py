"""The embedded journal: one SQLite file in WAL mode, with group commit.

Appends from many aggregates are queued and written by one writer thread in a single
transaction per batch, so a durable commit (one fsync in `full` mode) is shared by every command
waiting at that moment: throughput grows with concurrency instead of being capped by fsync.

Durability modes (`synchronous`):
- ``full`` (default): WAL synced on every commit; an acknowledged append survives a power loss.
- ``normal``: WAL not synced on commit; survives a crash of the process, not of the machine.
- ``off``: nothing synced; for tests and benchmarks only.

The conditional write is the table's UNIQUE(pid, seq): an append whose first seq
already exists fails with ConcurrencyConflict. A batch is written with one `executemany`; if one
of its appends conflicts, the batch is written again append by append, each under a savepoint, so
one conflict does not undo its neighbours.

A row holds the event's `payload` and its envelope's `metadata` (JSON, NULL when empty); files
created before that column are given it at start, and their rows (metadata inside the payload)
are read through `event_mapper.from_storage` like new ones.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import orjson

from ...application.event_mapper import from_storage
from ...application.ports import (
    AppendListener,
    Changes,
    ConcurrencyConflict,
    JournalError,
    NewEvent,
    Snapshot,
    StoredEvent,
)
from ...shards.hashing import DEFAULT_SHARDS, shard_of
from .listeners import AppendListeners

log = logging.getLogger(__name__)

SYNCHRONOUS_MODES = ("full", "normal", "off")
MAX_BATCH_APPENDS = 512
CHANGES_PER_CALL = 10_000  # rows `changes` looks at per call (the next call goes on from there)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    ordering INTEGER PRIMARY KEY AUTOINCREMENT,
    pid      TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    shard    INTEGER NOT NULL,
    ts       INTEGER NOT NULL,
    type     TEXT    NOT NULL,
    payload  BLOB    NOT NULL,
    writer   TEXT    NOT NULL DEFAULT '',
    metadata BLOB,
    UNIQUE (pid, seq)
);
CREATE INDEX IF NOT EXISTS journal_shard_ordering ON journal (shard, ordering);
CREATE TABLE IF NOT EXISTS snapshot (
    pid     TEXT PRIMARY KEY,
    seq     INTEGER NOT NULL,
    ts      INTEGER NOT NULL,
    state   BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


_INSERT = (
    "INSERT INTO journal (pid, seq, shard, ts, type, payload, writer, metadata)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "pid, seq, shard, type, payload, ts, ordering, writer, metadata"


class _Append:
    __slots__ = ("events", "expected_seq", "future", "pid", "writer")

    def __init__(
        self,
        pid: str,
        expected_seq: int,
        events: Sequence[NewEvent],
        writer: str,
        future: asyncio.Future,
    ) -> None:
        self.pid = pid
        self.expected_seq = expected_seq
        self.events = events
        self.writer = writer
        self.future = future


class SqliteJournal:
    offset_slack = 0  # ordering is assigned in commit order by the single writer

    def __init__(
        self, path: str | Path, *, shards: int = DEFAULT_SHARDS, synchronous: str = "full"
    ) -> None:
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, not {synchronous!r}")
        self.path = Path(path)
        self.shards = shards
        self.synchronous = synchronous
        self._pending: list[_Append] = []
        self._wakeup = asyncio.Event()  # binds to the running loop on first use
        self._writer_task: asyncio.Task | None = None
        self._write_executor = ThreadPoolExecutor(1, thread_name_prefix="journal-writer")
        self._read_executor = ThreadPoolExecutor(2, thread_name_prefix="journal-reader")
        self._local = threading.local()
        self._listeners = AppendListeners()
        # Orderings this instance wrote that `changes` has not passed yet (it reports the
        # others'); None until the first `changes` call, so that nothing is kept for nobody.
        self._own: set[int] | None = None
        self._closed = False
        self.commits = 0  # batches committed (for metrics and benchmarks)
        self.appends = 0
        self.batch_sizes: dict[int, int] = {}  # appends per commit -> commits (metrics)

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._write_executor, self._init_schema)
        self._writer_task = asyncio.create_task(self._write_loop(), name="journal-group-commit")

    def _init_schema(self) -> None:
        conn = self._conn()
        conn.executescript(_SCHEMA)
        columns = {r[1] for r in conn.execute("PRAGMA table_info(journal)")}
        if "metadata" not in columns:  # a file from before the envelope's metadata
            try:
                conn.execute("ALTER TABLE journal ADD COLUMN metadata BLOB")
            except sqlite3.OperationalError as exc:  # another process added it meanwhile
                if "duplicate column" not in str(exc):
                    raise
        row = conn.execute("SELECT value FROM journal_meta WHERE key='shards'").fetchone()
        if row is None:
            conn.execute("INSERT INTO journal_meta VALUES ('shards', ?)", (str(self.shards),))
            conn.commit()
        elif int(row[0]) != self.shards:
            raise JournalError(
                f"{self.path} was created with {row[0]} shards, not {self.shards}:"
                " the shard count is fixed at creation"
            )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer_task is not None:
            self._wakeup.set()
            await self._writer_task
        loop = asyncio.get_running_loop()
        for executor in (self._write_executor, self._read_executor):
            await loop.run_in_executor(executor, self._close_conn)
            executor.shutdown(wait=True)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=True, timeout=30
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def _close_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- appends ----------------------------------------------------------------------------
    async def append(
        self, pid: str, expected_seq: int, events: Sequence[NewEvent], *, writer: str = ""
    ) -> list[StoredEvent]:
        return await self.append_nowait(pid, expected_seq, events, writer=writer)

    def append_nowait(
        self, pid: str, expected_seq: int, events: Sequence[NewEvent], *, writer: str = ""
    ) -> asyncio.Future:
        """Queue an append for the next group commit; the future resolves once it is durable.
        Cancelling the future (or its awaiter) does not withdraw the append: it is written
        with its batch all the same (the entity then reloads to learn the outcome)."""
        if self._closed or self._writer_task is None:
            raise JournalError("journal is not running")
        future = asyncio.get_running_loop().create_future()
        if not events:
            future.set_result([])
            return future
        self._pending.append(_Append(pid, expected_seq, events, writer, future))
        self._wakeup.set()
        return future

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[:MAX_BATCH_APPENDS]
                del self._pending[:MAX_BATCH_APPENDS]
                try:
                    results = await loop.run_in_executor(
                        self._write_executor, self._write_batch, batch
                    )
                except Exception as exc:  # the whole batch failed: fail every waiter
                    log.exception("journal batch of %d appends failed", len(batch))
                    err = JournalError(f"journal write failed: {exc}")
                    for item in batch:
                        if not item.future.done():
                            item.future.set_exception(err)
                    continue
                self.commits += 1
                self.appends += len(batch)
                self.batch_sizes[len(batch)] = self.batch_sizes.get(len(batch), 0) + 1
                written: list[StoredEvent] = []
                for item, result in zip(batch, results):
                    if not isinstance(result, Exception):
                        written.extend(result)  # committed, even if its waiter went away
                    if item.future.done():
                        continue
                    if isinstance(result, Exception):
                        item.future.set_exception(result)
                    else:
                        item.future.set_result(result)
                if written:
                    if self._own is not None:
                        self._own.update(e.offset for e in written)
                    self._listeners.notify(written)
            if self._closed and not self._pending:
                return

    def _write_batch(self, batch: list[_Append]) -> list[list[StoredEvent] | Exception]:
        """The batch in one transaction and one `executemany`. The orderings are consecutive
        (this one writer holds the write lock; AUTOINCREMENT), read back from sqlite_sequence.
        A conflict (UNIQUE(pid, seq)) rolls it back and writes it again append by append, so
        that it fails only its own append."""
        conn = self._conn()
        ts = time.time_ns() // 1000
        rows = []
        for item in batch:
            shard = shard_of(item.pid, self.shards)
            seq, writer = item.expected_seq, item.writer
            for event in item.events:
                seq += 1
                rows.append(
                    (
                        item.pid,
                        seq,
                        shard,
                        ts,
                        event.type,
                        orjson.dumps(event.payload),
                        writer,
                        _metadata_column(event),
                    )
                )
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_INSERT, rows)
            last = conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'journal'"
            ).fetchone()[0]
            conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK")
            return self._write_batch_one_by_one(batch)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        ordering = last - len(rows)
        out: list[list[StoredEvent] | Exception] = []
        k = 0
        for item in batch:
            stored = []
            for event in item.events:
                row = rows[k]
                k += 1
                ordering += 1
                stored.append(
                    StoredEvent(
                        row[0],
                        row[1],
                        row[2],
                        event.type,
                        event.payload,
                        ts,
                        ordering,
                        row[6],
                        event.metadata,
                    )
                )
            out.append(stored)
        return out

    def _write_batch_one_by_one(self, batch: list[_Append]) -> list[list[StoredEvent] | Exception]:
        """Each append under its own savepoint: a conflict fails that append only."""
        conn = self._conn()
        ts = time.time_ns() // 1000
        out: list[list[StoredEvent] | Exception] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for item in batch:
                shard = shard_of(item.pid, self.shards)
                conn.execute("SAVEPOINT a")
                try:
                    stored = []
                    for i, event in enumerate(item.events):
                        seq = item.expected_seq + i + 1
                        cur = conn.execute(
                            _INSERT,
                            (
                                item.pid,
                                seq,
                                shard,
                                ts,
                                event.type,
                                orjson.dumps(event.payload),
                                item.writer,
                                _metadata_column(event),
                            ),
                        )
                        stored.append(
                            StoredEvent(
                                item.pid,
                                seq,
                                shard,
                                event.type,
                                event.payload,
                                ts,
                                cast(int, cur.lastrowid),  # an INSERT's rowid, never None
                                item.writer,
                                event.metadata,
                            )
                        )
                    conn.execute("RELEASE a")
                    out.append(stored)
                except sqlite3.IntegrityError:
                    conn.execute("ROLLBACK TO a")
                    conn.execute("RELEASE a")
                    out.append(ConcurrencyConflict(item.pid, item.expected_seq + 1))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return out

    # -- reads ------------------------------------------------------------------------------
    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._read_executor, fn, *args)

    async def read(self, pid: str, from_seq: int = 1) -> list[StoredEvent]:
        return await self._read(self._read_sync, pid, from_seq)

    def _read_sync(self, pid: str, from_seq: int) -> list[StoredEvent]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {_COLUMNS} FROM journal WHERE pid = ? AND seq >= ? ORDER BY seq",
                (pid, from_seq),
            )
            .fetchall()
        )
        return [_row_to_event(r) for r in rows]

    async def highest_seq(self, pid: str) -> int:
        return await self._read(self._highest_sync, pid)

    def _highest_sync(self, pid: str) -> int:
        row = self._conn().execute("SELECT MAX(seq) FROM journal WHERE pid = ?", (pid,)).fetchone()
        return row[0] or 0

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        # Snapshots are an optimisation: written outside the group-commit path.
        await self._read(self._save_snapshot_sync, snapshot)

    def _save_snapshot_sync(self, snapshot: Snapshot) -> None:
        conn = self._conn()
        conn.execute(
            "INSERT INTO snapshot (pid, seq, ts, state) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (pid) DO UPDATE SET seq = excluded.seq, ts = excluded.ts,"
            " state = excluded.state WHERE excluded.seq > snapshot.seq",
            (
                snapshot.pid,
                snapshot.seq,
                snapshot.ts or time.time_ns() // 1000,
                orjson.dumps(snapshot.state),
            ),
        )

    async def load_snapshot(self, pid: str) -> Snapshot | None:
        return await self._read(self._load_snapshot_sync, pid)

    def _load_snapshot_sync(self, pid: str) -> Snapshot | None:
        row = (
            self._conn()
            .execute("SELECT pid, seq, ts, state FROM snapshot WHERE pid = ?", (pid,))
            .fetchone()
        )
        return Snapshot(row[0], row[1], orjson.loads(row[3]), row[2]) if row else None

    async def read_shards(
        self, start: int, end: int, after: Mapping[int, int], limit: int
    ) -> list[StoredEvent]:
        return await self.read_shard_set(range(start, end), after, limit)

    async def read_shard_set(
        self, shards: Sequence[int], after: Mapping[int, int], limit: int
    ) -> list[StoredEvent]:
        wanted = {s: after.get(s, 0) for s in shards if 0 <= s < self.shards}
        if not wanted or limit <= 0:
            return []
        return await self._read(self._read_shard_set_sync, wanted, limit)

    def _read_shard_set_sync(self, after: dict[int, int], limit: int) -> list[StoredEvent]:
        # One index seek per shard, each from its own offset, merged by ordering; each shard
        # gives at most `limit`, so the merged first `limit` are a prefix of every shard's.
        # (A range scan from the smallest offset of the range, as before, re-read every applied
        # event of the busy shards on each poll of an idle projector: CPU grew with the journal.)
        conn = self._conn()
        rows: list[tuple] = []
        for shard, offset in after.items():
            rows.extend(
                conn.execute(
                    f"SELECT {_COLUMNS} FROM journal"
                    " WHERE shard = ? AND ordering > ? ORDER BY ordering LIMIT ?",
                    (shard, offset, limit),
                )
            )
        if len(after) > 1:
            rows.sort(key=_ordering)
        return [_row_to_event(r) for r in rows[:limit]]

    # -- notifications ----------------------------------------------------------------------
    def subscribe(self, listener: AppendListener) -> Callable[[], None]:
        return self._listeners.subscribe(listener)

    def in_flight_floor(self, shard: int) -> int | None:
        """None: an append not committed yet gets an ordering above every committed one."""
        return None

    async def changes(self, cursor: int | None) -> Changes:
        """Exact: the rows after `cursor` (an ordering) that other instances wrote (another
        process on the same file), from one read of the ordering's primary key; each shard is
        to be read after the ordering before its first such row. Orderings are assigned in
        commit order, so a later row is never visible before an earlier one."""
        if cursor is None:
            if self._own is None:
                self._own = set()
            return Changes(await self._read(self._top_ordering))
        rows = await self._read(self._orderings_after, cursor, CHANGES_PER_CALL)
        own = self._own if self._own is not None else set()
        shards: dict[int, int] = {}
        for ordering, shard in rows:
            if ordering not in own and shard not in shards:
                shards[shard] = ordering - 1
        last = rows[-1][0] if rows else cursor
        if own:
            own.difference_update([o for o in own if o <= last])
        return Changes(last, shards)

    def _top_ordering(self) -> int:
        row = self._conn().execute("SELECT MAX(ordering) FROM journal").fetchone()
        return int(row[0] or 0)

    def _orderings_after(self, cursor: int, limit: int) -> list[tuple[int, int]]:
        return (
            self._conn()
            .execute(
                "SELECT ordering, shard FROM journal WHERE ordering > ? ORDER BY ordering LIMIT ?",
                (cursor, limit),
            )
            .fetchall()
        )


def _ordering(row: tuple) -> int:
    return row[6]


def _metadata_column(event: NewEvent) -> bytes | None:
    return orjson.dumps(event.metadata) if event.metadata else None


def _row_to_event(r: tuple) -> StoredEvent:
    payload, metadata = from_storage(orjson.loads(r[4]), orjson.loads(r[8]) if r[8] else None)
    return StoredEvent(
        pid=r[0],
        seq=r[1],
        shard=r[2],
        type=r[3],
        payload=payload,
        ts=r[5],
        offset=r[6],
        writer=r[7],
        metadata=metadata,
    )
