"""Idempotent commands against the real SQLite journal: a retried keyed command returns the first
result and appends nothing, across a new EntityManager (replay), snapshots, conflicts with
another writer; the bounds; the CreateThread id derivation; a key reused for another request."""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
import pytest

from tests.support.waiting import eventually
from threadweaver.application import idempotency
from threadweaver.application.codec import command_from_json, command_to_json
from threadweaver.application.entities import EntityManager, EntitySettings
from threadweaver.application.idempotency import (
    KEY_REUSED,
    IdempotencyKeyReused,
    RecentKeys,
    Recorded,
    derive_thread_id,
    is_key_reused,
    request_hash,
)
from threadweaver.application.ports import NewEvent
from threadweaver.domain import (
    AddMessages,
    CreateThread,
    DestroyThread,
    DomainError,
    ErrorKind,
    JoinMemberIds,
    NewMessage,
    RemoveMessages,
    event_from_payload,
    event_to_payload,
    is_ulid,
    new_ulid,
    thread_persistence_id,
)
from threadweaver.domain.events import AddedMessage, MessagesAdded

ADMIN = new_ulid()


def manager(journal, **kw) -> EntityManager:
    kw.setdefault("snapshot_every", 0)
    return EntityManager(journal, EntitySettings(**kw))


def create(key=None, admin=ADMIN, title="title", members=()):
    tid = derive_thread_id(admin, key) if key else new_ulid()
    return CreateThread(
        tid, admin, title, (admin,), tuple(members), None, None, 1, idempotency_key=key
    )


def post(tid, *texts, key=None, sender=ADMIN, at=2):
    """Each call generates fresh message ids, as the HTTP adapter does per request."""
    return AddMessages(
        tid, sender, tuple(NewMessage(new_ulid(), t) for t in texts), at, idempotency_key=key
    )


def message_ids(events):
    return [m.id for e in events if isinstance(e, MessagesAdded) for m in e.messages]


async def stored(journal, tid):
    return await journal.read(thread_persistence_id(tid))


# --- the basic guarantee ---------------------------------------------------------------------
async def test_retry_returns_the_first_events_and_appends_nothing(journal):
    mgr = manager(journal)
    tid = (await mgr.execute(create()))[0].thread_id
    first = await mgr.execute(post(tid, "a", "b", key="k1"))
    retry = await mgr.execute(post(tid, "a", "b", key="k1"))  # new message ids generated
    assert message_ids(retry) == message_ids(first) and len(message_ids(first)) == 2
    assert retry == first
    events = await stored(journal, tid)
    assert [e.type for e in events] == ["ThreadCreated", "MessagesAdded"]
    assert events[1].metadata == {
        "idempotency": {
            "idempotencyKey": "k1",
            "accountId": ADMIN,
            "requestHash": request_hash(post(tid, "a", "b", key="k1")),
        }
    }
    assert "_meta" not in events[1].payload
    assert mgr.stats.idempotent_replays == 1


async def test_the_key_is_on_the_envelope_not_in_the_domain_payload(journal):
    mgr = manager(journal)
    tid = (await mgr.execute(create()))[0].thread_id
    events = await mgr.execute(post(tid, "x", key="k"))
    (ev,) = [e for e in await stored(journal, tid) if e.type == "MessagesAdded"]
    assert ev.metadata["idempotency"]["idempotencyKey"] == "k"
    assert event_to_payload(events[0]) == ev.payload
    assert event_from_payload(ev.type, ev.payload) == events[0]


async def test_unkeyed_commands_are_not_changed(journal):
    mgr = manager(journal)
    tid = (await mgr.execute(create()))[0].thread_id
    a = await mgr.execute(post(tid, "same"))
    b = await mgr.execute(post(tid, "same"))
    assert message_ids(a) != message_ids(b)
    assert all(not e.metadata and "_meta" not in e.payload for e in await stored(journal, tid))


