"""The RMU against the real SQLite journal and read model: exactly once, resume from offsets,
push wake-ups, and the pure batch planner."""

import asyncio
import collections
import time
from dataclasses import replace

import pytest

from tests.support.waiting import eventually
from threadweaver.adapters.journal.sqlite import SqliteJournal
from threadweaver.adapters.readmodel import ReadModelSettings, SqlReadModel
from threadweaver.application.entities import EntityManager
from threadweaver.application.ports import Changes
from threadweaver.application.projection import plan_batch
from threadweaver.application.projector import Projector, ProjectorSettings
from threadweaver.application.row_operations import ProjectedEvent
from threadweaver.domain import (
    AddMessages,
    CreateThread,
    NewMessage,
    new_ulid,
    thread_persistence_id,
)
from threadweaver.shards import shard_of

# a bound against a hang, not a speed claim: a loaded CI machine may take seconds
CAUGHT_UP_BOUND = 30

ADMIN = new_ulid()


@pytest.fixture
async def stores(tmp_path):
    j = SqliteJournal(tmp_path / "j.db", shards=16, synchronous="off")
    rm = SqlReadModel(ReadModelSettings.sqlite(tmp_path / "rm.db"))
    await j.start()
    await rm.migrate()
    yield j, rm
    await j.close()
    await rm.close()


async def write_threads(mgr, n, messages=3):
    tids = []
    for i in range(n):
        tid = new_ulid()
        await mgr.execute(CreateThread(tid, ADMIN, f"t{i}", (ADMIN,), (), None, None, i))
        for k in range(messages):
            await mgr.execute(AddMessages(tid, ADMIN, (NewMessage(new_ulid(), f"{i}-{k}"),), i))
        tids.append(tid)
    return tids


@pytest.mark.parametrize("chunk", [64, 3])
async def test_projects_everything_once_and_resumes_from_offsets(stores, chunk):
    j, rm = stores
    mgr = EntityManager(j)
    await write_threads(mgr, 20)
    p = Projector(
        j, rm, 0, 16, ProjectorSettings(batch_size=7, poll_interval=0.05, sweep_chunk=chunk)
    )
    p.start()
    await p.wait_caught_up(CAUGHT_UP_BOUND)
    await p.stop()
    assert await rm.counts() == {"threads": 20, "administrators": 20, "members": 0, "messages": 60}
    assert p.state.applied == 80

    await write_threads(mgr, 5)
    again = Projector(
        j, rm, 0, 16, ProjectorSettings(batch_size=7, poll_interval=0.05, sweep_chunk=chunk)
    )
    again.start()
    await asyncio.sleep(0.2)
    await again.wait_caught_up(CAUGHT_UP_BOUND)
    await again.stop()
    assert again.state.applied == 20 and again.state.skipped == 0
    assert (await rm.counts())["messages"] == 75


async def test_two_ranges_split_the_work(stores):
    j, rm = stores
    await write_threads(EntityManager(j), 30, messages=0)
    low, high = Projector(j, rm, 0, 8), Projector(j, rm, 8, 16)
    for p in (low, high):
        p.start()
    for p in (low, high):
        await p.wait_caught_up(CAUGHT_UP_BOUND)
        await p.stop()
    assert low.state.applied + high.state.applied == 30
    assert low.state.applied > 0 and high.state.applied > 0
    assert (await rm.counts())["threads"] == 30


async def test_an_append_wakes_the_projector_before_its_poll(stores):
    j, rm = stores
    p = Projector(j, rm, 0, 16, ProjectorSettings(poll_interval=30))
    p.start()
    await p.wait_caught_up(CAUGHT_UP_BOUND)
    mgr = EntityManager(j)
    t0 = time.monotonic()
    tid = new_ulid()
    await mgr.execute(CreateThread(tid, ADMIN, "x", (ADMIN,), (), None, None, 1))
    while await rm.get_thread(tid, ADMIN) is None:
        assert time.monotonic() - t0 < 2, "projection waited for the poll interval"
        await asyncio.sleep(0.005)
    await p.stop()


