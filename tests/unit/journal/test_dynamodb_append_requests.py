"""How many DynamoDB requests an append costs: the conditional put alone when the journal knows
the pid's boundary (its own appends, reads, snapshots it wrote), a precheck only where it does
not (batch-item mode), and a stale expected_seq refused without any request. Counted on the
scripted fake SDK client (tests/unit/journal/fake_dynamodb.py)."""

from __future__ import annotations

import pytest

from tests.unit.journal.fake_dynamodb import FakeClient, ev, make_journal
from threadweaver.application.ports import ConcurrencyConflict, JournalError, Snapshot


def requests(fake: FakeClient) -> int:
    return sum(fake.calls.values())


@pytest.mark.parametrize("transactions", [True, False])
async def test_a_create_and_warm_appends_are_one_put_each(transactions):
    journal, fake = make_journal(transactions=transactions)
    await journal.append("thread-a", 0, [ev(1)])
    for seq in range(1, 6):
        await journal.append("thread-a", seq, [ev(seq + 1)])
    assert fake.calls == {"put_item": 6}
    assert journal.prechecks == 0


async def test_multi_event_appends_are_one_request_in_both_modes():
    journal, fake = make_journal(transactions=True)
    await journal.append("thread-a", 0, [ev(1), ev(2), ev(3)])
    await journal.append("thread-a", 3, [ev(4), ev(5)])
    assert fake.calls == {"transact_write_items": 2}
    batch, batch_fake = make_journal(transactions=False)
    await batch.append("thread-a", 0, [ev(1), ev(2), ev(3)])
    await batch.append("thread-a", 3, [ev(4), ev(5)])
    assert batch_fake.calls == {"put_item": 2}  # batch items: seq 1..3 and 4..5


async def test_an_expected_seq_below_the_known_boundary_is_refused_without_a_request():
    journal, fake = make_journal(transactions=False)
    await journal.append("thread-a", 0, [ev(1), ev(2), ev(3)])
    before = requests(fake)
    for expected in (0, 1, 2):
        with pytest.raises(ConcurrencyConflict) as info:
            await journal.append("thread-a", expected, [ev(9)])
        assert info.value.seq == expected + 1
    assert requests(fake) == before


async def test_a_writer_that_does_not_know_the_pid_prechecks_in_batch_item_mode():
    journal, fake = make_journal(transactions=False)
    await journal.append("thread-a", 0, [ev(1), ev(2), ev(3)])
    stale, _ = make_journal(transactions=False, fake=fake)  # another process, same table
    with pytest.raises(ConcurrencyConflict) as info:
        await stale.append("thread-a", 1, [ev(9)])  # seq 2 is inside the batch item at key 1
    assert info.value.seq == 2 and stale.prechecks == 1
    with pytest.raises(JournalError, match="gap"):
        await stale.append("thread-a", 7, [ev(9)])
    # the precheck taught it the boundary: the right append is the put alone
    fake.calls.clear()
    assert [e.seq for e in await stale.append("thread-a", 3, [ev(4)])] == [4]
    assert fake.calls == {"put_item": 1}


async def test_an_entity_that_knows_its_seq_never_overlaps_another_writers_batch():
    """The boundary argument: the stale writer's seq was a boundary, so the other writer's
    item is keyed right after it and the stale put fails on its own key."""
    a, fake = make_journal(transactions=False)
    b, _ = make_journal(transactions=False, fake=fake)
    await a.append("thread-a", 0, [ev(1)])
    assert [e.seq for e in await b.read("thread-a")] == [1]  # b knows boundary 1
    await a.append("thread-a", 1, [ev(2), ev(3), ev(4)])  # a batch item at key 2
    fake.calls.clear()
    with pytest.raises(ConcurrencyConflict) as info:
        await b.append("thread-a", 1, [ev(9), ev(9)])
    assert info.value.seq == 2
    assert fake.calls == {"put_item": 1}
    assert [e.payload["n"] for e in await b.read("thread-a")] == [1, 2, 3, 4]


async def test_a_cold_entity_reads_once_then_puts():
    """Recovery from a snapshot the journal wrote at a boundary: the snapshot GetItem, one Query
    for the events after it, and the append is the put alone."""
    writer, fake = make_journal(transactions=False)
    await writer.append("thread-a", 0, [ev(1), ev(2)])
    await writer.save_snapshot(Snapshot("thread-a", 2, {"v": 2}))
    await writer.append("thread-a", 2, [ev(3)])
    assert "boundary_ts" in fake.snapshots["thread-a"]
    cold, _ = make_journal(transactions=False, fake=fake)  # a fresh process
    fake.calls.clear()
    snapshot = await cold.load_snapshot("thread-a")
    assert snapshot is not None and snapshot.seq == 2
    assert [e.seq for e in await cold.read("thread-a", snapshot.seq + 1)] == [3]
    await cold.append("thread-a", 3, [ev(4)])
    assert fake.calls == {"get_item": 1, "query": 1, "put_item": 1}
    assert cold.prechecks == 0


async def test_a_snapshot_not_known_to_end_an_item_keeps_the_batch_item_query():
    writer, fake = make_journal(transactions=False)
    await writer.append("thread-a", 0, [ev(1), ev(2), ev(3)])  # one batch item 1..3
    other, _ = make_journal(transactions=False, fake=fake)
    await other.save_snapshot(Snapshot("thread-a", 2, {"v": 2}))  # seq 2: inside the item
    assert "boundary_ts" not in fake.snapshots["thread-a"]
    cold, _ = make_journal(transactions=False, fake=fake)
    snapshot = await cold.load_snapshot("thread-a")
    assert snapshot is not None
    assert [e.seq for e in await cold.read("thread-a", snapshot.seq + 1)] == [3]


async def test_offsets_stay_above_the_known_items_ts_without_a_precheck():
    a, fake = make_journal(transactions=False)
    first = await a.append("thread-a", 0, [ev(1)])
    item = fake.items[("thread-a", 1)]
    item["ts"] = {"N": str(first[0].ts + 10**9)}  # another writer's clock far ahead
    b, _ = make_journal(transactions=False, fake=fake)
    await b.read("thread-a")
    second = await b.append("thread-a", 1, [ev(2)])
    assert b.prechecks == 0
    assert second[0].ts > first[0].ts + 10**9
