"""StreamHub over a real SQLite journal: tails filled by this process's appends, by another
writer's (through the journal's changes), the per-account cap, and a thread stream's frames."""

from __future__ import annotations

import asyncio

import pytest

from threadweaver.adapters.http.stream_wire import frame
from threadweaver.adapters.journal.sqlite import SqliteJournal
from threadweaver.application.entities import EntityManager
from threadweaver.application.read_your_writes import ReadYourWrites
from threadweaver.application.settings import StreamSettings
from threadweaver.application.streams import (
    HEARTBEAT,
    StreamHub,
    ThreadStream,
    TooManyStreams,
)
from threadweaver.domain import new_ulid
from threadweaver.domain.commands import AddMessages, CreateThread, LeaveMemberIds, NewMessage

A, M = new_ulid(), new_ulid()


class Visible:
    """A read model that shows every thread to `members`, and has applied everything."""

    def __init__(self) -> None:
        self.members = {A, M}

    async def get_thread(self, thread_id: str, account_id: str) -> object | None:
        return object() if account_id in self.members else None

    async def applied_seq(self, thread_id: str) -> int:
        return 1 << 40


async def until(predicate, what: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 (the hub's poll is what changes it)
            await asyncio.sleep(0.01)


@pytest.fixture
async def setup(tmp_path):
    journal = SqliteJournal(tmp_path / "j.db", shards=16, synchronous="off")
    await journal.start()
    read_model = Visible()
    hub = StreamHub(
        journal,
        read_model,  # type: ignore[arg-type]
        ReadYourWrites(read_model, 1.0),
        StreamSettings(streams_per_account=2, stream_heartbeat=0.05),
        frame,
        poll_interval=0.02,
    )
    hub.start()
    entities = EntityManager(journal)
    yield journal, hub, entities, read_model, tmp_path
    await hub.close()
    await journal.close()


def add(thread_id: str, text: str, account: str = M) -> AddMessages:
    return AddMessages(thread_id, account, (NewMessage(new_ulid(), text),), at=2)


async def test_local_appends_fill_the_tail_without_reading(setup):
    _, hub, entities, _, _ = setup
    t = new_ulid()
    await entities.execute(CreateThread(t, A, "t", (A,), (M,), at=1))
    tail = await hub.open_tail(t)
    assert tail.last_seq == 1 and len(hub) == 1
    reads = hub.stats.journal_reads
    executed = await entities.execute(add(t, "hi"))
    assert executed.seq == 2  # type: ignore[attr-defined]
    assert tail.last_seq == 2 and [e.seq for e in tail.after(1)] == [2]
    assert hub.stats.journal_reads == reads  # handed over in process
    hub.close_tail(tail)
    assert len(hub) == 0


async def test_another_writers_appends_reach_the_tail(setup):
    _, hub, entities, _, tmp_path = setup
    t = new_ulid()
    await entities.execute(CreateThread(t, A, "t", (A,), (M,), at=1))
    tail = await hub.open_tail(t)
    other = SqliteJournal(tmp_path / "j.db", shards=16, synchronous="off")
    await other.start()
    try:
        await EntityManager(other).execute(add(t, "from elsewhere"))
        await until(lambda: tail.last_seq == 2, "the other writer's event")
        assert tail.after(1)[0].event.messages[0].text == "from elsewhere"  # type: ignore[union-attr]
    finally:
        await other.close()
        hub.close_tail(tail)


async def test_streams_per_account_are_capped(setup):
    _, hub, _, _, _ = setup
    hub.admit(A, "thread")
    hub.admit(A, "account")
    with pytest.raises(TooManyStreams):
        hub.admit(A, "thread")
    hub.admit(M, "thread")  # another account
    hub.release(A, "thread")
    hub.admit(A, "thread")
    assert hub.stats.subscribers == {"thread": 2, "account": 1} and hub.stats.refused == 1


async def test_a_thread_stream_resumes_goes_live_and_ends_when_access_is_lost(setup):
    _, hub, entities, read_model, _ = setup
    t = new_ulid()
    await entities.execute(CreateThread(t, A, "t", (A,), (M,), at=1))
    await entities.execute(add(t, "one"))
    tail = await hub.open_tail(t)
    stream = ThreadStream(hub, tail, M, 0)
    frames = stream.frames()
    first = await anext(frames)
    assert first.startswith(b"id: 1\n") and b"id: 2\n" in first  # replayed from the journal
    assert await anext(frames) == HEARTBEAT  # idle
    await entities.execute(add(t, "two"))
    assert (await anext(frames)).startswith(b"id: 3\n")
    read_model.members.discard(M)  # the read model no longer shows the thread to M
    await entities.execute(LeaveMemberIds(t, A, (M,), at=3))
    assert (await anext(frames)).startswith(b"id: 4\nevent: MemberIdsLeft")
    with pytest.raises(StopAsyncIteration):
        await anext(frames)
    assert stream.ended_by == "access" and hub.stats.delivered["thread"] == 4
    hub.close_tail(tail)
