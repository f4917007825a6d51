"""Members applying shard maps, in one process over real SQLite stores: routing, handoff (wait,
503, drain, acknowledge), RMUs per served range and restart requests. Peers are the other
Member objects called directly (the HTTP forwarding is covered by the integration suite)."""

import asyncio

import pytest

from tests.support.waiting import eventually, signalled
from threadweaver.adapters.journal.sqlite import SqliteJournal
from threadweaver.adapters.readmodel import ReadModelSettings, SqlReadModel
from threadweaver.application.entities import EntityManager
from threadweaver.application.gateway import ForwardRefused, ShardUnavailable
from threadweaver.application.projector import ProjectorSettings
from threadweaver.application.sharding import Member, ShardingSettings
from threadweaver.domain import (
    AddMessages,
    CreateThread,
    NewMessage,
    new_ulid,
    thread_persistence_id,
)
from threadweaver.shards import ShardMap, shard_of

SHARDS = 16
ADMIN = new_ulid()


class DirectPeers:
    """Delivers a forwarded command to the Member registered under that address."""

    def __init__(self):
        self.members = {}

    async def forward(self, address, command):
        try:
            return await self.members[address].execute(command, forwarded=True)
        except ShardUnavailable as exc:  # as the internal endpoint reports a refusal
            raise ForwardRefused(str(exc)) from exc


@pytest.fixture
async def cluster(tmp_path):
    journal = SqliteJournal(tmp_path / "j.db", shards=SHARDS, synchronous="off")
    rm = SqlReadModel(ReadModelSettings.sqlite(tmp_path / "rm.db"))
    await journal.start()
    await rm.migrate()
    peers = DirectPeers()
    acks = {}
    members = {}

    def make(name):
        async def sink(status):
            acks[name] = status.acked_epoch

        m = Member(
            ShardingSettings(member=name, handoff_wait=0.3, address_template="{member}"),
            EntityManager(journal),
            journal,
            rm,
            ProjectorSettings(poll_interval=0.05),
            status_sink=sink,
            peers=peers,
        )
        peers.members[name] = members[name] = m
        return m

    yield make, members, acks, journal, rm
    for m in members.values():
        await m.stop()
    await journal.close()
    await rm.close()


def thread_in(shards, member_map, member):
    """A thread id whose shard `member` serves in `member_map`."""
    while True:
        tid = new_ulid()
        if shard_of(thread_persistence_id(tid), shards) in member_map.serving_ranges(member):
            return tid


def create(tid):
    return CreateThread(tid, ADMIN, "t", (ADMIN,), (), None, None, 1)


async def test_commands_run_on_the_owner_wherever_they_arrive(cluster):
    make, _members, acks, _journal, _ = cluster
    a, b = make("a"), make("b")
    smap = ShardMap.initial(SHARDS, ["a", "b"])
    await a.apply_map(smap)
    await b.apply_map(smap)
    tid = thread_in(SHARDS, smap, "b")
    await a.execute(create(tid))  # arrives at a, runs on b
    assert a.forwarded == 1 and len(b.entities) == 1 and len(a.entities) == 0
    assert acks == {"a": smap.epoch, "b": smap.epoch}


async def test_a_forwarded_command_is_not_forwarded_again(cluster):
    make, *_ = cluster
    a = make("a")
    make("b")
    smap = ShardMap.initial(SHARDS, ["a", "b"])
    await a.apply_map(smap)
    tid = thread_in(SHARDS, smap, "b")
    with pytest.raises(ShardUnavailable):
        await a.execute(create(tid), forwarded=True)


async def test_handoff_refuses_moving_shards_until_complete_then_the_new_owner_serves(cluster):
    make, _members, acks, journal, _rm = cluster
    a, b = make("a"), make("b")
    one = ShardMap.initial(SHARDS, ["a"])
    await a.apply_map(one)
    await b.apply_map(one)
    tids = [new_ulid() for _ in range(40)]
    for t in tids:
        await a.execute(create(t))

    two = one.rebalance(["a", "b"])  # half the shards move a -> b
    assert two.in_handoff
    await a.apply_map(two)
    await b.apply_map(two)
    assert acks["a"] == two.epoch and two.pending_acks(acks) == frozenset()
    moving = next(t for t in tids if two.moving(shard_of(thread_persistence_id(t), SHARDS)))
    with pytest.raises(ShardUnavailable):  # nobody serves a moving shard
        await b.execute(AddMessages(moving, ADMIN, (NewMessage(new_ulid(), "x"),), 2))
    assert not any(shard_of(pid, SHARDS) in two.losing("a") for pid in a.entities._entities)

    done = two.complete_handoff()
    waiter = asyncio.create_task(
        a.execute(AddMessages(moving, ADMIN, (NewMessage(new_ulid(), "y"),), 3))
    )
    # the command waits for the next map instead of failing
    await eventually(lambda: a.waiting_for_map == 1, what="the command to wait for the next map")
    await a.apply_map(done)
    await b.apply_map(done)
    events = await waiter  # forwarded to b, which recovered the thread
    assert events and b.forwarded == 0 and a.forwarded >= 1
    stored = await journal.read(thread_persistence_id(moving))
    assert [e.seq for e in stored] == [1, 2]  # nothing lost, nothing doubled


