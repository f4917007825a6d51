"""The runtime's metrics as /metrics shows them, from real entities, journal, read model and
members in one process: every family comes from the catalogue, and each counts what it says."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from threadweaver.adapters.http.metrics import HttpMetrics
from threadweaver.application.gateway import ForwardRefused, ShardUnavailable
from threadweaver.domain import (
    AddMessages,
    CreateThread,
    DomainError,
    NewMessage,
    new_ulid,
    thread_persistence_id,
)
from threadweaver.observability.metrics import RUNTIME_METRICS, spec
from threadweaver.shards import ShardMap, shard_of

SHARDS = 16  # as conftest.py's stores
ADMIN = new_ulid()
#: families that only a DynamoDB journal or a cluster member (a Lease) has
CONDITIONAL = {
    "threadweaver_journal_retries_total",
    "threadweaver_dynamodb_requests_total",
    "threadweaver_dynamodb_request_duration_seconds",
    "threadweaver_member_lease_held",
}
HTTP = {m.name for m in RUNTIME_METRICS if m.name.startswith("threadweaver_http_")}


def create(tid: str) -> CreateThread:
    return CreateThread(tid, ADMIN, "t", (ADMIN,), (), None, None, 1)


def add(tid: str, account: str = ADMIN) -> AddMessages:
    return AddMessages(tid, account, (NewMessage(new_ulid(), "hi"),), 2)


def emitted(registry: CollectorRegistry) -> dict[str, str]:
    """family name as queried (counters with _total) -> type, of the families with samples."""
    out = {}
    for metric in registry.collect():
        if not metric.samples:
            continue
        name = metric.name + ("_total" if metric.type == "counter" else "")
        out[name] = metric.type
    return out


async def test_every_family_is_from_the_catalogue_and_every_entry_is_exposed(make_runtime):
    rt = make_runtime()
    await rt.member.apply_map(ShardMap.initial(SHARDS, ["local"]))
    await rt.member.execute(create(new_ulid()))
    await rt.read_model.list_threads(ADMIN, 0, 10)
    families = emitted(rt.registry)
    for name, type_ in families.items():
        assert spec(name).type == type_, name
    catalogue = {m.name for m in RUNTIME_METRICS}
    assert catalogue - set(families) == HTTP | CONDITIONAL
    text = generate_latest(rt.registry).decode()
    assert 'threadweaver_build_info{version="' in text


def test_the_http_families_match_their_catalogue_entries():
    registry = CollectorRegistry()
    HttpMetrics.of(registry)
    for metric in registry.collect():
        name = metric.name + ("_total" if metric.type == "counter" else "")
        entry = spec(name)
        assert (entry.type, entry.help) == (metric.type, metric.documentation), name


async def test_commands_are_counted_by_type_and_outcome_with_their_latency(make_runtime):
    rt = make_runtime()
    await rt.member.apply_map(ShardMap.initial(SHARDS, ["local"]))
    tid = new_ulid()
    await rt.member.execute(create(tid))
    await rt.member.execute(add(tid))
    with pytest.raises(DomainError):
        await rt.member.execute(add(tid, account=new_ulid()))  # not a member of the thread
    v = rt.value
    assert v("threadweaver_commands_total", type="CreateThread", outcome="ok") == 1
    assert v("threadweaver_commands_total", type="AddMessages", outcome="ok") == 1
    assert v("threadweaver_commands_total", type="AddMessages", outcome="rejected") == 1
    assert v("threadweaver_commands_total", type="AddMessages", outcome="timeout") == 0
    assert v("threadweaver_command_duration_seconds_count", type="AddMessages") == 2
    assert v("threadweaver_journal_appends_total", outcome="ok") == 2
    assert v("threadweaver_journal_appended_events_total") == 2
    assert v("threadweaver_journal_append_duration_seconds_count") == 2
    commits = rt.journal.commits
    assert v("threadweaver_journal_group_commit_appends_count") == commits
    assert v("threadweaver_journal_group_commit_appends_bucket", le="1.0") == commits
    assert v("threadweaver_entities_active") == 1


async def test_a_timed_out_command_counts_as_timeout(make_runtime):
    rt = make_runtime()
    await rt.member.apply_map(ShardMap.initial(SHARDS, ["local"]))
    tid = new_ulid()
    await rt.member.execute(create(tid))
    task = asyncio.create_task(rt.member.execute(add(tid)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rt.value("threadweaver_commands_total", type="AddMessages", outcome="timeout") == 1


async def test_entity_loads_are_counted_with_their_time(make_runtime):
    rt = make_runtime()
    await rt.member.apply_map(ShardMap.initial(SHARDS, ["local"]))
    tid = new_ulid()
    await rt.member.execute(create(tid))
    assert rt.entities.passivate_idle(now=10**9) == 1
    await rt.member.execute(add(tid))
    v = rt.value
    assert v("threadweaver_entity_passivations_total") == 1
    assert v("threadweaver_entity_loads_total") == 1
    assert v("threadweaver_entity_load_duration_seconds_count") == 1
    assert v("threadweaver_entity_load_duration_seconds_sum") > 0
    assert v("threadweaver_entity_events_replayed_total") == 1


class Peers:
    """Runs a forwarded command on the registered member, or refuses it."""

    def __init__(self) -> None:
        self.members: dict = {}
        self.refuse = False

    async def forward(self, address, command):
        if self.refuse:
            raise ForwardRefused("not served here")
        try:
            return await self.members[address].execute(command, forwarded=True)
        except ShardUnavailable as exc:
            raise ForwardRefused(str(exc)) from exc


def thread_of(smap: ShardMap, member: str) -> str:
    while True:
        tid = new_ulid()
        if shard_of(thread_persistence_id(tid), SHARDS) in smap.serving_ranges(member):
            return tid


async def test_forwarded_commands_are_counted_on_both_sides(make_runtime):
    peers = Peers()
    a, b = make_runtime("a", peers), make_runtime("b", peers)
    peers.members = {"a": a.member, "b": b.member}
    smap = ShardMap.initial(SHARDS, ["a", "b"])
    await a.member.apply_map(smap)
    await b.member.apply_map(smap)
    tid = thread_of(smap, "b")
    await a.member.execute(create(tid))
    with pytest.raises(DomainError):
        await a.member.execute(add(tid, account=new_ulid()))
    peers.refuse = True
    with pytest.raises(ForwardRefused):
        await a.member.execute(add(tid))
    assert a.value("threadweaver_forwarded_commands_total", outcome="ok") == 1
    assert a.value("threadweaver_forwarded_commands_total", outcome="rejected") == 1
    assert a.value("threadweaver_forwarded_commands_total", outcome="refused") == 1
    assert a.value("threadweaver_forward_duration_seconds_count") == 3
    assert a.value("threadweaver_commands_total", type="AddMessages", outcome="unavailable") == 1
    assert b.value("threadweaver_forwarded_commands_received_total", outcome="ok") == 1
    assert b.value("threadweaver_forwarded_commands_received_total", outcome="rejected") == 1
    assert b.value("threadweaver_commands_total", type="CreateThread", outcome="ok") is None


async def test_a_handoff_is_counted_on_both_members_with_its_durations(make_runtime):
    peers = Peers()
    a, b = make_runtime("a", peers), make_runtime("b", peers)
    peers.members = {"a": a.member, "b": b.member}
    one = ShardMap.initial(SHARDS, ["a"])
    await a.member.apply_map(one)
    await b.member.apply_map(one)
    two = one.rebalance(["a", "b"])
    await a.member.apply_map(two)
    await b.member.apply_map(two)
    assert a.value("threadweaver_shard_map_in_handoff") == 1
    done = two.complete_handoff()
    await a.member.apply_map(done)
    await b.member.apply_map(done)
    assert a.value("threadweaver_handoffs_total", role="losing") == 1
    assert a.value("threadweaver_handoffs_total", role="gaining") == 0
    assert a.value("threadweaver_handoff_drain_duration_seconds_count") == 1
    assert b.value("threadweaver_handoffs_total", role="gaining") == 1
    for rt in (a, b):
        assert rt.value("threadweaver_handoff_duration_seconds_count") == 1
        assert rt.value("threadweaver_shard_map_in_handoff") == 0
        assert rt.value("threadweaver_shard_map_epoch") == done.epoch
    assert a.value("threadweaver_shards_served") + b.value("threadweaver_shards_served") == SHARDS


async def test_each_served_range_reports_its_updater_and_lag(make_runtime):
    peers = Peers()
    a = make_runtime("a", peers)
    make_runtime("b", peers)
    smap = ShardMap.initial(SHARDS, ["a", "b"])
    await a.member.apply_map(smap)
    for _ in range(10):
        await a.member.execute(create(thread_of(smap, "a")))
    for projector in a.member.projectors.values():
        await projector.wait_caught_up(5)
    (rng,) = smap.serving_ranges("a")
    label = str(rng)
    assert a.value("threadweaver_rmu_running", range=label) == 1
    assert a.value("threadweaver_rmu_events_applied_total", range=label) == 10
    assert a.value("threadweaver_rmu_restarts_total", range=label) == 0
    assert a.value("threadweaver_projection_lag_events", range=label) == 0
    assert a.value("threadweaver_projection_lag_seconds", range=label) == 0
    assert a.value("threadweaver_readmodel_apply_duration_seconds_count") >= 1


async def test_a_stalled_read_model_makes_the_lag_grow(make_runtime):
    rt = make_runtime()
    gate = asyncio.Event()
    apply = rt.read_model.apply

    async def stalled_apply(*args, **kwargs):
        await gate.wait()
        return await apply(*args, **kwargs)

    rt.read_model.apply = stalled_apply
    smap = ShardMap.initial(SHARDS, ["local"])
    await rt.member.apply_map(smap)
    for _ in range(3):
        await rt.member.execute(create(new_ulid()))
    (rng,) = smap.serving_ranges("local")
    projector = rt.member.projectors[rng]
    seconds, events = rt.collector.lag.lag(rng, projector.state.applied_offset, time.time() + 60)
    assert events == 3 and seconds >= 60
    assert rt.value("threadweaver_projection_lag_events", range=str(rng)) == 3
    gate.set()
    await projector.wait_caught_up(5)
    assert rt.value("threadweaver_projection_lag_events", range=str(rng)) == 0
    assert rt.value("threadweaver_projection_lag_seconds", range=str(rng)) == 0


async def test_the_member_status_reports_the_lag_the_metrics_show(make_runtime):
    """The Lease's `rmus` annotation carries the lag of /metrics: it grows while the read model
    is stalled (the updater's own figure stands still then) and is 0 once caught up."""
    rt = make_runtime()
    gate = asyncio.Event()
    apply = rt.read_model.apply

    async def stalled_apply(*args, **kwargs):
        await gate.wait()
        return await apply(*args, **kwargs)

    rt.read_model.apply = stalled_apply
    smap = ShardMap.initial(SHARDS, ["local"])
    await rt.member.apply_map(smap)
    for _ in range(4):
        await rt.member.execute(create(new_ulid()))
    (rng,) = smap.serving_ranges("local")
    projector = rt.member.projectors[rng]
    projector.state.lag_seconds = 0.0  # what the updater last measured: nothing applied yet
    await asyncio.sleep(0.01)  # the appends are at least this old
    (rmu,) = rt.member.status().rmus
    assert rmu.lag_events == 4 == rt.value("threadweaver_projection_lag_events", range=str(rng))
    assert rmu.lag_seconds >= 0.01
    gate.set()
    await projector.wait_caught_up(5)
    (rmu,) = rt.member.status().rmus
    assert (rmu.lag_events, rmu.lag_seconds) == (0, 0.0)


async def test_read_model_queries_are_counted_and_timed(make_runtime):
    rt = make_runtime()
    assert await rt.read_model.get_thread(new_ulid(), ADMIN) is None
    await rt.read_model.list_threads(ADMIN, 0, 10)
    v = rt.value
    assert v("threadweaver_readmodel_queries_total", query="get_thread", outcome="ok") == 1
    assert v("threadweaver_readmodel_queries_total", query="get_thread", outcome="error") == 0
    assert v("threadweaver_readmodel_query_duration_seconds_count", query="list_threads") == 1