async def test_a_failing_read_model_is_retried_with_backoff(stores):
    j, rm = stores
    await write_threads(EntityManager(j), 2, messages=0)
    real_apply = rm.apply
    calls = {"n": 0}

    async def flaky(projection, events):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ConnectionError("database went away")
        return await real_apply(projection, events)

    rm.apply = flaky
    p = Projector(j, rm, 0, 16, ProjectorSettings(min_backoff=0.01, poll_interval=0.05))
    p.start()
    await p.wait_caught_up(CAUGHT_UP_BOUND)
    await p.stop()
    assert p.state.restarts == 2 and p.state.applied == 2 and p.state.last_error is None


def ev(thread_id, seq, shard, offset):
    return ProjectedEvent(thread_id, seq, shard, offset, ())


def test_plan_skips_applied_events_and_stalls_a_shard_at_a_gap():
    events = [
        ev("a", 1, 0, 10),
        ev("a", 2, 0, 11),
        ev("b", 3, 1, 12),
        ev("c", 1, 1, 13),
        ev("a", 3, 0, 14),
    ]
    plan = plan_batch(events, {"a": 1, "b": 1})
    assert [(e.thread_id, e.seq) for e in plan.apply] == [("a", 2), ("a", 3)]
    assert plan.skipped == 1
    assert plan.offsets == {0: 14}  # shard 1 stalled at b#3 (b is at 1): not advanced
    assert plan.stalled == {1: -1}
    assert plan.gaps == {"b": 1}  # the thread to repair, and the seq its row has


# ---------------------------------------------------------------------------------------------
# convergence whatever the visibility order
# ---------------------------------------------------------------------------------------------


class LaggingJournal:
    """The SQLite journal with what DynamoDB may do to a reader: the events in `unfed` are not
    handed to subscribers (an append that finished late, or whose process died first), those in
    `hidden` are not returned by read_shards / read_shard_set (an eventually consistent index;
    `read`, strongly consistent, returns them), those in `unreadable` by no read. `floors`
    stands for appends in flight. Counts the reads."""

    def __init__(self, inner: SqliteJournal) -> None:
        self.inner = inner
        self.unfed: set[tuple[str, int]] = set()
        self.hidden: set[tuple[str, int]] = set()
        self.unreadable: set[tuple[str, int]] = set()
        self.floors: dict[int, int] = {}
        self.announce = True  # False: `changes` reports nothing (writers that announce nothing)
        self.calls: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @staticmethod
    def _without(events, *hiding):
        return [e for e in events if not any((e.pid, e.seq) in h for h in hiding)]

    def subscribe(self, listener):
        def feed(events):
            events = self._without(events, self.unfed)
            if events:
                listener(events)

        return self.inner.subscribe(feed)

    def in_flight_floor(self, shard):
        return self.floors.get(shard)

    async def changes(self, cursor):
        self.calls["changes"] += 1
        changes = await self.inner.changes(cursor)
        return changes if self.announce else Changes(changes.cursor)

    async def read_shards(self, start, end, after, limit):
        self.calls["read_shards"] += 1
        got = await self.inner.read_shards(start, end, after, limit)
        return self._without(got, self.hidden, self.unreadable)

    async def read_shard_set(self, shards, after, limit):
        self.calls["read_shard_set"] += 1
        got = await self.inner.read_shard_set(shards, after, limit)
        return self._without(got, self.hidden, self.unreadable)

    async def read(self, pid, from_seq=1):
        self.calls["read"] += 1
        return self._without(await self.inner.read(pid, from_seq), self.unreadable)

    def index_reads(self) -> int:
        return self.calls["read_shards"] + self.calls["read_shard_set"]


def threads_in_one_shard(n, shards=16):
    tids = [new_ulid()]
    shard = shard_of(thread_persistence_id(tids[0]), shards)
    while len(tids) < n:
        tid = new_ulid()
        if shard_of(thread_persistence_id(tid), shards) == shard:
            tids.append(tid)
    return tids, shard


async def wait_for_messages(rm, tid, count):
    async def projected():
        return len(await rm.list_messages(tid, ADMIN, 0, 100) or []) >= count

    await eventually(projected, what=f"{count} messages of {tid} in the read model")


async def post(mgr, tid, text):
    await mgr.execute(AddMessages(tid, ADMIN, (NewMessage(new_ulid(), text),), 1))


async def create_threads(mgr, *tids):
    for tid in tids:
        await mgr.execute(CreateThread(tid, ADMIN, "t", (ADMIN,), (), None, None, 1))


QUIET = ProjectorSettings(poll_interval=60, repair_after=0.02)  # no poll during a test