async def test_the_recorded_result_is_returned_even_if_the_state_changed(journal):
    mgr = manager(journal)
    tid = (await mgr.execute(create()))[0].thread_id
    first = await mgr.execute(post(tid, "a", key="add"))
    removed = await mgr.execute(RemoveMessages(tid, ADMIN, tuple(message_ids(first)), 3))
    assert removed
    destroyed = await mgr.execute(DestroyThread(tid, ADMIN, 4, idempotency_key="destroy"))
    # the thread is gone: deciding again would be a 404; the retries answer the first results
    assert await mgr.execute(post(tid, "a", key="add")) == first
    assert await mgr.execute(DestroyThread(tid, ADMIN, 4, idempotency_key="destroy")) == destroyed
    with pytest.raises(DomainError) as err:
        await mgr.execute(DestroyThread(tid, ADMIN, 5, idempotency_key="other"))
    assert err.value.kind is ErrorKind.NOT_FOUND


async def test_keys_are_per_account(journal):
    member = new_ulid()
    mgr = manager(journal)
    tid = (await mgr.execute(create(members=[member])))[0].thread_id
    mine = await mgr.execute(post(tid, "x", key="shared"))
    theirs = await mgr.execute(post(tid, "x", key="shared", sender=member))
    assert message_ids(mine) != message_ids(theirs)
    assert len(await stored(journal, tid)) == 3


async def test_a_command_that_changes_nothing_records_nothing(journal):
    member = new_ulid()
    mgr = manager(journal)
    tid = (await mgr.execute(create(members=[member])))[0].thread_id
    assert await mgr.execute(JoinMemberIds(tid, ADMIN, (member,), 2, idempotency_key="j")) == []
    # the same key with another body is not a "reuse": nothing was recorded for it
    other = new_ulid()
    events = await mgr.execute(JoinMemberIds(tid, ADMIN, (other,), 3, idempotency_key="j"))
    assert events and events[0].member_ids == (other,)


async def test_a_refused_command_records_nothing(journal):
    outsider = new_ulid()
    mgr = manager(journal)
    tid = (await mgr.execute(create()))[0].thread_id
    for _ in range(2):
        with pytest.raises(DomainError):
            await mgr.execute(post(tid, "x", key="k", sender=outsider))
    await mgr.execute(JoinMemberIds(tid, ADMIN, (outsider,), 3))
    assert message_ids(await mgr.execute(post(tid, "x", key="k", sender=outsider)))


# --- a different request under the same key ----------------------------------------------------
async def test_a_key_reused_for_another_request_is_refused(journal):
    mgr = manager(journal)
    tid = (await mgr.execute(create()))[0].thread_id
    await mgr.execute(post(tid, "a", key="k"))
    for other in (
        post(tid, "b", key="k"),
        post(tid, "a", key="k", at=99),
        post(tid, "a", "a", key="k"),
        DestroyThread(tid, ADMIN, 2, idempotency_key="k"),
    ):
        with pytest.raises(IdempotencyKeyReused) as err:
            await mgr.execute(other)
        assert err.value.message == KEY_REUSED and is_key_reused(err.value)
    assert len(await stored(journal, tid)) == 2


def test_request_hash_ignores_generated_ids_and_the_key():
    tid = new_ulid()
    assert request_hash(post(tid, "a", key="k1")) == request_hash(post(tid, "a", key="k2"))
    assert request_hash(post(tid, "a")) != request_hash(post(tid, "b"))
    assert request_hash(post(tid, "a")) != request_hash(post(new_ulid(), "a"))
    c1, c2 = create("k"), create("k")
    assert request_hash(c1) == request_hash(dataclasses.replace(c2, thread_id=new_ulid()))
    assert request_hash(c1) != request_hash(create("k", title="other"))


def test_reuse_survives_the_forwarding_codec():
    from threadweaver.application.codec import error_from_json, error_to_json

    again = error_from_json(orjson.loads(orjson.dumps(error_to_json(IdempotencyKeyReused()))))
    assert is_key_reused(again)
    assert not is_key_reused(DomainError(ErrorKind.CONFLICT, "Already created"))


