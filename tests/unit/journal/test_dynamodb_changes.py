"""The DynamoDB journal's change notes (adapters/journal/dynamodb/changes.py) over an in-memory
stand-in for the three calls they make (UpdateItem, Query, DeleteItem on the marker items):
what a writer publishes, what a reader reports, the ring, burnt versions, stale markers."""

from __future__ import annotations

import asyncio
import copy
import time

import pytest

from threadweaver.adapters.journal.dynamodb.changes import (
    CHANGES_PID,
    RING,
    ChangeNotes,
    decode_shards,
    encode_shards,
)
from threadweaver.application.ports import JournalUnavailable, StoredEvent


class Markers:
    """The marker items of one table, as the notes use them."""

    def __init__(self) -> None:
        self.items: dict[int, dict] = {}
        self.calls: list[str] = []
        self.fail_updates = 0

    async def call(self, operation, params, **_):
        self.calls.append(operation)
        if operation == "UpdateItem":
            if self.fail_updates:
                self.fail_updates -= 1
                raise JournalUnavailable("throttled")
            slot = int(params["Key"]["seq"]["N"])
            item = self.items.setdefault(slot, dict(params["Key"]))
            names, values = params["ExpressionAttributeNames"], params["ExpressionAttributeValues"]
            for assignment in params["UpdateExpression"].removeprefix("SET ").split(", "):
                name, value = assignment.split(" = ")
                item[names[name]] = values[value]
            return {}
        if operation == "Query":
            assert params["ExpressionAttributeValues"][":p"] == {"S": CHANGES_PID}
            assert params["ConsistentRead"]
            return {"Items": [copy.deepcopy(i) for i in self.items.values()]}
        if operation == "DeleteItem":
            slot = int(params["Key"]["seq"]["N"])
            if self.items[slot]["at"] == params["ExpressionAttributeValues"][":at"]:
                del self.items[slot]
            return {}
        raise AssertionError(operation)


def ev(shard: int, offset: int) -> StoredEvent:
    return StoredEvent("p", 1, shard, "T", {}, offset, offset)


def notes(markers: Markers, **kw) -> ChangeNotes:
    return ChangeNotes(markers.call, "t-journal", every=0.0, **kw)


@pytest.mark.parametrize(
    "shards", [{0}, {5}, {0, 1, 2, 3, 7}, set(range(0, 1024, 3)), set(range(1024)), {1023}]
)
def test_shard_sets_round_trip_in_their_shorter_form(shards):
    text = encode_shards(shards)
    assert decode_shards(text) == shards
    assert len(text) <= 4 + 1024 // 6 + 2  # at most the bitmap's size
    if shards == set(range(1024)):
        assert text == "0-1023"


async def test_a_reader_is_told_of_the_shards_a_writer_touched_after_its_lowest_offset():
    m = Markers()
    writer, reader = notes(m), notes(m)
    start = await reader.changes(None)
    assert start.shards == {} and start.complete
    writer.landed([ev(3, 500), ev(4, 480), ev(3, 510)])
    await writer.publish()
    got = await reader.changes(start.cursor)
    assert got.shards == {3: 479, 4: 479} and got.complete
    assert (await reader.changes(got.cursor)).shards == {}  # reported once
    assert await writer.changes(None) == (await writer.changes(None))  # its own: not reported
    assert (await writer.changes(None)).shards == {}


async def test_nothing_noted_publishes_nothing():
    m = Markers()
    writer = notes(m)
    await writer.publish()
    assert m.calls == [] and writer.published == 0


async def test_notes_missed_beyond_the_ring_make_the_changes_incomplete():
    m = Markers()
    writer, reader = notes(m), notes(m)
    cursor = (await reader.changes(None)).cursor
    for i in range(RING + 1):
        writer.landed([ev(i, 100 + i)])
        await writer.publish()
    got = await reader.changes(cursor)
    assert not got.complete  # the reader reads its whole range from the checkpoints
    writer.landed([ev(9, 900)])
    await writer.publish()
    again = await reader.changes(got.cursor)
    assert again.complete and again.shards == {9: 899}


async def test_a_failed_note_is_carried_by_the_next_one_and_its_version_skipped():
    m = Markers()
    writer, reader = notes(m), notes(m)
    cursor = (await reader.changes(None)).cursor
    writer.landed([ev(1, 100)])
    m.fail_updates = 1
    with pytest.raises(JournalUnavailable):
        await writer.publish()
    writer.landed([ev(2, 200)])
    await writer.publish()
    item = next(iter(m.items.values()))
    assert item["v"] == {"N": "2"} and "n1" not in item  # version 1 burnt
    got = await reader.changes(cursor)
    assert got.shards == {1: 99, 2: 99} and got.complete


async def test_an_append_of_unknown_outcome_is_reported_to_its_own_instance_too():
    m = Markers()
    writer, reader = notes(m), notes(m)
    own_cursor = (await writer.changes(None)).cursor
    cursor = (await reader.changes(None)).cursor
    writer.uncertain(6, 700)
    assert (await writer.changes(own_cursor)).shards == {6: 699}
    await writer.publish()
    assert (await reader.changes(cursor)).shards == {6: 699}


async def test_a_reader_starting_late_reports_recent_notes_and_removes_stale_markers():
    m = Markers()
    writer = notes(m)
    writer.landed([ev(2, 200)])
    await writer.publish()
    old = notes(m)
    old.landed([ev(8, 800)])
    await old.publish()
    m.items[old.slot]["at"] = {"N": str(time.time_ns() // 1000 - 2 * 86_400 * 10**6)}
    reader = notes(m)
    first = await reader.changes(None)
    assert first.shards == {2: 199}  # recent: the catch-up reads it; the old one is not
    assert old.slot not in m.items and writer.slot in m.items
    # a caller starting later still gets what was learnt in the last `retain` seconds
    assert (await reader.changes(None)).shards == {2: 199}


async def test_polls_are_shared_by_callers_within_the_interval():
    m = Markers()
    reader = ChangeNotes(m.call, "t-journal", every=60.0)
    for _ in range(5):
        await reader.changes(None)
    assert m.calls == ["Query"] and reader.polls == 1


async def test_close_ends_the_publisher_even_if_a_request_swallows_its_cancellation():
    """Python 3.11's asyncio.wait_for can swallow a cancellation that arrives as its wait
    completes; the publisher's loop then goes on to wait for the next change. close() cancels
    until the task ends instead of waiting for it for good."""
    m = Markers()
    entered = asyncio.Event()
    swallowed = []

    async def swallowing_call(operation, params, **kw):
        if operation == "UpdateItem" and not swallowed:
            entered.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed.append(True)  # as wait_for does when the inner result is ready
        return await m.call(operation, params, **kw)

    writer = ChangeNotes(swallowing_call, "t-journal", every=0.0)
    writer.start()
    writer.landed([ev(3, 10)])
    await entered.wait()
    async with asyncio.timeout(30):  # before the fix: forever
        await writer.close()
    assert swallowed == [True] and writer.published >= 1
