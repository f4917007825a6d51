"""The Journal port's contract, held against every backend over real connections:

- ``sqlite``           the embedded journal (a file under tmp_path);
- ``dynamodb``         DynamoDBJournal on dynalite, which has no TransactWriteItems: the journal
                       detects that and uses its batch-item protocol;
- ``dynamodb-tx``      DynamoDBJournal on dynalite behind the TransactWriteItems emulator
                       (tests/support/transaction_emulator.py): the transactional path
                       (conditional Put per event) as on AWS.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from threadweaver.application.ports import (
    ConcurrencyConflict,
    Journal,
    JournalError,
    NewEvent,
    Snapshot,
    StoredEvent,
)
from threadweaver.domain import new_ulid
from threadweaver.shards.hashing import shard_of

SHARDS = 16  # open_journal's default
BACKENDS = ["sqlite", "dynamodb", "dynamodb-tx"]

Opener = Callable[..., Awaitable[Journal]]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """The backend `open_journal` (tests/integration/conftest.py) opens."""
    return request.param


@pytest.fixture
async def journal(open_journal) -> Any:
    return await open_journal()


def pid() -> str:
    return f"thread-{new_ulid()}"


def ev(kind: str = "MessagesAdded", **payload: Any) -> NewEvent:
    return NewEvent(kind, {"schema": 1, **payload})


def key(e: StoredEvent) -> tuple[str, int]:
    return e.pid, e.seq


# ---------------------------------------------------------------------------------------------
# appends and replay
# ---------------------------------------------------------------------------------------------


async def test_is_a_journal(journal):
    assert isinstance(journal, Journal)
    assert journal.shards == SHARDS
    assert journal.offset_slack >= 0


async def test_append_single_event(journal):
    p = pid()
    stored = await journal.append(
        p, 0, [ev("ThreadCreated", title="hello ✓", n=1)], writer="member-a"
    )
    assert len(stored) == 1
    e = stored[0]
    assert (e.pid, e.seq, e.type) == (p, 1, "ThreadCreated")
    assert e.payload == {"schema": 1, "title": "hello ✓", "n": 1}
    assert e.shard == shard_of(p, SHARDS)
    assert e.ts > 1_600_000_000_000_000 and e.offset > 0
    assert e.writer == "member-a"
    assert await journal.read(p) == stored
    assert await journal.highest_seq(p) == 1


async def test_append_multi_event_is_in_order(journal):
    p = pid()
    await journal.append(p, 0, [ev("ThreadCreated")])
    stored = await journal.append(p, 1, [ev(n=i) for i in range(5)])
    assert [e.seq for e in stored] == [2, 3, 4, 5, 6]
    assert [e.payload["n"] for e in stored] == list(range(5))
    assert [e.offset for e in stored] == sorted(e.offset for e in stored)
    events = await journal.read(p)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[1:] == stored
    assert await journal.highest_seq(p) == 6


async def test_append_nothing_is_a_no_op(journal):
    p = pid()
    assert await journal.append(p, 0, []) == []
    assert await journal.read(p) == []
    assert await journal.highest_seq(p) == 0


async def test_unknown_pid_reads_empty(journal):
    assert await journal.read(pid()) == []
    assert await journal.read(pid(), 7) == []
    assert await journal.highest_seq(pid()) == 0
    assert await journal.load_snapshot(pid()) is None


async def test_replay_from_seq(journal):
    p = pid()
    await journal.append(p, 0, [ev(n=1)])
    await journal.append(p, 1, [ev(n=2), ev(n=3), ev(n=4)])  # one append holding 2..4
    await journal.append(p, 4, [ev(n=5)])
    for start in range(1, 8):
        got = await journal.read(p, start)
        assert [e.seq for e in got] == list(range(start, 6)), start
        assert [e.payload["n"] for e in got] == list(range(start, 6))
    assert [e.seq for e in await journal.read(p, 0)] == [1, 2, 3, 4, 5]


async def test_long_stream_replays_completely(journal):
    p = pid()
    seq = 0
    sizes = [1, 3, 1, 2, 5, 1, 1, 4] * 5
    for size in sizes:
        await journal.append(p, seq, [ev(n=seq + i + 1) for i in range(size)])
        seq += size
    events = await journal.read(p)
    assert [e.seq for e in events] == list(range(1, seq + 1))
    assert [e.payload["n"] for e in events] == list(range(1, seq + 1))
    assert await journal.highest_seq(p) == seq
    assert [e.seq for e in await journal.read(p, seq - 2)] == [seq - 2, seq - 1, seq]


async def test_metadata_rides_on_the_envelope(journal):
    p = pid()
    record = {"idempotencyKey": "k", "accountId": "a", "requestHash": "h"}
    keyed = {"idempotency": record, "traceContext": {"traceparent": "00-ab-cd-01"}}
    parts = [{"idempotency": {**record, "part": i, "parts": 2}} for i in range(2)]
    stored = await journal.append(p, 0, [NewEvent("ThreadCreated", {"schema": 1, "n": 1}, keyed)])
    stored += await journal.append(
        p, 1, [NewEvent("MessagesAdded", {"schema": 1, "n": 2 + i}, m) for i, m in enumerate(parts)]
    )
    stored += await journal.append(p, 3, [ev(n=4)])
    assert [e.metadata for e in stored] == [keyed, *parts, {}]
    events = await journal.read(p)
    assert events == stored
    assert [e.metadata for e in events] == [keyed, *parts, {}]
    assert [e.payload for e in events] == [{"schema": 1, "n": n} for n in range(1, 5)]
    assert [e for e in await journal.read_shards(0, SHARDS, {}, 100) if e.pid == p] == stored


async def test_large_payload_round_trips(journal):
    p = pid()
    text = "メッセージ " * 5000  # ~ 80 KB of UTF-8
    stored = await journal.append(p, 0, [ev(messages=[{"id": new_ulid(), "text": text}])])
    (back,) = await journal.read(p)
    assert back.payload == stored[0].payload
    assert back.payload["messages"][0]["text"] == text


# ---------------------------------------------------------------------------------------------
# conditional writes
# ---------------------------------------------------------------------------------------------


async def test_conflict_on_existing_seq(journal):
    p = pid()
    await journal.append(p, 0, [ev(n=1)])
    with pytest.raises(ConcurrencyConflict) as info:
        await journal.append(p, 0, [ev(n=99)])
    assert info.value.pid == p and info.value.seq == 1
    assert isinstance(info.value, JournalError)
    with pytest.raises(ConcurrencyConflict):
        await journal.append(p, 0, [ev(n=98), ev(n=97)])
    events = await journal.read(p)
    assert [(e.seq, e.payload["n"]) for e in events] == [(1, 1)]


async def test_conflict_on_any_seq_of_a_multi_event_append(journal):
    p = pid()
    await journal.append(p, 0, [ev(n=1), ev(n=2), ev(n=3)])
    for expected, count in [(0, 1), (1, 1), (2, 1), (1, 3), (2, 2), (0, 5)]:
        with pytest.raises(ConcurrencyConflict) as info:
            await journal.append(p, expected, [ev(n=100 + i) for i in range(count)])
        assert info.value.pid == p
        assert expected < info.value.seq <= 3
    events = await journal.read(p)
    assert [(e.seq, e.payload["n"]) for e in events] == [(1, 1), (2, 2), (3, 3)]
    assert await journal.highest_seq(p) == 3
    # the right expected_seq still works
    assert [e.seq for e in await journal.append(p, 3, [ev(n=4), ev(n=5)])] == [4, 5]


async def test_concurrent_appends_with_the_same_expected_seq_exactly_one_wins(journal):
    pids = [pid() for _ in range(12)]
    for i, p in enumerate(pids):
        if i % 2:
            await journal.append(p, 0, [ev(n=0)])
    rng = random.Random(7)

    async def attempt(p: str, expected: int, writer: str) -> Any:
        size = rng.randint(1, 4)
        try:
            return await journal.append(
                p, expected, [ev(w=writer, i=i) for i in range(size)], writer=writer
            )
        except ConcurrencyConflict as exc:
            return exc

    for round_ in range(3):
        for p in pids:
            expected = await journal.highest_seq(p)
            results = await asyncio.gather(*(attempt(p, expected, f"w{k}") for k in range(4)))
            winners = [r for r in results if isinstance(r, list)]
            losers = [r for r in results if isinstance(r, ConcurrencyConflict)]
            assert len(winners) == 1 and len(losers) == 3, (round_, p, results)
            assert all(lo.seq == expected + 1 and lo.pid == p for lo in losers)
            events = await journal.read(p, expected + 1)
            assert events == winners[0]  # nothing of any loser
            assert {e.writer for e in events} == {winners[0][0].writer}
            assert await journal.highest_seq(p) == expected + len(winners[0])


async def test_two_instances_race_on_one_pid(open_journal):
    a, b = await open_journal(), await open_journal()
    p = pid()
    seq_a = seq_b = 0
    written: list[StoredEvent] = []
    conflicts = 0
    for i in range(30):
        ra, rb = await asyncio.gather(
            a.append(p, seq_a, [ev(w="a", i=i)], writer="a"),
            b.append(p, seq_b, [ev(w="b", i=i), ev(w="b", i=i)], writer="b"),
            return_exceptions=True,
        )
        for r in (ra, rb):
            if isinstance(r, ConcurrencyConflict):
                conflicts += 1
            elif isinstance(r, BaseException):
                raise r
            else:
                written.extend(r)
        seq_a = await a.highest_seq(p)
        seq_b = await b.highest_seq(p)
    events = await a.read(p)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sorted(events, key=key) == sorted(written, key=key)
    assert conflicts >= 1
    assert await b.read(p) == events


async def test_many_concurrent_appends_to_different_pids_are_all_durable(open_journal):
    journal = await open_journal()
    pids = [pid() for _ in range(200)]

    async def write(i: int, p: str) -> list[StoredEvent]:
        events = [ev("ThreadCreated", i=i)] + [ev(i=i, k=k) for k in range(i % 3)]
        return await journal.append(p, 0, events, writer="bulk")

    results = await asyncio.gather(*(write(i, p) for i, p in enumerate(pids)))
    assert all(r[0].seq == 1 for r in results)
    total = sum(len(r) for r in results)
    await journal.close()

    again = await open_journal()
    for i, p in enumerate(pids):
        got = await again.read(p)
        assert [e.seq for e in got] == list(range(1, 2 + i % 3))
        assert all(e.payload["i"] == i for e in got)
    everything = await _read_all(again, 0, SHARDS, 10_000)
    assert len(everything) == total
    assert {e.pid for e in everything} == set(pids)


async def test_append_nowait_goes_on_when_its_awaiter_is_cancelled(open_journal):
    journal = await open_journal()
    p = pid()
    stored = await journal.append_nowait(p, 0, [ev(n=1)], writer="w")
    assert [(e.seq, e.writer) for e in stored] == [(1, "w")]
    assert await journal.read(p) == stored

    async def command() -> Any:
        return await journal.append_nowait(p, 1, [ev(n=2), ev(n=3)], writer="gave-up")

    task = asyncio.ensure_future(command())
    await asyncio.sleep(0)  # the append is on its way
    task.cancel()  # ... and its caller gives up (a time-out)
    with pytest.raises(asyncio.CancelledError):
        await task
    await journal.close()  # waits for the appends in flight
    again = await open_journal()
    events = await again.read(p)
    assert [(e.seq, e.payload["n"], e.writer) for e in events] == [
        (1, 1, "w"),
        (2, 2, "gave-up"),
        (3, 3, "gave-up"),
    ]


async def test_closed_journal_refuses(open_journal):
    journal = await open_journal()
    await journal.close()
    with pytest.raises(JournalError):
        await journal.append(pid(), 0, [ev()])


# ---------------------------------------------------------------------------------------------
# snapshots
# ---------------------------------------------------------------------------------------------


async def test_snapshots_save_load_overwrite(journal):
    p = pid()
    assert await journal.load_snapshot(p) is None
    state = {"title": "t", "members": ["a", "b"], "nested": {"ü": [1, 2, None]}}
    await journal.save_snapshot(Snapshot(p, 3, state, ts=1_700_000_000_000_000))
    snap = await journal.load_snapshot(p)
    assert snap == Snapshot(p, 3, state, ts=1_700_000_000_000_000)
    await journal.save_snapshot(Snapshot(p, 8, {"v": 8}))
    snap = await journal.load_snapshot(p)
    assert (snap.seq, snap.state) == (8, {"v": 8}) and snap.ts > 0
    await journal.save_snapshot(Snapshot(p, 5, {"v": 5}))  # older: kept out
    assert (await journal.load_snapshot(p)).state == {"v": 8}
    assert await journal.load_snapshot(pid()) is None


# ---------------------------------------------------------------------------------------------
# read_shards: the projections' catch-up stream
# ---------------------------------------------------------------------------------------------


async def _read_all(
    journal: Any, start: int, end: int, limit: int, after: dict[int, int] | None = None
) -> list[StoredEvent]:
    """Page through read_shards the way a projection does: resume after the highest offset
    returned per shard."""
    cursor = dict(after or {})
    out: list[StoredEvent] = []
    for _ in range(10_000):
        batch = await journal.read_shards(start, end, cursor, limit)
        if not batch:
            return out
        groups = {(e.shard, e.offset) for e in batch}
        assert len(batch) <= limit or len(groups) == 1, (limit, len(batch))
        assert batch == sorted(batch, key=lambda e: (e.offset, e.pid, e.seq))
        for e in batch:
            assert start <= e.shard < end
            assert e.offset > cursor.get(e.shard, 0)
        for e in batch:
            cursor[e.shard] = max(cursor.get(e.shard, 0), e.offset)
        out.extend(batch)
    raise AssertionError("read_shards never ran dry")


async def _populate(journal: Any, n_pids: int = 24) -> dict[str, list[StoredEvent]]:
    written: dict[str, list[StoredEvent]] = {}
    rng = random.Random(11)
    pids = [pid() for _ in range(n_pids)]
    for round_ in range(3):
        for p in pids:
            seq = len(written.get(p, []))
            size = rng.choice([1, 1, 2, 3])
            written.setdefault(p, []).extend(
                await journal.append(p, seq, [ev(r=round_, i=i) for i in range(size)])
            )
    return written


async def test_read_shards_returns_every_event_once_in_offset_order(journal):
    written = await _populate(journal)
    all_events = sorted((e for evs in written.values() for e in evs), key=key)
    got = await journal.read_shards(0, SHARDS, {}, 10_000)
    assert sorted(got, key=key) == all_events
    assert got == sorted(got, key=lambda e: (e.offset, e.pid, e.seq))
    for p, evs in written.items():
        assert [e.seq for e in got if e.pid == p] == [e.seq for e in evs]  # per pid in order
        assert all(e.shard == shard_of(p, SHARDS) for e in evs)


async def test_read_shards_limits_to_a_shard_range(journal):
    written = await _populate(journal)
    all_events = [e for evs in written.values() for e in evs]
    for start, end in [(0, 1), (0, 5), (5, 11), (11, SHARDS), (3, 4)]:
        got = await journal.read_shards(start, end, {}, 10_000)
        expected = sorted((e for e in all_events if start <= e.shard < end), key=key)
        assert sorted(got, key=key) == expected, (start, end)
    assert await journal.read_shards(4, 4, {}, 100) == []


async def test_read_shards_resumes_after_offsets_per_shard(journal):
    written = await _populate(journal)
    all_events = [e for evs in written.values() for e in evs]
    by_shard: dict[int, list[StoredEvent]] = {}
    for e in all_events:
        by_shard.setdefault(e.shard, []).append(e)
    after: dict[int, int] = {}
    for shard, evs in by_shard.items():
        offsets = sorted({e.offset for e in evs})
        after[shard] = offsets[len(offsets) // 2]
    got = await journal.read_shards(0, SHARDS, after, 10_000)
    expected = sorted((e for e in all_events if e.offset > after.get(e.shard, 0)), key=key)
    assert sorted(got, key=key) == expected
    # past the end: nothing
    end = {s: max(e.offset for e in evs) for s, evs in by_shard.items()}
    assert await journal.read_shards(0, SHARDS, end, 100) == []


@pytest.mark.parametrize("limit", [1, 2, 5, 17])
async def test_read_shards_pagination_delivers_everything_exactly_once(journal, limit):
    written = await _populate(journal, n_pids=12)
    all_events = sorted((e for evs in written.values() for e in evs), key=key)
    got = await _read_all(journal, 0, SHARDS, limit)
    assert sorted(got, key=key) == all_events
    assert len(got) == len(all_events)
    # a sub-range, paged
    sub = await _read_all(journal, 2, 9, limit)
    assert sorted(sub, key=key) == [e for e in all_events if 2 <= e.shard < 9]


async def test_read_shards_sees_later_appends(journal):
    p = pid()
    first = await journal.append(p, 0, [ev(n=1)])
    got = await journal.read_shards(0, SHARDS, {}, 100)
    assert [key(e) for e in got] == [key(first[0])]
    cursor = {first[0].shard: first[0].offset}
    assert await journal.read_shards(0, SHARDS, cursor, 100) == []
    second = await journal.append(p, 1, [ev(n=2), ev(n=3)])
    got = await journal.read_shards(0, SHARDS, cursor, 100)
    assert [key(e) for e in got] == [key(e) for e in second]


# ---------------------------------------------------------------------------------------------
# notifications
# ---------------------------------------------------------------------------------------------


async def test_subscribe_notifies_after_appends(journal):
    seen: list[list[StoredEvent]] = []
    unsubscribe = journal.subscribe(lambda events: seen.append(list(events)))

    def broken(events: Any) -> None:
        raise RuntimeError("listener bug")

    journal.subscribe(broken)  # a failing listener breaks nothing
    p = pid()
    one = await journal.append(p, 0, [ev(n=1)])
    two = await journal.append(p, 1, [ev(n=2), ev(n=3)])
    with pytest.raises(ConcurrencyConflict):
        await journal.append(p, 0, [ev(n=9)])  # a conflict notifies nothing
    flat = [e for batch in seen for e in batch]
    assert flat == one + two
    # the listener saw durable events: they can be read back
    assert await journal.read(p) == one + two
    unsubscribe()
    await journal.append(p, 3, [ev(n=4)])
    assert [e for batch in seen for e in batch] == one + two
    unsubscribe()  # twice is harmless


# ---------------------------------------------------------------------------------------------
# durability across instances
# ---------------------------------------------------------------------------------------------


async def test_reopen_reads_everything_back(open_journal):
    journal = await open_journal()
    written = await _populate(journal, n_pids=8)
    p = next(iter(written))
    await journal.save_snapshot(Snapshot(p, 2, {"kept": True}))
    await journal.close()

    again = await open_journal()
    for q, evs in written.items():
        assert await again.read(q) == evs
        assert await again.highest_seq(q) == len(evs)
    assert (await again.load_snapshot(p)).state == {"kept": True}
    everything = await again.read_shards(0, SHARDS, {}, 10_000)
    assert sorted(everything, key=key) == sorted((e for v in written.values() for e in v), key=key)
    n = len(written[p])
    with pytest.raises(ConcurrencyConflict):
        await again.append(p, n - 1, [ev()])
    more = await again.append(p, n, [ev(n="after reopen")])
    assert more[0].seq == n + 1
    # offsets keep increasing for the projections across instances
    assert more[0].offset > max(e.offset for e in written[p])


async def test_reopen_with_another_shard_count_is_refused(open_journal):
    journal = await open_journal()
    await journal.append(pid(), 0, [ev()])
    await journal.close()
    with pytest.raises(JournalError, match="shard"):
        await open_journal(shards=SHARDS * 2)


# ---------------------------------------------------------------------------------------------
# misconfiguration
# ---------------------------------------------------------------------------------------------


async def test_dynamodb_missing_tables_is_a_clear_error(dynamodb_base_settings):
    from threadweaver.adapters.journal.dynamodb import DynamoDBJournal

    journal = DynamoDBJournal(dynamodb_base_settings, shards=SHARDS)
    with pytest.raises(JournalError) as info:
        await journal.start()
    message = str(info.value)
    assert f"{dynamodb_base_settings.table_prefix}-journal does not exist" in message
    assert "threadweaver create-tables" in message
    await journal.close()


# ---------------------------------------------------------------------------------------------
# read_shard_set: what a projector reads for the shards its pushed appends touched
# ---------------------------------------------------------------------------------------------


async def test_read_shard_set_returns_only_those_shards_after_their_offsets(journal):
    written = await _populate(journal)
    all_events = [e for evs in written.values() for e in evs]
    shards = sorted({e.shard for e in all_events})
    chosen = shards[::2] + [SHARDS + 5, -1]  # scattered, plus shards that do not exist
    after = {s: sorted(e.offset for e in all_events if e.shard == s)[0] for s in shards[::4]}
    got = await journal.read_shard_set(chosen, after, 10_000)
    expected = sorted(
        (e for e in all_events if e.shard in chosen and e.offset > after.get(e.shard, 0)), key=key
    )
    assert sorted(got, key=key) == expected
    assert got == sorted(got, key=lambda e: (e.offset, e.pid, e.seq))
    assert await journal.read_shard_set([], {}, 100) == []


@pytest.mark.parametrize("limit", [1, 3, 8])
async def test_read_shard_set_pages_through_every_event_once(journal, limit):
    written = await _populate(journal, n_pids=12)
    all_events = [e for evs in written.values() for e in evs]
    shards = sorted({e.shard for e in all_events})[1::2]
    cursor: dict[int, int] = {}
    got: list[StoredEvent] = []
    for _ in range(1_000):
        batch = await journal.read_shard_set(shards, cursor, limit)
        if not batch:
            break
        assert len(batch) <= limit or len({(e.shard, e.offset) for e in batch}) == 1
        assert batch == sorted(batch, key=lambda e: (e.offset, e.pid, e.seq))
        assert all(e.offset > cursor.get(e.shard, 0) for e in batch)
        for e in batch:  # each shard's events come as a prefix: nothing is skipped
            cursor[e.shard] = max(cursor.get(e.shard, 0), e.offset)
        got.extend(batch)
    assert sorted(got, key=key) == sorted((e for e in all_events if e.shard in shards), key=key)
    assert len(got) == len({key(e) for e in got})


async def test_what_concurrent_appends_return_is_what_is_read_back(journal):
    """Appends sharing a group commit (SQLite: one executemany) report the events, offsets
    included, exactly as they are stored; a conflict among them fails only its own append."""
    pids = [pid() for _ in range(40)]
    await journal.append(pids[0], 0, [ev(n=0)])
    results = await asyncio.gather(
        *(journal.append(p, 0, [ev(n=i), ev(n=i + 1)][: 1 + i % 2]) for i, p in enumerate(pids)),
        return_exceptions=True,
    )
    assert isinstance(results[0], ConcurrencyConflict)
    written = [e for r in results[1:] for e in r]
    assert len(written) == sum(1 + i % 2 for i in range(1, 40))
    fresh = await asyncio.gather(
        *(journal.append(pid(), 0, [ev(n=i)] * (1 + i % 3)) for i in range(40))
    )  # no conflict this time
    written += [e for r in fresh for e in r]
    back = sorted(await journal.read_shards(0, SHARDS, {}, 10_000), key=key)
    assert sorted(written + await journal.read(pids[0]), key=key) == back