# --- durability: replay, snapshots, conflicts ----------------------------------------------------
async def test_a_new_entity_manager_finds_the_key_by_replay(journal):
    first_mgr = manager(journal)
    tid = (await first_mgr.execute(create()))[0].thread_id
    first = await first_mgr.execute(post(tid, "a", key="k"))
    await first_mgr.close()

    second = manager(journal)  # a restarted process: state from the journal only
    assert await second.execute(post(tid, "a", key="k")) == first
    assert second.stats.loads == 1 and second.stats.idempotent_replays == 1
    with pytest.raises(IdempotencyKeyReused):
        await second.execute(post(tid, "changed", key="k"))
    assert len(await stored(journal, tid)) == 2


async def test_keys_are_kept_in_snapshots(journal):
    mgr = manager(journal, snapshot_every=5)
    tid = (await mgr.execute(create()))[0].thread_id
    firsts = {}
    for i in range(12):
        firsts[f"k{i}"] = await mgr.execute(post(tid, f"m{i}", key=f"k{i}"))
    await mgr.close()  # waits for the snapshots saved in the background
    snap = await journal.load_snapshot(thread_persistence_id(tid))
    assert snap is not None and snap.seq == 10
    rows = snap.state[idempotency.SNAPSHOT_KEY]
    assert [r[1] for r in rows] == [f"k{i}" for i in range(9)]  # seq 2..10 are k0..k8
    assert snap.state["id"] == tid  # still a Thread snapshot

    fresh = manager(journal, snapshot_every=5)
    for i in range(12):  # k0..k8 from the snapshot, k9..k11 from replay
        assert await fresh.execute(post(tid, f"m{i}", key=f"k{i}")) == firsts[f"k{i}"]
    assert fresh.stats.events_replayed == 3
    assert len(await stored(journal, tid)) == 13


async def test_a_bare_thread_snapshot_without_keys_still_loads(journal):
    """Snapshots written before idempotency (a bare Thread dict) keep loading."""
    mgr = manager(journal, snapshot_every=3)
    tid = (await mgr.execute(create()))[0].thread_id
    for i in range(3):
        await mgr.execute(post(tid, f"m{i}"))
    await mgr.close()  # waits for the snapshot saved in the background
    snap = await journal.load_snapshot(thread_persistence_id(tid))
    assert snap is not None and idempotency.SNAPSHOT_KEY not in snap.state
    fresh = manager(journal, snapshot_every=3)
    first = await fresh.execute(post(tid, "k", key="k"))
    assert await fresh.execute(post(tid, "k", key="k")) == first


async def test_a_key_written_by_another_writer_is_found_after_the_conflict(journal):
    """Handoff: the old owner appended the keyed command; the new owner, with stale state,
    conflicts, reloads and answers the recorded result instead of appending again."""
    a, b = manager(journal), manager(journal)
    tid = (await a.execute(create()))[0].thread_id
    await b.execute(post(tid, "warm-up"))  # b has the entity loaded
    await a.execute(post(tid, "other"))  # ... and now stale
    first = await a.execute(post(tid, "x", key="k"))
    assert await b.execute(post(tid, "x", key="k")) == first
    assert b.stats.conflicts == 1
    assert len(await stored(journal, tid)) == 4


