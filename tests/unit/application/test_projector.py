"""The RMU against the real SQLite journal and read model: exactly once, resume from offsets,
push wake-ups, and the pure batch planner."""

import asyncio
import time

import pytest

from threadweaver.adapters.journal.sqlite import SqliteJournal
from threadweaver.adapters.readmodel import ReadModelSettings, SqlReadModel
from threadweaver.application.entities import EntityManager
from threadweaver.application.projection import plan_batch
from threadweaver.application.projector import Projector, ProjectorSettings
from threadweaver.application.row_operations import ProjectedEvent
from threadweaver.domain import AddMessages, CreateThread, NewMessage, new_ulid

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
    await p.wait_caught_up(5)
    await p.stop()
    assert await rm.counts() == {"threads": 20, "administrators": 20, "members": 0, "messages": 60}
    assert p.state.applied == 80

    await write_threads(mgr, 5)
    again = Projector(
        j, rm, 0, 16, ProjectorSettings(batch_size=7, poll_interval=0.05, sweep_chunk=chunk)
    )
    again.start()
    await asyncio.sleep(0.2)
    await again.wait_caught_up(5)
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
        await p.wait_caught_up(5)
        await p.stop()
    assert low.state.applied + high.state.applied == 30
    assert low.state.applied > 0 and high.state.applied > 0
    assert (await rm.counts())["threads"] == 30


async def test_an_append_wakes_the_projector_before_its_poll(stores):
    j, rm = stores
    p = Projector(j, rm, 0, 16, ProjectorSettings(poll_interval=30))
    p.start()
    await p.wait_caught_up(5)
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
    await p.wait_caught_up(5)
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