async def test_in_flight_commands_finish_before_the_member_acknowledges(cluster):
    make, _members, acks, journal, _ = cluster
    a = make("a")
    make("b")
    one = ShardMap.initial(SHARDS, ["a"])
    await a.apply_map(one)
    two = one.rebalance(["a", "b"])
    tid = next(
        t
        for t in (new_ulid() for _ in range(1000))
        if two.moving(shard_of(thread_persistence_id(t), SHARDS))
    )
    await a.execute(create(tid))
    gate, appending = asyncio.Event(), asyncio.Event()
    real_append = journal.append_nowait
    releases = []  # the tasks that release the held appends (referenced until done)

    def slow_append(*args, **kw):  # the append is held until the gate opens
        appending.set()
        held = asyncio.get_running_loop().create_future()

        async def later():
            await gate.wait()
            try:
                held.set_result(await real_append(*args, **kw))
            except Exception as exc:
                held.set_exception(exc)

        releases.append(asyncio.ensure_future(later()))
        return held

    journal.append_nowait = slow_append
    inflight = asyncio.create_task(
        a.execute(AddMessages(tid, ADMIN, (NewMessage(new_ulid(), "z"),), 2))
    )
    await signalled(appending.wait(), "the in-flight command's append")
    handoff = asyncio.create_task(a.apply_map(two))
    # the handoff has taken the new map: it now waits for the held command
    await eventually(lambda: a.map is two, what="the handoff to take the new map")
    assert not handoff.done() and acks.get("a") == one.epoch  # still draining
    gate.set()
    await inflight
    await handoff
    journal.append_nowait = real_append
    assert acks["a"] == two.epoch


async def test_one_rmu_per_served_range_and_restart_requests(cluster):
    make, _members, _acks, _journal, rm = cluster
    a, b = make("a"), make("b")
    smap = ShardMap.initial(SHARDS, ["a", "b"])
    await a.apply_map(smap)
    await b.apply_map(smap)
    assert set(a.projectors) == set(smap.serving_ranges("a"))
    for _ in range(20):
        await a.execute(create(new_ulid()))
    for m in (a, b):
        for p in m.projectors.values():
            await p.wait_caught_up(5)
    assert (await rm.counts())["threads"] == 20
    rng = next(iter(smap.serving_ranges("b")))
    restarted = smap.request_restart("b", rng)
    await b.apply_map(restarted)
    assert b.projectors[rng].state.restarts == 1  # the first request of a range restarts it
    again = restarted.request_restart("b", rng)
    await b.apply_map(again)
    assert b.projectors[rng].state.restarts == 2
    status = b.status()
    assert status.acked_epoch == again.epoch and all(r.running or True for r in status.rmus)
    # a member that starts on a map holding requests only records them: they are older than it
    await b.stop()
    late = make("b")  # b restarted
    await late.apply_map(again)
    assert late.projectors[rng].state.restarts == 0


async def test_a_member_that_cannot_renew_its_lease_stops_serving(cluster):
    make, *_ = cluster
    a = make("a")
    held = {"value": True}
    a.holds_lease = lambda: held["value"]
    await a.apply_map(ShardMap.initial(SHARDS, ["a"]))
    await a.execute(create(new_ulid()))
    held["value"] = False
    with pytest.raises(ShardUnavailable, match="lease"):
        await a.execute(create(new_ulid()))
    held["value"] = True
    await a.execute(create(new_ulid()))


async def test_a_refused_forward_is_routed_again_when_the_senders_map_changed_meanwhile(cluster):
    """The owner refuses (its handoff completed: the shard is now the sender's) while the
    sender still had the old map: once the sender's map names it the owner, it runs the
    command itself instead of answering 503."""
    make, members, _acks, _journal, _ = cluster
    a, b = make("a"), make("b")
    old = ShardMap.initial(SHARDS, ["a", "b"])
    await a.apply_map(old)
    await b.apply_map(old)
    new = old.rebalance(["a"]).complete_handoff()
    await b.apply_map(new)  # b gave its shards to a; a has not seen it yet
    tid = thread_in(SHARDS, old, "b")
    real_forward = members["a"].peers.forward

    async def forward_while_the_map_arrives(address, command):
        try:
            return await real_forward(address, command)
        finally:
            await a.apply_map(new)  # the new map reaches a during the forward

    a.peers = type("Peers", (), {"forward": staticmethod(forward_while_the_map_arrives)})()
    events = await a.execute(create(tid))
    assert events and a.forwarded == 1 and len(a.entities) == 1 and len(b.entities) == 0


async def test_a_refused_forward_is_503_when_the_senders_map_did_not_change(cluster):
    make, _members, _acks, _journal, _ = cluster
    a, b = make("a"), make("b")
    old = ShardMap.initial(SHARDS, ["a", "b"])
    await a.apply_map(old)
    await b.apply_map(old.rebalance(["a"]).complete_handoff())
    tid = thread_in(SHARDS, old, "b")
    with pytest.raises(ShardUnavailable):
        await a.execute(create(tid))
    assert len(a.entities) == 0 and len(b.entities) == 0
