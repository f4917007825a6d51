"""Checks that the journal holds every acknowledged command once and that the read model
converges to exactly the journal's content (shared by the fault and scaling suites)."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from threadweaver.application.ports import Journal
from threadweaver.domain import thread_persistence_id


async def journaled_messages(journal: Journal, thread_ids: Iterable[str]) -> dict[str, list[str]]:
    """Message ids per thread as the journal holds them; asserts every stream is gap-free and
    no message id appears twice."""
    out: dict[str, list[str]] = {}
    seen: collections.Counter[str] = collections.Counter()
    for tid in thread_ids:
        events = await journal.read(thread_persistence_id(tid))
        assert [e.seq for e in events] == list(range(1, len(events) + 1)), f"gap in {tid}"
        ids = [m["id"] for e in events if e.type == "MessagesAdded" for m in e.payload["messages"]]
        seen.update(ids)
        out[tid] = ids
    doubled = [m for m, n in seen.items() if n > 1]
    assert not doubled, f"messages written twice: {doubled[:5]}"
    return out


async def read_model_converges(
    read_model_url: str, journaled: Mapping[str, list[str]], timeout: float
) -> float:
    """Seconds until the read model's live messages are exactly `journaled`; fails after
    `timeout` naming a thread that differs."""
    engine = create_async_engine(read_model_url)
    t0 = time.monotonic()
    try:
        while True:
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        sa.text("SELECT thread_id, id FROM thread_message WHERE deleted = 0")
                    )
                ).all()
            projected: dict[str, set[str]] = collections.defaultdict(set)
            for tid, mid in rows:
                projected[tid].add(mid)
            differing = [t for t, ids in journaled.items() if projected[t] != set(ids)]
            if not differing and len(rows) == sum(map(len, journaled.values())):
                return time.monotonic() - t0
            assert time.monotonic() - t0 < timeout, (
                f"read model differs from the journal for {len(differing)} threads, e.g. {differing[:1]}"
            )
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
