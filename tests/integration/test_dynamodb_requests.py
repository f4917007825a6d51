"""DynamoDB requests per command on real servers, counted by a proxy
(tests/support/dynamo_counting_proxy.py) between the journal and dynalite: a create and a warm
post are one PutItem each, a cold entity reads once (snapshot GetItem, one Query) and then puts,
snapshots are written off the command's path, and a multi-event append is one
TransactWriteItems where the server has transactions (the emulator of
tests/support/transaction_emulator.py)."""

from __future__ import annotations

import math
import time
from dataclasses import replace

from tests.support.dynamo_counting_proxy import running_proxy
from tests.support.waiting import eventually
from threadweaver.adapters.journal.dynamodb import DynamoDBJournal
from threadweaver.application.entities import EntityManager, EntitySettings
from threadweaver.application.ports import NewEvent
from threadweaver.domain import AddMessages, CreateThread, NewMessage, new_ulid

SHARDS = 16
ADMIN = new_ulid()


def create(tid: str) -> CreateThread:
    return CreateThread(tid, ADMIN, "title", (ADMIN,), (), None, None, 1)


def post(tid: str, text: str = "hi") -> AddMessages:
    return AddMessages(tid, ADMIN, (NewMessage(new_ulid(), text),), 2)


def without_change_notes(counts: dict[str, int]) -> dict[str, int]:
    """The requests of the commands: all but the journal's change note, an UpdateItem written
    at most once a second in the background (docs/architecture.md, "Convergence"; bounded in
    test_creates_and_warm_posts_are_one_put_each)."""
    return {op: n for op, n in counts.items() if op != "UpdateItem"}


def assert_one_put_each(counts: dict[str, int], commands: int, seconds: float) -> None:
    """One PutItem per command and nothing else on the hot path; besides them only the
    journal's change note (an UpdateItem at most once a second, whatever the load: see
    docs/architecture.md, "Convergence")."""
    other = {op: n for op, n in counts.items() if op not in ("PutItem", "UpdateItem")}
    assert counts.get("PutItem") == commands and not other, counts
    assert counts.get("UpdateItem", 0) <= math.ceil(seconds) + 1, (counts, seconds)


async def test_creates_and_warm_posts_are_one_put_each(dynamodb_settings):
    async with running_proxy(dynamodb_settings.endpoint_url) as proxy:
        journal = DynamoDBJournal(replace(dynamodb_settings, endpoint_url=proxy.url), shards=SHARDS)
        await journal.start()
        entities = EntityManager(journal, EntitySettings(snapshot_every=0))
        try:
            proxy.reset()
            started = time.monotonic()
            tids = [new_ulid() for _ in range(5)]
            for tid in tids:
                await entities.execute(create(tid))
            assert_one_put_each(proxy.snapshot()["counts"], 5, time.monotonic() - started)
            proxy.reset()
            started = time.monotonic()
            for i in range(4):
                for tid in tids:
                    await entities.execute(post(tid, f"m{i}"))
            assert_one_put_each(proxy.snapshot()["counts"], 20, time.monotonic() - started)
            assert journal.prechecks == 0
        finally:
            await entities.close()
            await journal.close()


async def test_a_cold_entity_reads_once_then_puts(dynamodb_settings):
    """A thread written by one process (with a snapshot, in the background) is posted to by a
    fresh one: the snapshot GetItem, one Query for the events after it, the PutItem."""
    tid = new_ulid()
    first = DynamoDBJournal(dynamodb_settings, shards=SHARDS)
    await first.start()
    writer = EntityManager(first, EntitySettings(snapshot_every=3))
    try:
        await writer.execute(create(tid))
        for i in range(4):
            await writer.execute(post(tid, f"m{i}"))
        await eventually(lambda: writer.stats.snapshots_saved >= 1, what="a snapshot")
    finally:
        await writer.close()
        await first.close()
    async with running_proxy(dynamodb_settings.endpoint_url) as proxy:
        cold = DynamoDBJournal(replace(dynamodb_settings, endpoint_url=proxy.url), shards=SHARDS)
        await cold.start()
        entities = EntityManager(cold, EntitySettings(snapshot_every=100))
        try:
            proxy.reset()
            await entities.execute(post(tid, "cold"))
            assert without_change_notes(proxy.snapshot()["counts"]) == {
                "GetItem": 1,
                "Query": 1,
                "PutItem": 1,
            }
            assert entities.stats.events_replayed >= 1  # the events after the snapshot
            proxy.reset()
            await entities.execute(post(tid, "warm"))
            assert without_change_notes(proxy.snapshot()["counts"]) == {"PutItem": 1}
        finally:
            await entities.close()
            await cold.close()


async def test_a_multi_event_append_is_one_transaction(dynamodb_tx_settings):
    async with running_proxy(dynamodb_tx_settings.endpoint_url) as proxy:
        journal = DynamoDBJournal(
            replace(dynamodb_tx_settings, endpoint_url=proxy.url), shards=SHARDS
        )
        await journal.start()
        try:
            assert journal.transactions is True
            proxy.reset()
            pid = f"thread-{new_ulid()}"
            stored = await journal.append(pid, 0, [NewEvent("T", {"n": n}) for n in range(5)])
            await journal.append(pid, 5, [NewEvent("T", {"n": 5})])
            assert [e.seq for e in stored] == [1, 2, 3, 4, 5]
            assert without_change_notes(proxy.snapshot()["counts"]) == {
                "TransactWriteItems": 1,
                "PutItem": 1,
            }
            assert [e.seq for e in await journal.read(pid)] == [1, 2, 3, 4, 5, 6]
        finally:
            await journal.close()
