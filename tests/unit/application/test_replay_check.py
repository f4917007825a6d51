"""The replay check (application/replay_check.py) on the real SQLite journal: which entities a
sample takes, snapshots compared with the fold of their events, counted when of another
version, and the first unreadable thing named."""

from __future__ import annotations

import pytest

from tests.support.evolved_schema import evolved_mapper
from threadweaver.application.entities import EntityManager, EntitySettings
from threadweaver.application.event_schema import SNAPSHOT_VERSION
from threadweaver.application.ports import NewEvent, Snapshot
from threadweaver.application.replay_check import ReplayScope, replay_check, shard_order
from threadweaver.domain import (
    AddMessages,
    CreateThread,
    NewMessage,
    new_ulid,
    thread_persistence_id,
)
from threadweaver.shards.hashing import shard_of

ADMIN = new_ulid()


async def threads(journal, count: int, posts: int = 3, snapshot_every: int = 0) -> list[str]:
    mgr = EntityManager(journal, EntitySettings(snapshot_every=snapshot_every))
    tids = [new_ulid() for _ in range(count)]
    for tid in tids:
        await mgr.execute(CreateThread(tid, ADMIN, "t", (ADMIN,), (), None, None, 1))
        for i in range(posts):
            await mgr.execute(AddMessages(tid, ADMIN, (NewMessage(new_ulid(), f"{i}"),), 2))
    await mgr.close()
    return [thread_persistence_id(t) for t in tids]


@pytest.mark.parametrize(("shards", "wanted"), [(64, 8), (64, 1), (64, 100), (7, 3), (1, 5)])
def test_shard_order_visits_every_shard_once_the_spread_stride_first(shards, wanted) -> None:
    order = list(shard_order(shards, wanted))
    assert sorted(order) == list(range(shards))
    step = max(1, shards // wanted)
    assert order[: len(range(0, shards, step))] == list(range(0, shards, step))


async def test_all_checks_every_entity_and_a_sample_n_of_them(journal) -> None:
    await threads(journal, 40)
    everything = await replay_check(journal, ReplayScope(None))
    assert everything.ok and (everything.entities, everything.events) == (40, 160)
    assert everything.scope == "all"

    sample = await replay_check(journal, ReplayScope(8))
    assert sample.ok and sample.entities == 8 and sample.events == 32
    assert sample.scope == "sample of 8"


def tid_in_shard(shard: int) -> str:
    while True:
        tid = new_ulid()
        if shard_of(thread_persistence_id(tid), 64) == shard:
            return tid


async def test_a_sample_takes_the_first_entities_of_the_stride_of_shards(journal) -> None:
    """A sample of 2 over 64 shards visits shards 0 and 32 first (one entity each)."""
    mgr = EntityManager(journal, EntitySettings(snapshot_every=0))
    for shard, posts in ((1, 5), (0, 1), (32, 1), (0, 5), (33, 5)):
        tid = tid_in_shard(shard)
        await mgr.execute(CreateThread(tid, ADMIN, "t", (ADMIN,), (), None, None, 1))
        for i in range(posts):
            await mgr.execute(AddMessages(tid, ADMIN, (NewMessage(new_ulid(), f"{i}"),), 2))
    await mgr.close()
    report = await replay_check(journal, ReplayScope(2))
    # the first thread of shard 0 and the one of shard 32: 2 events each (not shard 1's 6)
    assert (report.entities, report.events) == (2, 4)
    report = await replay_check(journal, ReplayScope(3))  # then shard 1 (step 21: 0, 21, 42, 1)
    assert (report.entities, report.events) == (3, 10)


async def test_a_sample_larger_than_the_journal_checks_what_there_is(journal) -> None:
    await threads(journal, 3)
    report = await replay_check(journal, ReplayScope(100))
    assert report.ok and report.entities == 3


async def test_snapshots_are_compared_with_the_fold_of_their_events(journal) -> None:
    (pid,) = await threads(journal, 1, posts=12, snapshot_every=10)
    report = await replay_check(journal, ReplayScope(None))
    assert report.ok and report.snapshots == 1 and report.snapshots_to_replay == 0

    snapshot = await journal.load_snapshot(pid)
    wrong = dict(snapshot.state, title="not what the events say")
    await journal.save_snapshot(Snapshot(pid, snapshot.seq + 1, wrong))  # replaces it
    report = await replay_check(journal, ReplayScope(None))
    assert not report.ok
    assert (report.failure.pid, report.failure.seq, report.failure.type) == (
        pid,
        snapshot.seq + 1,
        "snapshot",
    )
    assert "differs from this image's replay" in report.failure.error


async def test_a_snapshot_of_another_version_is_counted_not_a_failure(journal) -> None:
    await threads(journal, 2, posts=12, snapshot_every=10)
    report = await replay_check(
        journal, ReplayScope(None), evolved_mapper(snapshot_version=SNAPSHOT_VERSION + 1)
    )
    assert report.ok and report.snapshots == 0 and report.snapshots_to_replay == 2
    assert report.to_json()["snapshotsToReplay"] == 2


async def test_the_first_unreadable_event_ends_the_check(journal) -> None:
    pids = await threads(journal, 3)
    await journal.append(pids[1], 4, [NewEvent("MessagesAdded", {"schema": 3})])
    report = await replay_check(journal, ReplayScope(None))
    assert not report.ok
    assert report.failure.to_json() == {
        "pid": pids[1],
        "seq": 5,
        "type": "MessagesAdded",
        "error": "SchemaError: MessagesAdded v3 is newer than this image's v1 "
        "(written by a newer version)",
    }
    assert report.to_json()["ok"] is False and report.to_json()["failure"]["seq"] == 5
    assert "seq 5 (MessagesAdded)" in report.failure.describe()
