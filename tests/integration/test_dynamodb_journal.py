"""DynamoDB-only behaviour of the journal on a real server (dynalite): the batch-item protocol
used where TransactWriteItems is missing, the stored item shapes, pagination, and groups of
events that share an offset. The port's contract itself is test_journal_contract.py."""

from __future__ import annotations

import asyncio

import pytest

from threadweaver.adapters.journal.dynamodb import (
    META_PID,
    DynamoDBJournal,
    open_client,
)
from threadweaver.application.ports import ConcurrencyConflict, JournalError, NewEvent
from threadweaver.domain import new_ulid
from threadweaver.shards.hashing import shard_of

SHARDS = 8


def pid() -> str:
    return f"thread-{new_ulid()}"


def ev(n: int) -> NewEvent:
    return NewEvent("MessagesAdded", {"n": n})


@pytest.fixture
async def journal(dynamodb_settings):
    j = DynamoDBJournal(dynamodb_settings, shards=SHARDS, read_page_size=2)
    await j.start()
    yield j
    await j.close()


async def _items(settings, p: str) -> list[dict]:
    async with open_client(settings) as client:
        resp = await client.query(
            TableName=settings.journal_table,
            KeyConditionExpression="pid = :p",
            ExpressionAttributeValues={":p": {"S": p}},
            ConsistentRead=True,
        )
    return resp["Items"]


async def test_dynalite_is_detected_as_without_transactions(journal):
    assert journal.transactions is False


async def test_forcing_transactions_on_a_server_without_them_fails_clearly(dynamodb_settings):
    j = DynamoDBJournal(dynamodb_settings, shards=SHARDS, transactions=True)
    with pytest.raises(JournalError, match="TransactWriteItems"):
        await j.start()
    await j.close()


async def test_item_shapes(journal, dynamodb_settings):
    p = pid()
    await journal.append(p, 0, [ev(1)], writer="pod-0")
    await journal.append(p, 1, [ev(2), ev(3), ev(4)])
    items = await _items(dynamodb_settings, p)
    single, batch = items
    assert single["seq"] == {"N": "1"} and single["type"] == {"S": "MessagesAdded"}
    assert single["payload"] == {"S": '{"n":1}'} and single["writer"] == {"S": "pod-0"}
    assert int(single["shard"]["N"]) == (await journal.read(p))[0].shard
    assert batch["seq"] == {"N": "2"} and batch["last_seq"] == {"N": "4"}
    assert "writer" not in batch and "type" not in batch
    assert (
        batch["batch"]["S"] == '[["MessagesAdded",{"n":2}],["MessagesAdded",{"n":3}],'
        '["MessagesAdded",{"n":4}]]'
    )


async def test_envelope_metadata_attributes(journal, dynamodb_settings):
    p = pid()
    meta = {"idempotency": {"idempotencyKey": "k"}}
    await journal.append(p, 0, [NewEvent("T", {"n": 1}, meta)])
    await journal.append(p, 1, [NewEvent("T", {"n": 2}), NewEvent("T", {"n": 3}, meta)])
    await journal.append(p, 3, [ev(4), ev(5)])
    single, batch, plain = await _items(dynamodb_settings, p)
    assert single["metadata"] == {"S": '{"idempotency":{"idempotencyKey":"k"}}'}
    assert batch["batch_metadata"] == {"S": '[{},{"idempotency":{"idempotencyKey":"k"}}]'}
    assert "metadata" not in batch and "batch_metadata" not in plain
    assert [e.metadata for e in await journal.read(p)] == [meta, {}, meta, {}, {}]


async def test_meta_item_records_the_shard_count(journal, dynamodb_settings):
    (meta,) = await _items(dynamodb_settings, META_PID)
    assert meta["shards"] == {"N": str(SHARDS)} and meta["seq"] == {"N": "0"}
    assert "shard" not in meta  # not in the shard index: projections never see it
    assert await journal.read_shards(0, SHARDS, {}, 100) == []


