"""A journal filled directly through the Journal port (no HTTP, no entities), fast enough for
hundreds of thousands of events: threads created, then messages added, members joined and some
messages removed, appended concurrently so the SQLite journal group-commits them. What was
appended is kept (`Filled`), and `read_model_rows` dumps a read model to compare with it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from threadweaver.application import event_mapper
from threadweaver.application.ports import Journal
from threadweaver.domain import new_ulid, thread_persistence_id
from threadweaver.domain.events import (
    AddedMessage,
    MemberIdsJoined,
    MessagesAdded,
    MessagesRemoved,
    ThreadCreated,
)


@dataclass
class Filled:
    """What the journal holds: per thread its events' count and live message ids."""

    seq: dict[str, int] = field(default_factory=dict)
    messages: dict[str, set[str]] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    events: int = 0

    def rows(self) -> dict[str, set]:
        """The rows a read model of this journal holds (as `read_model_rows` returns them)."""
        return {
            "thread": {(tid, seq) for tid, seq in self.seq.items()},
            "message": {(tid, mid) for tid, ids in self.messages.items() for mid in ids},
            "member": {(tid, a) for tid, ids in self.members.items() for a in ids},
        }


ACCOUNT = "01H8XGJWBWBAQ4Z4G2V6K8M3PJ"


def _thread_events(thread_id: str, events: int, now: int) -> tuple[list, set[str], set[str]]:
    """`events` events of one thread: created, then mostly one message each, a member joining
    every 10th, a message removed every 25th."""
    member = new_ulid()
    out: list = [ThreadCreated(thread_id, ACCOUNT, now, "t", (ACCOUNT,), ())]
    live: list[str] = []
    members: set[str] = set()
    for i in range(1, events):
        at = now + i
        if i % 10 == 0 and member not in members:
            out.append(MemberIdsJoined(thread_id, ACCOUNT, at, (member,)))
            members.add(member)
        elif i % 25 == 0 and live:
            out.append(MessagesRemoved(thread_id, ACCOUNT, at, (live.pop(0),)))
        else:
            mid = new_ulid()
            live.append(mid)
            text = f"message {i} of the thread, some text to make it a realistic size"
            out.append(MessagesAdded(thread_id, ACCOUNT, at, (AddedMessage(mid, text, None, ()),)))
    return out, set(live), members


async def fill_journal(
    journal: Journal,
    threads: int,
    events_per_thread: int,
    *,
    per_append: int = 1,
    concurrency: int = 64,
    filled: Filled | None = None,
) -> Filled:
    """Append `threads` new threads of `events_per_thread` events each, `per_append` events per
    append, `concurrency` threads at a time."""
    filled = filled if filled is not None else Filled()
    now = int(time.time() * 1000)
    ids = [new_ulid() for _ in range(threads)]
    queue = iter(ids)

    async def worker() -> None:
        for thread_id in queue:
            events, live, members = _thread_events(thread_id, events_per_thread, now)
            pid = thread_persistence_id(thread_id)
            seq = 0
            for i in range(0, len(events), per_append):
                chunk = events[i : i + per_append]
                await journal.append(pid, seq, event_mapper.to_new_events(chunk))
                seq += len(chunk)
            filled.seq[thread_id] = seq
            filled.messages[thread_id] = live
            filled.members[thread_id] = members
            filled.events += seq

    await asyncio.gather(*(worker() for _ in range(min(concurrency, threads))))
    return filled


async def append_messages(journal: Journal, filled: Filled, count: int) -> None:
    """`count` more messages, one per append, spread over the filled threads."""
    for thread_id in itertools.islice(itertools.cycle(sorted(filled.seq)), count):
        mid = new_ulid()
        event = MessagesAdded(
            thread_id, ACCOUNT, int(time.time() * 1000), (AddedMessage(mid, "more", None, ()),)
        )
        seq = filled.seq[thread_id]
        await journal.append(
            thread_persistence_id(thread_id), seq, event_mapper.to_new_events([event])
        )
        filled.seq[thread_id] = seq + 1
        filled.messages[thread_id].add(mid)
        filled.events += 1


async def read_model_rows(url: str) -> dict[str, set]:
    """The rows of a read model that `Filled.rows` describes."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            threads = await conn.execute(sa.text("SELECT id, sequence_nr FROM thread"))
            messages = await conn.execute(
                sa.text("SELECT thread_id, id FROM thread_message WHERE deleted = 0")
            )
            members = await conn.execute(
                sa.text("SELECT thread_id, account_id FROM thread_member_ids")
            )
            return {
                "thread": {(r[0], int(r[1])) for r in threads},
                "message": {(r[0], r[1]) for r in messages},
                "member": {(r[0], r[1]) for r in members},
            }
    finally:
        await engine.dispose()
