"""Journals written before the stored event's envelope stay readable: their events kept a keyed
command's idempotency record inside the payload (under `_meta`), and SQLite files had no
metadata column. Read through today's journals, such an event comes out with the record on its
envelope and a clean domain payload, and a retried keyed command is still answered from it, on
SQLite and on DynamoDB (single-event items and batch items, on dynalite)."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pytest

from threadweaver.adapters.journal.dynamodb import DynamoDBJournal, open_client
from threadweaver.adapters.journal.sqlite import SqliteJournal
from threadweaver.application import idempotency
from threadweaver.application.entities import EntityManager, EntitySettings
from threadweaver.domain import (
    AddMessages,
    NewMessage,
    event_to_payload,
    new_ulid,
    thread_persistence_id,
)
from threadweaver.domain.events import AddedMessage, MessagesAdded, ThreadCreated
from threadweaver.shards.hashing import shard_of

SHARDS = 16

# The SQLite journal's schema before the metadata column.
OLD_SQLITE_SCHEMA = """
CREATE TABLE journal (
    ordering INTEGER PRIMARY KEY AUTOINCREMENT,
    pid      TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    shard    INTEGER NOT NULL,
    ts       INTEGER NOT NULL,
    type     TEXT    NOT NULL,
    payload  BLOB    NOT NULL,
    writer   TEXT    NOT NULL DEFAULT '',
    UNIQUE (pid, seq)
);
CREATE INDEX journal_shard_ordering ON journal (shard, ordering);
CREATE TABLE snapshot (
    pid TEXT PRIMARY KEY, seq INTEGER NOT NULL, ts INTEGER NOT NULL, state BLOB NOT NULL
);
CREATE TABLE journal_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class OldThread:
    """A thread as the previous version journalled it: seq 1 ThreadCreated (unkeyed), seq 2 a
    keyed AddMessages, seq 3..4 the two events of one keyed command (`part` 0 and 1)."""

    def __init__(self) -> None:
        self.admin, self.tid = new_ulid(), new_ulid()
        self.pid = thread_persistence_id(self.tid)
        self.single = self.command("old-key", "from the old version", 2)
        self.double = self.command("old-batch", "two parts", 3)
        self.created = ThreadCreated(self.tid, self.admin, 1, "old", (self.admin,), ())
        self.added = self.event("from the old version", 2)
        self.parts = [self.event("part 0", 3), self.event("part 1", 3)]
        self.records = [
            None,
            idempotency.meta(self.admin, "old-key", idempotency.request_hash(self.single)),
            *(
                idempotency.meta(
                    self.admin, "old-batch", idempotency.request_hash(self.double), i, 2
                )
                for i in range(2)
            ),
        ]

    def command(self, key: str, text: str, at: int) -> AddMessages:
        """Each call a fresh message id, as a retried HTTP request gets."""
        return AddMessages(
            self.tid, self.admin, (NewMessage(new_ulid(), text),), at, idempotency_key=key
        )

    def event(self, text: str, at: int) -> MessagesAdded:
        return MessagesAdded(self.tid, self.admin, at, (AddedMessage(new_ulid(), text, None, ()),))

    @property
    def events(self) -> list[Any]:
        return [self.created, self.added, *self.parts]

    def old_payloads(self) -> list[dict[str, Any]]:
        """Payloads with the record inside, as the previous version stored them."""
        out = []
        for event, record in zip(self.events, self.records):
            payload = event_to_payload(event)
            if record is not None:
                payload["_meta"] = record
            out.append(payload)
        return out


@pytest.fixture(params=["sqlite", "dynamodb"])
def backend(request) -> str:
    return request.param