async def test_this_process_appends_are_applied_without_reading_them_back(stores):
    j, rm = stores
    lag = LaggingJournal(j)
    p = Projector(lag, rm, 0, 16, QUIET)
    p.start()
    await p.wait_caught_up(CAUGHT_UP_BOUND)
    reads = lag.index_reads()
    mgr = EntityManager(j)
    tids = await write_threads(mgr, 10, messages=2)
    for tid in tids:
        await wait_for_messages(rm, tid, 2)
    await p.stop()
    assert lag.index_reads() == reads and lag.calls["read"] == 0  # the feed, no read-back
    assert p.state.applied == 30 and (await rm.counts())["messages"] == 20


async def test_an_append_reported_late_is_repaired_by_one_read_not_a_loop(stores):
    """What users saw, in the feed: an event of a thread is missing (its append finished late,
    or never reported) when the thread's next one comes. One read of the thread's missing
    events repairs it; nothing is read in a loop (no poll, no sweep: the interval is long)."""
    j, rm = stores
    lag = LaggingJournal(j)
    mgr = EntityManager(j)
    (tid,), _ = threads_in_one_shard(1)
    await create_threads(mgr, tid)
    p = Projector(lag, rm, 0, 16, QUIET)
    p.start()
    await p.wait_caught_up(CAUGHT_UP_BOUND)
    reads = lag.index_reads()
    lag.unfed.add((thread_persistence_id(tid), 2))
    lag.hidden.add((thread_persistence_id(tid), 2))
    await post(mgr, tid, "late")
    await post(mgr, tid, "after it")
    await wait_for_messages(rm, tid, 2)
    await p.stop()
    assert p.state.repairs == 1 and lag.calls["read"] == 1
    assert lag.index_reads() == reads
    assert [m.body for m in await rm.list_messages(tid, ADMIN, 0, 10)] == ["late", "after it"]


async def test_another_writers_event_visible_late_in_the_index_is_repaired(stores, tmp_path):
    """The index path: another process's appends (not fed here) come from the sweeps; one of
    them shows up behind an offset already read. The gap it leaves is repaired by one read."""
    j, rm = stores
    other = SqliteJournal(j.path, shards=16, synchronous="off")
    await other.start()
    lag = LaggingJournal(j)
    mgr = EntityManager(other)
    (tid,), _ = threads_in_one_shard(1)
    await create_threads(mgr, tid)
    p = Projector(lag, rm, 0, 16, ProjectorSettings(poll_interval=0.05, repair_after=0.02))
    p.start()
    await p.wait_caught_up(CAUGHT_UP_BOUND)
    lag.hidden.add((thread_persistence_id(tid), 2))
    await post(mgr, tid, "late")
    await post(mgr, tid, "after it")
    await wait_for_messages(rm, tid, 2)
    await p.stop()
    await other.close()
    assert p.state.repairs == 1


async def test_a_gap_holds_only_its_thread_and_the_checkpoint_stays_below_it(stores):
    j, rm = stores
    lag = LaggingJournal(j)
    mgr = EntityManager(j)
    (a, b), shard = threads_in_one_shard(2)
    await create_threads(mgr, a, b)
    p = Projector(lag, rm, 0, 16, replace(QUIET, max_backoff=0.1))
    p.start()
    await p.wait_caught_up(CAUGHT_UP_BOUND)
    lag.unfed.add((thread_persistence_id(a), 2))
    lag.unreadable.add((thread_persistence_id(a), 2))  # nowhere to be read for now
    await post(mgr, a, "a2")
    await post(mgr, a, "a3")
    await post(mgr, b, "b2")
    await wait_for_messages(rm, b, 1)  # the other thread of the shard goes on
    await eventually(lambda: p.state.repairs >= 2, what="a second repair (backing off)")
    a3 = (await j.read(thread_persistence_id(a), 3))[0]
    checkpoint = (await rm.load_offsets("threads", shard, shard + 1))[shard]
    assert checkpoint < a3.offset  # a restart must find the held event again
    assert await rm.list_messages(a, ADMIN, 0, 10) == []
    lag.unreadable.clear()
    await wait_for_messages(rm, a, 2)
    await p.stop()
    assert [m.body for m in await rm.list_messages(a, ADMIN, 0, 10)] == ["a2", "a3"]
    assert lag.calls["read"] == p.state.repairs < 20


