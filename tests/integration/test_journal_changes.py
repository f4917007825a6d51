"""The read side of the Journal port, held against every backend over real connections (the
backends of test_journal_contract.py): what a projector needs besides reads to converge without
reading its whole range, `changes` (other instances' appends, reported to a poller) and
`in_flight_floor` (an append not finished yet)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.waiting import eventually
from threadweaver.application.ports import ConcurrencyConflict, NewEvent
from threadweaver.domain import new_ulid
from threadweaver.shards.hashing import shard_of

SHARDS = 16  # open_journal's default
BACKENDS = ["sqlite", "dynamodb", "dynamodb-tx"]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """The backend `open_journal` (tests/integration/conftest.py) opens."""
    return request.param


@pytest.fixture
async def journal(open_journal) -> Any:
    return await open_journal()


def pid_in(shard: int | None = None, avoid: set[int] = frozenset()) -> str:
    while True:
        pid = f"thread-{new_ulid()}"
        s = shard_of(pid, SHARDS)
        if (shard is None or s == shard) and s not in avoid:
            return pid


def ev(n: int) -> NewEvent:
    return NewEvent("MessagesAdded", {"schema": 1, "n": n})


async def test_an_append_in_flight_keeps_the_floor_below_where_it_is_stored(journal):
    p = pid_in()
    shard = shard_of(p, SHARDS)
    assert journal.in_flight_floor(shard) is None
    task = asyncio.ensure_future(journal.append(p, 0, [ev(1), ev(2)]))
    await asyncio.sleep(0)  # the append has started
    floor = journal.in_flight_floor(shard)
    stored = await task
    if journal.offset_slack:  # DynamoDB: a write time; SQLite: none (an ordering at commit)
        assert floor is not None and all(e.offset >= floor for e in stored)
    assert journal.in_flight_floor(shard) is None
    with pytest.raises(ConcurrencyConflict):
        await journal.append(p, 0, [ev(3)])
    assert journal.in_flight_floor(shard) is None  # a failed append is finished too


async def test_changes_report_other_instances_appends_and_not_this_ones(open_journal):
    reader = await open_journal()
    writer = await open_journal()
    start = await reader.changes(None)
    assert start.complete
    own = pid_in()
    await reader.append(own, 0, [ev(0)])
    theirs = pid_in(avoid={shard_of(own, SHARDS)})
    written = await writer.append(theirs, 0, [ev(1), ev(2)])
    shard = written[0].shard
    seen: dict[int, int] = {}
    cursor = start.cursor

    async def reported() -> bool:
        nonlocal cursor
        changes = await reader.changes(cursor)
        assert changes.complete
        cursor = changes.cursor
        seen.update(changes.shards)
        return shard in seen

    await eventually(reported, what="the other instance's append reported", timeout=10)
    assert seen[shard] < written[0].offset  # read after it: the events are found
    got = await reader.read_shard_set([shard], {shard: seen[shard]}, 100)
    assert [(e.pid, e.seq) for e in got] == [(theirs, 1), (theirs, 2)]
    assert shard_of(own, SHARDS) not in seen  # this instance's appends reach it in process
    # reported once: the next call from the new cursor has nothing
    await asyncio.sleep(1.1)
    assert (await reader.changes(cursor)).shards == {}


async def test_a_reader_that_starts_late_learns_of_recent_appends(open_journal):
    """A restarted process: its first call reports what other instances (its previous one)
    wrote just before, so that its catch-up reads them even behind the offset slack."""
    writer = await open_journal()
    p = pid_in()
    written = await writer.append(p, 0, [ev(1)])
    await writer.close()  # publishes what it has not yet
    reader = await open_journal()
    first = await reader.changes(None)
    if reader.offset_slack:  # DynamoDB: the notes of the last minute
        assert first.shards[written[0].shard] < written[0].offset
    else:  # SQLite: exact offsets, the catch-up from the checkpoints finds everything
        assert first.shards == {}