@pytest.fixture
async def old_journal(backend, request, tmp_path) -> AsyncIterator[tuple[Any, OldThread]]:
    """A started journal over storage that holds `OldThread`'s events in the old format."""
    old = OldThread()
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            path = tmp_path / "journal.db"
            _write_old_sqlite(path, old)
            journal: Any = SqliteJournal(path, shards=SHARDS, synchronous="off")
        else:
            tools = request.getfixturevalue("dynamodb_tools")
            base = request.getfixturevalue("dynamodb_base_settings")
            settings = await stack.enter_async_context(tools.temporary_tables(base))
            journal = DynamoDBJournal(settings, shards=SHARDS)
            await _write_old_dynamodb(settings, old)
        await journal.start()
        stack.push_async_callback(journal.close)
        yield journal, old


def _write_old_sqlite(path: Any, old: OldThread) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(OLD_SQLITE_SCHEMA)
        conn.execute("INSERT INTO journal_meta VALUES ('shards', ?)", (str(SHARDS),))
        ts = time.time_ns() // 1000
        for seq, (event, payload) in enumerate(zip(old.events, old.old_payloads()), start=1):
            conn.execute(
                "INSERT INTO journal (pid, seq, shard, ts, type, payload, writer)"
                " VALUES (?, ?, ?, ?, ?, ?, 'old')",
                (old.pid, seq, shard_of(old.pid, SHARDS), ts, event.TYPE, orjson.dumps(payload)),
            )
        conn.commit()
    finally:
        conn.close()


async def _write_old_dynamodb(settings: Any, old: OldThread) -> None:
    """Seq 1 and 2 as single-event items, 3..4 as one batch item, all without `metadata`."""
    ts = time.time_ns() // 1000
    shard = shard_of(old.pid, SHARDS)
    payloads = old.old_payloads()

    def item(seq: int, **attrs: Any) -> dict[str, Any]:
        base = {"pid": {"S": old.pid}, "seq": {"N": str(seq)}, "shard": {"N": str(shard)}}
        return {**base, "ts": {"N": str(ts + seq)}, "writer": {"S": "old"}, **attrs}

    items = [
        item(seq, type={"S": event.TYPE}, payload={"S": orjson.dumps(payload).decode()})
        for seq, (event, payload) in enumerate(zip(old.events[:2], payloads[:2]), start=1)
    ]
    batch = [[e.TYPE, p] for e, p in zip(old.parts, payloads[2:])]
    items.append(item(3, last_seq={"N": "4"}, batch={"S": orjson.dumps(batch).decode()}))
    async with open_client(settings) as client:
        for it in items:
            await client.put_item(TableName=settings.journal_table, Item=it)


def _expect(events: Sequence[Any], old: OldThread) -> None:
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert [e.payload for e in events] == [event_to_payload(e) for e in old.events]
    assert [e.metadata for e in events] == [
        {"idempotency": r} if r is not None else {} for r in old.records
    ]


async def test_old_events_come_out_with_the_record_on_their_envelope(old_journal):
    journal, old = old_journal
    _expect(await journal.read(old.pid), old)
    _expect(await journal.read_shards(0, SHARDS, {}, 100), old)
    assert [e.seq for e in await journal.read(old.pid, 4)] == [4]


async def test_a_retry_is_answered_from_an_old_event(old_journal):
    journal, old = old_journal
    mgr = EntityManager(journal, EntitySettings(snapshot_every=0))
    assert await mgr.execute(old.command("old-key", "from the old version", 2)) == [old.added]
    assert await mgr.execute(old.command("old-batch", "two parts", 3)) == old.parts
    assert mgr.stats.idempotent_replays == 2
    assert await journal.highest_seq(old.pid) == 4  # nothing appended again
    # a new keyed command is recorded on the envelope, beside the old ones
    new = await mgr.execute(old.command("new-key", "from this version", 5))
    (back,) = await journal.read(old.pid, 5)
    assert back.payload == event_to_payload(new[0])
    assert back.metadata["idempotency"]["idempotencyKey"] == "new-key"
    fresh = EntityManager(journal, EntitySettings(snapshot_every=0))  # replay of both formats
    assert await fresh.execute(old.command("old-key", "from the old version", 2)) == [old.added]
    assert await fresh.execute(old.command("new-key", "from this version", 5)) == new