async def test_a_restart_finds_the_event_held_behind_a_gap(stores):
    j, rm = stores
    lag = LaggingJournal(j)
    mgr = EntityManager(j)
    (a, b), _ = threads_in_one_shard(2)
    await create_threads(mgr, a, b)
    p = Projector(lag, rm, 0, 16, replace(QUIET, repair_after=30))
    p.start()
    await p.wait_caught_up(CAUGHT_UP_BOUND)
    lag.unfed.add((thread_persistence_id(a), 2))
    lag.unreadable.add((thread_persistence_id(a), 2))
    await post(mgr, a, "a2")
    await post(mgr, a, "a3")
    await post(mgr, b, "b2")
    await wait_for_messages(rm, b, 1)
    await p.stop()  # a3 held, a2 never seen: gone with the process
    lag.unreadable.clear()
    again = Projector(lag, rm, 0, 16, QUIET)
    again.start()
    await wait_for_messages(rm, a, 2)
    await again.stop()


async def test_the_checkpoint_stays_below_an_append_in_flight(stores):
    j, rm = stores
    lag = LaggingJournal(j)
    mgr = EntityManager(j)
    (a, b), shard = threads_in_one_shard(2)
    await create_threads(mgr, a)
    p = Projector(lag, rm, 0, 16, QUIET)
    p.start()
    await p.wait_caught_up(CAUGHT_UP_BOUND)
    first = (await rm.load_offsets("threads", shard, shard + 1))[shard]
    lag.floors[shard] = first + 1  # an append of this process has not finished
    await create_threads(mgr, b)
    await post(mgr, a, "a2")
    await wait_for_messages(rm, a, 1)
    assert (await rm.load_offsets("threads", shard, shard + 1))[shard] == first
    lag.floors.clear()
    await post(mgr, a, "a3")
    await wait_for_messages(rm, a, 2)
    await p.stop()
    assert (await rm.load_offsets("threads", shard, shard + 1))[shard] > first


async def test_a_queue_too_long_is_read_from_the_journal_instead(stores):
    j, rm = stores
    lag = LaggingJournal(j)
    real_apply = rm.apply
    down = asyncio.Event()
    down.set()

    async def unavailable_while_down(projection, events):
        if down.is_set():
            raise ConnectionError("database went away")
        return await real_apply(projection, events)

    rm.apply = unavailable_while_down
    settings = replace(QUIET, max_queued=5, min_backoff=0.01, max_backoff=0.05)
    p = Projector(lag, rm, 0, 16, settings)
    p.start()
    tids = await write_threads(EntityManager(j), 6, messages=1)  # 12 appends queued at most 5
    down.clear()
    for tid in tids:
        await wait_for_messages(rm, tid, 1)
    await p.wait_caught_up(CAUGHT_UP_BOUND)
    await p.stop()
    assert (await rm.counts())["messages"] == 6 and p.state.restarts > 0
    assert lag.index_reads() > 0


async def test_another_writers_appends_are_found_from_the_changes_it_reports(stores):
    j, rm = stores
    other = SqliteJournal(j.path, shards=16, synchronous="off")
    await other.start()
    lag = LaggingJournal(j)
    p = Projector(lag, rm, 0, 16, ProjectorSettings(poll_interval=0.02, backstop_period=3600))
    p.start()
    await p.wait_caught_up(CAUGHT_UP_BOUND)
    reads = lag.index_reads()
    (tid,) = await write_threads(EntityManager(other), 1, messages=1)
    await wait_for_messages(rm, tid, 1)
    await p.stop()
    await other.close()
    assert lag.index_reads() - reads <= 4  # the shards it wrote, not the range
    assert lag.calls["changes"] > 1


async def test_a_writer_that_announces_nothing_is_found_by_the_backstop(stores):
    j, rm = stores
    other = SqliteJournal(j.path, shards=16, synchronous="off")
    await other.start()
    lag = LaggingJournal(j)
    lag.announce = False
    p = Projector(lag, rm, 0, 16, ProjectorSettings(poll_interval=0.02, backstop_period=0.32))
    p.start()
    await p.wait_caught_up(CAUGHT_UP_BOUND)
    (tid,) = await write_threads(EntityManager(other), 1, messages=1)
    await wait_for_messages(rm, tid, 1)
    await p.stop()
    await other.close()
