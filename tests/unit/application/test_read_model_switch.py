"""A member following the read-model directive's stages (application/read_model_switch.py), over
SQLite stores: where its queries, RMUs and shadow RMUs are at each stage, what it reports, a
cancelled handover, the instant of the switch. (Under load on MariaDB:
tests/integration/test_read_model_switch_mariadb.py.)"""

from __future__ import annotations

import pytest

from tests.support.waiting import eventually
from threadweaver.adapters.journal.sqlite import SqliteJournal
from threadweaver.adapters.readmodel import ReadModelSettings, SqlReadModel
from threadweaver.application.entities import EntityManager
from threadweaver.application.projector import ProjectorSettings
from threadweaver.application.read_model_switch import SwitchableReadModel
from threadweaver.application.sharding import Member, ShardingSettings
from threadweaver.domain import AddMessages, CreateThread, NewMessage, new_ulid
from threadweaver.shards import ReadModelDirective, ShardMap

SHARDS = 4
ADMIN = new_ulid()


@pytest.fixture
async def member(tmp_path):
    journal = SqliteJournal(tmp_path / "j.db", shards=SHARDS, synchronous="off")
    await journal.start()
    opened = []

    async def open_database(name):
        rm = SqlReadModel(ReadModelSettings.sqlite(tmp_path / f"{name}.db"))
        await rm.migrate()
        opened.append(rm)
        return rm

    proxy = SwitchableReadModel(await open_database("a"), "a")
    m = Member(
        ShardingSettings(member="m"),
        EntityManager(journal),
        journal,
        proxy,
        ProjectorSettings(poll_interval=0.05),
        open_read_model=open_database,
    )
    await m.apply_map(ShardMap.initial(SHARDS, ["m"]))
    yield m, proxy, open_database
    await m.stop()
    for rm in opened:
        await rm.close()
    await journal.close()


async def messages(read_model, tid):
    return len(await read_model.list_messages(tid, ADMIN, 0, 100) or [])


async def test_the_stages_move_shadows_rmus_and_queries(member):
    m, proxy, open_database = member
    tid = new_ulid()
    await m.execute(CreateThread(tid, ADMIN, "t", (ADMIN,), (), None, None, 1))
    await m.execute(AddMessages(tid, ADMIN, (NewMessage(new_ulid(), "one"),), 2))
    await eventually(lambda: messages(proxy, tid), what="the message in a")
    assert m.status().read_model.queries == "a" and m.status().read_model.target is None

    await m.apply_read_model(ReadModelDirective("a", "b", "catch-up"))
    assert set(m.read_models.shadows) == set(m.projectors)
    await eventually(
        lambda: m.status().read_model.caught_up == SHARDS, what="the shadows caught up"
    )
    report = m.status().read_model
    assert (report.target, report.stage, report.shards) == ("b", "catch-up", SHARDS)
    assert (proxy.queries_database, proxy.rmus_database) == ("a", "a")

    await m.apply_read_model(ReadModelDirective("a", "b", "handover"))
    assert not m.read_models.shadows
    assert (proxy.queries_database, proxy.rmus_database) == ("a", "b")
    assert m.read_models.floors  # what a had reached
    await m.execute(AddMessages(tid, ADMIN, (NewMessage(new_ulid(), "two"),), 3))
    b = await open_database("b")

    async def both_in_b():
        return await messages(b, tid) == 2

    await eventually(both_in_b, what="both messages in b")

    async def handed_over():
        await m.read_models.measure(m.serving, m.projectors)
        return m.status().read_model.handed_over

    await eventually(handed_over, what="the member handed over")
    assert await messages(proxy, tid) == 1  # queries still on a, which no longer moves

    await m.apply_read_model(ReadModelDirective("b", previous="a", switch_at=0))
    assert proxy.queries_database == "b" and await messages(proxy, tid) == 2
    assert m.status().read_model.target is None


async def test_cancelling_a_handover_brings_the_rmus_back_to_the_served_database(member):
    m, proxy, _ = member
    await m.apply_read_model(ReadModelDirective("a", "b", "handover"))
    assert proxy.rmus_database == "b"
    await m.apply_read_model(ReadModelDirective("a"))
    assert (proxy.queries_database, proxy.rmus_database) == ("a", "a")
    assert all(p.read_model is proxy for p in m.projectors.values())
    tid = new_ulid()
    await m.execute(CreateThread(tid, ADMIN, "t", (ADMIN,), (), None, None, 1))
    await eventually(lambda: proxy.get_thread(tid, ADMIN), what="the thread in a")


async def test_queries_move_at_the_directives_instant(member):
    m, proxy, _ = member
    now = [1000.0]
    m.read_models.clock = lambda: now[0]
    await m.apply_read_model(ReadModelDirective("b", previous="a", switch_at=1000.05))
    assert proxy.queries_database == "a"  # not yet: 0.05 s ahead
    await eventually(lambda: proxy.queries_database == "b", what="the queries on b")


async def test_a_member_without_an_opener_ignores_directives(tmp_path):
    journal = SqliteJournal(tmp_path / "j.db", shards=SHARDS, synchronous="off")
    await journal.start()
    rm = SqlReadModel(ReadModelSettings.sqlite(tmp_path / "a.db"))
    await rm.migrate()
    m = Member(
        ShardingSettings(member="m"), EntityManager(journal), journal, rm, ProjectorSettings()
    )
    await m.apply_read_model(ReadModelDirective("b"))
    assert m.read_models is None and m.status().read_model is None
    await rm.close()
    await journal.close()


async def test_a_range_taken_over_in_the_handover_waits_for_the_old_checkpoints(member):
    m, _, _ = member
    await m.apply_read_model(ReadModelDirective("a", "b", "handover"))
    switch = m.read_models
    real = switch.database

    async def unreachable(name):
        raise ConnectionError(f"{name} is down")

    switch.database = unreachable
    await switch.ranges_started(list(m.projectors))  # as after a takeover
    with pytest.raises(ConnectionError):
        await switch.measure(m.serving, m.projectors)
    assert not m.status().read_model.handed_over  # its floors are unknown
    switch.database = real

    async def handed_over():
        await switch.measure(m.serving, m.projectors)
        return m.status().read_model.handed_over

    await eventually(handed_over, what="handed over once the floors are read")