async def test_a_timed_out_append_is_recognised_on_retry(journal):
    """The client gives up while the append is in flight; the append completes anyway; the
    retry (new ids) gets the first ids."""
    mgr = manager(journal)
    tid = (await mgr.execute(create()))[0].thread_id
    first_cmd = post(tid, "slow", key="k")
    task = asyncio.ensure_future(mgr.execute(first_cmd))
    # in flight: queued for the next group commit (the journal's writer takes it a turn later)
    await eventually(lambda: journal._pending, what="the append to be queued", interval=0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def written():  # the append goes on without its cancelled caller
        return await journal.highest_seq(thread_persistence_id(tid)) >= 2

    await eventually(written, what="the cancelled command's append to be written")
    retry = await mgr.execute(post(tid, "slow", key="k"))
    events = await stored(journal, tid)
    assert len(events) == 2
    assert message_ids(retry) == [m["id"] for m in events[1].payload["messages"]]
    assert message_ids(retry) == [m.id for m in first_cmd.messages]


async def test_concurrent_duplicates_apply_once(journal):
    mgr = manager(journal)
    tid = (await mgr.execute(create()))[0].thread_id
    results = await asyncio.gather(*(mgr.execute(post(tid, "x", key="dup")) for _ in range(20)))
    assert all(r == results[0] for r in results)
    assert len(await stored(journal, tid)) == 2


async def test_several_events_of_one_command_are_recorded_together(journal):
    """The domain appends one event per command today; the record is generic over counts."""
    mgr = manager(journal)
    tid = (await mgr.execute(create()))[0].thread_id
    pid = thread_persistence_id(tid)
    events = [
        MessagesAdded(tid, ADMIN, 2, (AddedMessage(new_ulid(), f"m{i}", None, ()),))
        for i in range(2)
    ]
    entity = mgr._entities[pid]
    async with entity.lock:
        await mgr._persist(entity, events, (ADMIN, "multi", "h"))
    rows = await stored(journal, tid)
    assert [r.metadata["idempotency"].get("part") for r in rows[1:]] == [0, 1]
    assert entity.recent.get(ADMIN, "multi").count == 2
    fresh = manager(journal)
    await fresh._load(fresh._entity(pid))
    entry = fresh._entities[pid].recent.get(ADMIN, "multi")
    assert entry is not None and (entry.first_seq, entry.count) == (2, 2)
    recorded = await fresh._recorded(fresh._entities[pid], ADMIN, "multi", "h")
    assert recorded == events


# --- bounds ----------------------------------------------------------------------------------
async def test_only_the_most_recent_keys_are_remembered(journal):
    mgr = manager(journal, idempotency_keys=3)
    tid = (await mgr.execute(create()))[0].thread_id
    firsts = [await mgr.execute(post(tid, "x", key=f"k{i}")) for i in range(5)]
    assert len(mgr._entities[thread_persistence_id(tid)].recent) == 3
    assert await mgr.execute(post(tid, "x", key="k4")) == firsts[4]
    assert await mgr.execute(post(tid, "x", key="k2")) == firsts[2]
    evicted = await mgr.execute(post(tid, "x", key="k0"))  # forgotten: applied again
    assert message_ids(evicted) != message_ids(firsts[0])
    # the bound holds after replay too
    fresh = manager(journal, idempotency_keys=3)
    assert await fresh.execute(post(tid, "x", key="k0")) == evicted
    assert len(fresh._entities[thread_persistence_id(tid)].recent) == 3


async def test_keys_older_than_the_window_are_forgotten(journal):
    mgr = manager(journal, idempotency_window=0.2)
    tid = (await mgr.execute(create()))[0].thread_id
    first = await mgr.execute(post(tid, "x", key="k"))
    assert await mgr.execute(post(tid, "x", key="k")) == first
    await asyncio.sleep(0.3)  # the test is about time passing: past the 0.2 s window
    again = await mgr.execute(post(tid, "x", key="k"))
    assert message_ids(again) != message_ids(first)
    await asyncio.sleep(0.3)  # time passing again: `again`'s key expires too
    fresh = manager(journal, idempotency_window=0.2)  # replay drops expired keys as well
    await fresh.execute(post(tid, "warm"))
    assert not fresh._entities[thread_persistence_id(tid)].recent


async def test_zero_keys_disables_the_feature(journal):
    mgr = manager(journal, idempotency_keys=0)
    tid = (await mgr.execute(create()))[0].thread_id
    a = await mgr.execute(post(tid, "x", key="k"))
    b = await mgr.execute(post(tid, "x", key="k"))
    assert message_ids(a) != message_ids(b)
    assert all(not e.metadata and "_meta" not in e.payload for e in await stored(journal, tid))


def test_recent_keys_structure():
    recent = RecentKeys(max_keys=2, window_seconds=10)
    now = 100_000_000
    recent.record("A", "1", Recorded("h", 2, 1, now), now)
    recent.record("A", "2", Recorded("h", 3, 1, now), now)
    recent.record("B", "1", Recorded("h", 4, 1, now), now)
    assert ("A", "1") not in recent and len(recent) == 2
    assert recent.get("B", "1", now).first_seq == 4
    assert recent.get("B", "1", now + 10_000_001) is None  # expired, and dropped
    assert len(recent) == 1
    restored = RecentKeys(max_keys=2, window_seconds=10)
    restored.load_snapshot(orjson.loads(orjson.dumps(recent.to_snapshot())))
    assert restored.to_snapshot() == recent.to_snapshot()
    restored.load_snapshot("not a list")
    restored.observe(9, now, {"idempotencyKey": "x"})  # damaged: ignored
    restored.observe(9, now, None)  # unkeyed: ignored
    restored.observe(
        9,
        now,
        {"idempotencyKey": "x", "accountId": "A", "requestHash": "h", "part": 1, "parts": 2},
    )
    assert len(restored) == 1


# --- CreateThread ----------------------------------------------------------------------------
def test_derived_thread_ids_are_valid_deterministic_ulids():
    ids = {derive_thread_id(new_ulid(), f"key-{i}") for i in range(500)}
    assert len(ids) == 500 and all(is_ulid(i) and i == i.upper() and i[0] <= "7" for i in ids)
    a, b = new_ulid(), new_ulid()
    assert derive_thread_id(a, "k") == derive_thread_id(a, "k")
    assert derive_thread_id(a, "k") != derive_thread_id(b, "k")
    assert derive_thread_id(a, "k") != derive_thread_id(a, "k2")


async def test_a_retried_create_finds_the_created_thread(journal):
    mgr = manager(journal)
    first = await mgr.execute(create("c1"))
    assert await mgr.execute(create("c1")) == first
    await mgr.close()
    fresh = manager(journal)  # not in memory: a keyed create loads before deciding
    assert await fresh.execute(create("c1")) == first
    assert fresh.stats.conflicts == 0
    with pytest.raises(IdempotencyKeyReused):
        await fresh.execute(create("c1", title="another title"))
    other_account = await fresh.execute(create("c1", admin=new_ulid()))
    assert other_account[0].thread_id != first[0].thread_id
    assert len(await stored(journal, first[0].thread_id)) == 1


# --- forwarding carries the key ----------------------------------------------------------------
def test_the_forwarding_codec_round_trips_the_key():
    tid = new_ulid()
    for command in (
        post(tid, "a", key="k:1"),
        create("c.2"),
        DestroyThread(tid, ADMIN, 1, idempotency_key="d_3"),
        post(tid, "no key"),
    ):
        wire = orjson.loads(orjson.dumps({"command": command_to_json(command)}))["command"]
        assert command_from_json(wire) == command


async def test_journal_append_of_metadata_round_trips(journal):
    """The journal stores the envelope's metadata verbatim (JSON), so replay can read it back;
    a payload of an old journal (the record inside it, under `_meta`) reads the same."""
    pid = thread_persistence_id(new_ulid())
    metadata = {"idempotency": idempotency.meta("A", "k", "h")}
    await journal.append(pid, 0, [NewEvent("T", {"x": 1}, metadata)])
    await journal.append(
        pid, 1, [NewEvent("T", {"x": 2, "_meta": idempotency.meta("A", "k", "h")})]
    )
    first, old = await journal.read(pid)
    assert (first.payload, first.metadata) == ({"x": 1}, metadata)
    assert (old.payload, old.metadata) == ({"x": 2}, metadata)
