"""EntityManager against the real SQLite journal (a temp file): ordering, replay, snapshots,
conflicts and passivation (routing and the shard guard are the Member's: test_sharding.py)."""

import asyncio

import pytest

from tests.support.waiting import eventually
from threadweaver.application.entities import EntityManager, EntitySettings
from threadweaver.domain import (
    AddMessages,
    CreateThread,
    DomainError,
    ErrorKind,
    JoinMemberIds,
    NewMessage,
    new_ulid,
    thread_persistence_id,
)

ADMIN = new_ulid()


def create(tid=None, admin=ADMIN):
    return CreateThread(tid or new_ulid(), admin, "title", (admin,), (), None, None, 1)


def post(tid, text="hi", sender=ADMIN):
    return AddMessages(tid, sender, (NewMessage(new_ulid(), text),), 2)


async def test_commands_to_one_entity_run_one_at_a_time(journal):
    mgr = EntityManager(journal, EntitySettings(snapshot_every=0))
    tid = new_ulid()
    await mgr.execute(create(tid))
    await asyncio.gather(*(mgr.execute(post(tid, f"m{i}")) for i in range(200)))
    stored = await journal.read(thread_persistence_id(tid))
    assert [e.seq for e in stored] == list(range(1, 202))
    assert mgr.stats.conflicts == 0
    texts = [e.payload["messages"][0]["text"] for e in stored[1:]]
    assert sorted(texts) == sorted(f"m{i}" for i in range(200))


async def test_state_is_rebuilt_by_replay_in_a_new_process(journal):
    tid = new_ulid()
    first = EntityManager(journal, EntitySettings(snapshot_every=0))
    await first.execute(create(tid))
    member = new_ulid()
    await first.execute(JoinMemberIds(tid, ADMIN, (member,), 2))
    await first.execute(post(tid, "from member", sender=member))

    second = EntityManager(journal, EntitySettings(snapshot_every=0))
    # the member may post only if the join was replayed
    events = await second.execute(post(tid, "again", sender=member))
    assert events and second.stats.loads == 1 and second.stats.events_replayed == 3


async def test_snapshots_bound_replay(journal):
    tid = new_ulid()
    mgr = EntityManager(journal, EntitySettings(snapshot_every=10))
    await mgr.execute(create(tid))
    for i in range(25):
        await mgr.execute(post(tid, str(i)))
    await mgr.close()  # waits for the snapshots saved in the background
    snap = await journal.load_snapshot(thread_persistence_id(tid))
    assert snap is not None and snap.seq == 20
    fresh = EntityManager(journal, EntitySettings(snapshot_every=10))
    await fresh.execute(post(tid, "after"))
    assert fresh.stats.events_replayed == 6  # 21..26, not 1..26
    assert len(await journal.read(thread_persistence_id(tid))) == 27


async def test_a_stale_writer_reloads_and_decides_again(journal):
    tid = new_ulid()
    a = EntityManager(journal, EntitySettings(snapshot_every=0))
    b = EntityManager(journal, EntitySettings(snapshot_every=0))
    await a.execute(create(tid))
    await b.execute(post(tid, "b1"))  # b loads seq 1, writes seq 2
    await a.execute(post(tid, "a1"))  # a believes seq 1: conflict, reload, write seq 3
    assert a.stats.conflicts == 1
    stored = await journal.read(thread_persistence_id(tid))
    assert [e.seq for e in stored] == [1, 2, 3]


async def test_create_of_an_existing_id_is_refused_after_reload(journal):
    tid = new_ulid()
    await EntityManager(journal).execute(create(tid))
    other = EntityManager(journal)
    with pytest.raises(DomainError) as err:
        await other.execute(create(tid))
    assert err.value.kind is ErrorKind.CONFLICT
    assert len(await journal.read(thread_persistence_id(tid))) == 1


async def test_refused_commands_write_nothing(journal):
    tid = new_ulid()
    mgr = EntityManager(journal)
    await mgr.execute(create(tid))
    with pytest.raises(DomainError):
        await mgr.execute(post(tid, sender=new_ulid()))
    assert mgr.stats.rejected == 1
    assert await journal.highest_seq(thread_persistence_id(tid)) == 1


async def test_idle_entities_are_passivated_and_memory_is_capped(journal):
    mgr = EntityManager(journal, EntitySettings(passivate_after=60, max_entities=50))
    for _ in range(120):
        await mgr.execute(create())
    assert len(mgr) <= 50
    import time

    assert mgr.passivate_idle(now=time.monotonic() + 61) == len(mgr) or len(mgr) == 0
    assert len(mgr) == 0


async def test_stop_entities_waits_for_in_flight_commands(journal):
    mgr = EntityManager(journal)
    tids = [new_ulid() for _ in range(5)]
    for t in tids:
        await mgr.execute(create(t))
    stopped = await mgr.stop_entities(lambda pid: pid == thread_persistence_id(tids[0]))
    assert stopped == 1 and len(mgr) == 4


async def test_a_command_cancelled_during_its_append_still_writes_it_and_the_entity_reloads(
    journal,
):
    mgr = EntityManager(journal, EntitySettings(snapshot_every=0))
    tid = new_ulid()
    await mgr.execute(create(tid))
    task = asyncio.create_task(mgr.execute(post(tid, "cancelled while appending")))
    # queued for the next group commit, not written yet (the writer takes it a turn later)
    await eventually(lambda: journal._pending, what="the append to be queued", interval=0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    events = await mgr.execute(post(tid, "next"))  # reloads: learns the cancelled append
    assert events
    stored = await journal.read(thread_persistence_id(tid))
    assert [e.seq for e in stored] == [1, 2, 3]
    assert [e.payload["messages"][0]["text"] for e in stored[1:]] == [
        "cancelled while appending",
        "next",
    ]
    assert mgr.stats.conflicts == 0 and mgr.stats.loads == 1


def test_snapshots_of_a_big_thread_are_spaced_by_a_tenth_of_its_size():
    rule = EntitySettings(snapshot_every=10)
    assert rule.snapshot_due(10, 50) and not rule.snapshot_due(9, 50)
    assert not rule.snapshot_due(10, 200) and rule.snapshot_due(20, 200)
    assert not EntitySettings(snapshot_every=0).snapshot_due(10_000, 1)