async def test_read_pages_through_a_long_stream(journal):
    p = pid()
    seq = 0
    for size in [1, 2, 3, 1, 1, 4, 2, 1, 5, 1]:
        await journal.append(p, seq, [ev(seq + i + 1) for i in range(size)])
        seq += size
    events = await journal.read(p)  # read_page_size=2: many pages
    assert [e.seq for e in events] == list(range(1, seq + 1))
    assert [e.payload["n"] for e in events] == list(range(1, seq + 1))
    assert [e.seq for e in await journal.read(p, 7)] == list(range(7, seq + 1))


async def test_gap_is_refused_in_batch_item_mode(journal):
    p = pid()
    await journal.append(p, 0, [ev(1)])
    with pytest.raises(JournalError, match="would leave a gap"):
        await journal.append(p, 3, [ev(4)])
    assert [e.seq for e in await journal.read(p)] == [1]


async def test_racing_batches_never_overlap(dynamodb_settings):
    """Many writers with stale views of one pid: the batch-item protocol keeps the stream a
    gap-free sequence of whole appends."""
    writers = [DynamoDBJournal(dynamodb_settings, shards=SHARDS) for _ in range(4)]
    for w in writers:
        await w.start()
    p = pid()
    accepted: list[list] = []

    async def writer(k: int, j: DynamoDBJournal) -> None:
        for i in range(12):
            seq = await j.highest_seq(p)
            await asyncio.sleep(0)
            try:
                accepted.append(
                    await j.append(p, seq, [ev(k * 100 + i)] * (1 + (i + k) % 3), writer=f"w{k}")
                )
            except ConcurrencyConflict:
                pass
            except JournalError as exc:  # only a gap refusal is acceptable (a stale view)
                assert "gap" in str(exc)

    try:
        await asyncio.gather(*(writer(k, w) for k, w in enumerate(writers)))
        events = await writers[0].read(p)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        flat = sorted((e for batch in accepted for e in batch), key=lambda e: e.seq)
        assert [(e.seq, e.writer, e.payload) for e in flat] == [
            (e.seq, e.writer, e.payload) for e in events
        ]
        for batch in accepted:  # each append is whole and contiguous
            assert [e.seq for e in batch] == list(range(batch[0].seq, batch[0].seq + len(batch)))
    finally:
        for w in writers:
            await w.close()


async def test_a_group_larger_than_the_limit_is_returned_whole(journal):
    p = pid()
    big = await journal.append(p, 0, [ev(i) for i in range(6)])
    got = await journal.read_shards(0, SHARDS, {}, 2)
    assert got == big  # one offset: never split across results
    assert await journal.read_shards(0, SHARDS, {big[0].shard: big[0].offset}, 2) == []


async def test_equal_offsets_of_two_writers_are_not_split(journal, dynamodb_settings):
    """Two items of one shard with the same ts (two writers in the same microsecond): a limit
    that would cut between them cuts before both."""
    p1, p2 = pid(), pid()
    while shard_of(p2, SHARDS) != shard_of(p1, SHARDS):
        p2 = pid()
    first = await journal.append(p1, 0, [ev(0)])
    shard, ts = first[0].shard, first[0].offset + 1000
    async with open_client(dynamodb_settings) as client:
        for p in (p1, p2):
            seq = 2 if p == p1 else 1
            await client.put_item(
                TableName=dynamodb_settings.journal_table,
                Item={
                    "pid": {"S": p},
                    "seq": {"N": str(seq)},
                    "shard": {"N": str(shard)},
                    "ts": {"N": str(ts)},
                    "type": {"S": "T"},
                    "payload": {"S": "{}"},
                },
            )
    got = await journal.read_shards(shard, shard + 1, {}, 2)
    assert [(e.pid, e.seq) for e in got] == [(p1, 1)]
    got = await journal.read_shards(shard, shard + 1, {shard: first[0].offset}, 1)
    assert sorted((e.pid, e.seq) for e in got) == sorted([(p1, 2), (p2, 1)])
    assert all(e.offset == ts for e in got)
