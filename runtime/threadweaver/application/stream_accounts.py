"""An account's stream: the events of every thread the account belongs to, in one stream, on
the same tails as the thread streams (application/streams.py).

- **Which threads.** At the start, the threads the read model lists for the account (at most
  `stream_account_threads`). Later joins are followed from the join event on: this process's
  appends tell the stream at once (`StreamHub.watch_joins`); joins made on other members show
  in the read model, which the stream reads again every `stream_account_refresh` seconds. An
  event that may remove the account (it left a role, the thread is destroyed) is delivered,
  then the read model is asked whether the account still reads the thread; if not, the stream
  stops following it.
- **Resume.** Each event's id is the stream's position in every followed thread
  (application/stream_cursor.py). Resuming with it, every thread goes on after its position;
  a thread the account joined while away is followed from its join event (found in the
  thread's journal); a thread it left while away is not followed any more.
- **Order.** Each thread's events come in order, exactly once; threads interleave as their
  events arrive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from ..domain import thread_persistence_id
from . import event_mapper, stream_cursor
from .stream_membership import join_seq, removes
from .stream_wakeup import Wakeup
from .streams import (
    HEARTBEAT,
    FellBehind,
    StreamHub,
    TailCursor,
    TailEvent,
    ThreadTail,
    stream_deadline,
)

log = logging.getLogger(__name__)

LIST_PAGE = 1000  # threads per read-model query (the read model's largest page)
OPEN_CONCURRENCY = 16  # tails opened at once when a stream starts


class AccountStream:
    """One account stream (see the module docstring). `resume`: the decoded id the client
    resumes from (None: from the live end of every thread)."""

    KIND = "account"

    def __init__(
        self, hub: StreamHub, account_id: str, resume: dict[bytes, int] | None = None
    ) -> None:
        self.hub = hub
        self.account_id = account_id
        self.resume = resume
        self.followed: dict[str, TailCursor] = {}
        self.positions: dict[bytes, int] = {}  # thread key -> seq of its last event sent
        self._keys: dict[str, bytes] = {}
        self._pending: dict[str, int | None] = {}  # joins to follow: thread -> join seq
        self.wakeup = Wakeup()
        self._unwatch = hub.watch_joins(self)
        self.ended_by = ""

    # -- JoinWatcher ------------------------------------------------------------------------
    def joined(self, thread_id: str, seq: int) -> None:
        if thread_id and thread_id not in self.followed:
            self._pending[thread_id] = seq
            self.wakeup.event.set()

    # -- following threads ------------------------------------------------------------------
    async def open(self) -> None:
        """Follow the account's threads (before the response starts: errors are answers)."""
        thread_ids = await self._listed()
        semaphore = asyncio.Semaphore(OPEN_CONCURRENCY)

        async def follow(thread_id: str) -> None:
            async with semaphore:
                key = stream_cursor.thread_key(thread_id)
                if self.resume is None:
                    await self._follow(thread_id, None, live=True)
                elif key in self.resume:
                    await self._follow(thread_id, self.resume[key])
                else:  # joined while the client was away
                    await self._follow(thread_id, None)

        try:
            await asyncio.gather(*(follow(t) for t in thread_ids))
        except BaseException:
            self.close()
            raise

    async def _listed(self) -> list[str]:
        cap = self.hub.settings.stream_account_threads
        ids: list[str] = []
        while len(ids) < cap:
            page = await self.hub.read_model.list_threads(self.account_id, len(ids), LIST_PAGE)
            ids.extend(v.id for v in page)
            if len(page) < LIST_PAGE:
                break
        return ids[:cap]

    async def _follow(self, thread_id: str, after: int | None, live: bool = False) -> None:
        """Follow a thread after seq `after`; None: from the live end (`live`) or from the
        event since which the account belongs to it (read from the journal)."""
        if thread_id in self.followed or len(self.followed) >= (
            self.hub.settings.stream_account_threads
        ):
            return
        tail = await self.hub.open_tail(thread_id)
        if after is None and live:
            after = tail.last_seq
        elif after is None:
            after = await self._joined_before(tail)
        if after is None or thread_id in self.followed:
            self.hub.close_tail(tail)
            return
        cursor = TailCursor(tail, after)
        self.followed[thread_id] = cursor
        key = self._keys[thread_id] = stream_cursor.thread_key(thread_id)
        self.positions[key] = after
        tail.subscribers.add(self.wakeup)
        self.wakeup.notify(tail)  # a catch-up may be due

    async def _joined_before(self, tail: ThreadTail) -> int | None:
        """The seq before the account's current membership began; None if it has none."""
        stored = await self.hub.journal.read(thread_persistence_id(tail.thread_id), 1)
        self.hub.stats.journal_reads += 1
        since = join_seq([(e.seq, event_mapper.to_domain(e)) for e in stored], self.account_id)
        return None if since is None else since - 1

    def _unfollow(self, thread_id: str) -> None:
        cursor = self.followed.pop(thread_id, None)
        if cursor is None:
            return
        cursor.tail.subscribers.discard(self.wakeup)
        self.wakeup.dirty.discard(cursor.tail)
        self.positions.pop(self._keys.pop(thread_id), None)
        self.hub.close_tail(cursor.tail)

    def close(self) -> None:
        self._unwatch()
        for thread_id in list(self.followed):
            self._unfollow(thread_id)

    async def _follow_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for thread_id, seq in pending.items():
            try:
                await self._follow(thread_id, None if seq is None else seq - 1)
            except Exception:  # the journal did not answer: the next refresh finds it again
                log.warning("following %s for %s failed", thread_id, self.account_id, exc_info=True)

    async def _refresh(self) -> None:
        try:
            listed = await self._listed()
        except Exception:
            log.debug("refreshing the threads of %s failed", self.account_id, exc_info=True)
            return
        for thread_id in listed:
            if thread_id not in self.followed:
                self._pending.setdefault(thread_id, None)

    # -- frames -----------------------------------------------------------------------------
    async def frames(self) -> AsyncIterator[bytes]:
        hub, settings = self.hub, self.hub.settings
        unregister = hub.serving(self.wakeup)
        try:
            ends = stream_deadline(settings)
            refresh_at = time.monotonic() + settings.stream_account_refresh
            while not hub.closing.is_set():
                self.wakeup.event.clear()
                if time.monotonic() >= refresh_at:
                    refresh_at = time.monotonic() + settings.stream_account_refresh
                    await self._refresh()
                if self._pending:
                    await self._follow_pending()
                try:
                    chunk = await self._take_dirty()
                except FellBehind as exc:
                    hub.stats.dropped[self.KIND] += exc.missed
                    self.ended_by = "behind"
                    return
                except Exception:  # the journal failed a catch-up: the client resumes later
                    log.warning("stream of account %s failed", self.account_id, exc_info=True)
                    self.ended_by = "error"
                    return
                if chunk:
                    hub.stats.delivered[self.KIND] += len(chunk)
                    yield b"".join(chunk)
                    continue
                now = time.monotonic()
                if now >= ends:
                    self.ended_by = "duration"
                    return
                if self.wakeup.beat:  # the hub's heartbeat timer
                    self.wakeup.beat = False
                    yield HEARTBEAT
                    continue
                await self.wakeup.wait(max(min(ends, refresh_at) - now, 0.0))
            self.ended_by = "closing"
        finally:
            unregister()
            self.close()

    async def _take_dirty(self) -> list[bytes]:
        dirty, self.wakeup.dirty = self.wakeup.dirty, set()
        frames: list[bytes] = []
        for tail in dirty:
            cursor = self.followed.get(tail.thread_id)
            if cursor is None or cursor.tail is not tail:
                continue
            events = await cursor.take(self.hub)
            await self._deliver(tail.thread_id, cursor, events, frames)
        return frames

    async def _deliver(
        self, thread_id: str, cursor: TailCursor, events: list[TailEvent], frames: list[bytes]
    ) -> None:
        key = self._keys[thread_id]
        for e in events:
            self.positions[key] = e.seq
            frames.append(b"id: " + stream_cursor.encode(self.positions).encode() + b"\n" + e.body)
            if removes(e.removes, self.account_id) and not await self.hub.still_reads(
                thread_id, self.account_id, e.seq
            ):
                self._unfollow(thread_id)
                return
