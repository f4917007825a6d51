"""Live event streams: a member's `StreamHub`, one `ThreadTail` per thread someone follows here,
shared by all its subscribers, and `ThreadStream`, the frames of one thread's stream.

The journal is the source of truth; a tail only remembers the last `stream_buffer` events of
its thread (already encoded, once, for every subscriber) and its last seq. A tail is filled

- by this process's appends, in process (`Journal.subscribe`: the events as they become
  durable, before the command answers), without reading anything;
- for threads whose owner is another member (or another process on the same SQLite file), by a
  read of the thread (`Journal.read` after its last seq) when the journal's change notes
  (`Journal.changes`, one cheap call a poll interval for the whole member, whatever the number
  of tails) name the thread's shard, or a seq arrives after a gap;
- by a backstop read of each tail once per `stream_backstop` (900 s), for a writer that
  announces nothing.

An idle subscriber therefore costs no request at all; an idle member one `changes` call per
poll interval (on DynamoDB shared with the read-model updaters). A subscriber is a cursor on
its tail (`TailCursor`): a resume point older than the tail's memory is read from the journal
(at most `stream_catch_up_rounds` reads), after which it is live; a live subscriber that falls
further behind than the tail remembers (a slow consumer) has its stream end after the last
event it was sent, and resumes from there. Nothing a subscriber does writes to the journal.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..domain import Event, thread_persistence_id
from ..shards import shard_of
from . import event_mapper
from .ports import Journal, ReadModel, StoredEvent
from .read_your_writes import NotAppliedYet, ReadYourWrites
from .settings import StreamSettings
from .stream_membership import JOIN_EVENT_TYPES, joined, removed_by, removes
from .stream_wakeup import DirectWakeup, Sink, Wakeup

log = logging.getLogger(__name__)

HEARTBEAT = b": keep-alive\n\n"
OPENED = b": connected\n\n"


@dataclass(frozen=True, slots=True)
class TailEvent:
    """One event of a tail: its seq, the domain event, its SSE frame (`id: <seq>` first) and
    the accounts it may remove (`stream_membership.removed_by`)."""

    seq: int
    event: Event
    frame: bytes
    removes: frozenset[str] | None = None

    @property
    def body(self) -> bytes:
        """The frame without its `id:` line (an account stream writes its own id)."""
        return self.frame[self.frame.index(b"\n") + 1 :]


#: builds an event's SSE frame (the HTTP adapter's wire format, adapters/http/stream_wire.py)
Encode = Callable[[int, Event], bytes]


class Subscriber(Protocol):
    def notify(self, tail: ThreadTail) -> None:
        """The tail has new events (called synchronously, must not block)."""
        ...


class TooManyStreams(Exception):
    """The account has `streams_per_account` streams open on this member (HTTP 429)."""


class FellBehind(Exception):
    """A live subscriber is further behind than its tail remembers (a slow consumer)."""

    def __init__(self, missed: int) -> None:
        super().__init__(f"{missed} events behind")
        self.missed = missed


@dataclass(slots=True)
class StreamStats:
    """What the observability collector reports (runtime/threadweaver/observability/)."""

    subscribers: collections.Counter[str] = field(default_factory=collections.Counter)
    delivered: collections.Counter[str] = field(default_factory=collections.Counter)
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    refused: int = 0  # streams refused by the per-account cap
    journal_reads: int = 0  # tail fills and catch-ups


class ThreadTail:
    """The recent events of one thread, shared by this member's subscribers of it."""

    __slots__ = (
        "checked_at",
        "filling",
        "last_seq",
        "loading",
        "pid",
        "refill",
        "refs",
        "ring",
        "shard",
        "stale",
        "subscribers",
        "thread_id",
    )

    def __init__(self, thread_id: str, pid: str, shard: int, buffer: int) -> None:
        self.thread_id = thread_id
        self.pid = pid
        self.shard = shard
        self.last_seq = 0
        self.ring: collections.deque[TailEvent] = collections.deque(maxlen=buffer)
        self.subscribers: set[Subscriber] = set()
        self.refs = 0
        self.loading: asyncio.Future[None] | None = None
        self.stale = False  # an append arrived while loading: read after the load
        self.filling = False
        self.refill = False
        self.checked_at = time.monotonic()

    @property
    def first_seq(self) -> int:
        """The oldest seq remembered (last_seq + 1 when none is)."""
        return self.ring[0].seq if self.ring else self.last_seq + 1

    def after(self, pos: int) -> list[TailEvent] | None:
        """The events after seq `pos` ([] when none yet), or None when some of them are older
        than what the tail remembers."""
        if pos >= self.last_seq:
            return []
        first = self.first_seq
        if pos + 1 < first:
            return None
        return list(itertools.islice(self.ring, pos + 1 - first, None))

    def extend(self, events: list[TailEvent]) -> None:
        """Append events that follow `last_seq` without a gap, and wake the subscribers."""
        for e in events:
            self.ring.append(e)
            self.last_seq = e.seq
        for subscriber in list(self.subscribers):
            subscriber.notify(self)


class JoinWatcher(Protocol):
    """An account stream, told of this process's appends that make its account join a thread."""

    account_id: str

    def joined(self, thread_id: str, seq: int) -> None: ...


class StreamHub:
    """The live-stream side of one member (see the module docstring)."""

    OPEN_CHECKS = 8  # read-model access checks at once (below the pool's 10 connections)

    def __init__(
        self,
        journal: Journal,
        read_model: ReadModel,
        read_your_writes: ReadYourWrites,
        settings: StreamSettings,
        encode: Encode,
        *,
        poll_interval: float = 1.0,
    ) -> None:
        self.journal = journal
        self.read_model = read_model
        self.read_your_writes = read_your_writes
        self.settings = settings
        self.encode = encode
        self.poll_interval = poll_interval
        self.stats = StreamStats()
        self._tails: dict[str, ThreadTail] = {}  # by persistence id
        self._by_shard: dict[int, set[ThreadTail]] = collections.defaultdict(set)
        self._open: collections.Counter[str] = collections.Counter()  # streams per account
        self._watchers: dict[str, set[JoinWatcher]] = collections.defaultdict(set)
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._wakeups: set[Wakeup] = set()  # of the streams being served
        self._checks = asyncio.Semaphore(self.OPEN_CHECKS)
        self.closing = asyncio.Event()

    def __len__(self) -> int:
        return len(self._tails)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._unsubscribe = self.journal.subscribe(self._on_append)
        self._poller = asyncio.create_task(self._poll_forever(), name="stream-tails")
        self._ticker = asyncio.create_task(self._beat_forever(), name="stream-heartbeats")

    def end_streams(self) -> None:
        """End every stream (each after the events it has): the server is shutting down, and
        the clients resume on another member."""
        self.closing.set()
        for wakeup in list(self._wakeups):
            wakeup.event.set()

    def serving(self, wakeup: Wakeup) -> Callable[[], None]:
        """Register a stream's wake-up for `end_streams`; returns the unregistration."""
        self._wakeups.add(wakeup)
        return lambda: self._wakeups.discard(wakeup)

    async def close(self) -> None:
        self.end_streams()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = [t for t in (self._poller, self._ticker, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._poller = self._ticker = None

    # -- admission --------------------------------------------------------------------------
    def admit(self, account_id: str, kind: str) -> None:
        """Count a new stream of `account_id`; TooManyStreams above the cap."""
        if self._open[account_id] >= self.settings.streams_per_account:
            self.stats.refused += 1
            raise TooManyStreams(
                f"at most {self.settings.streams_per_account} streams per account are open "
                "on one member"
            )
        self._open[account_id] += 1
        self.stats.subscribers[kind] += 1

    def release(self, account_id: str, kind: str) -> None:
        self._open[account_id] -= 1
        if self._open[account_id] <= 0:
            del self._open[account_id]
        self.stats.subscribers[kind] -= 1

    def watch_joins(self, watcher: JoinWatcher) -> Callable[[], None]:
        self._watchers[watcher.account_id].add(watcher)

        def unwatch() -> None:
            watchers = self._watchers.get(watcher.account_id)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[watcher.account_id]

        return unwatch

    # -- access -----------------------------------------------------------------------------
    async def can_read(self, thread_id: str, account_id: str, min_seq: int = 0) -> bool:
        """What the thread's queries answer: visible to the account (after the read model
        applied `min_seq`); NotAppliedYet when it did not in time. At most `OPEN_CHECKS` run
        at once: thousands of clients reconnecting together (a member went away) queue here
        instead of exhausting the read model's connection pool."""
        if min_seq > 0:
            await self.read_your_writes.wait(thread_id, min_seq)
        async with self._checks:
            return await self.read_model.get_thread(thread_id, account_id) is not None

    async def still_reads(self, thread_id: str, account_id: str, seq: int) -> bool:
        """After an event at `seq` that may have removed the account: may it still read the
        thread? False as well when the read model does not answer in time (the client
        reconnects and is checked again)."""
        try:
            return await self.can_read(thread_id, account_id, seq)
        except (NotAppliedYet, Exception):
            log.debug("access check of %s on %s failed", account_id, thread_id, exc_info=True)
            return False

    # -- tails ------------------------------------------------------------------------------
    async def open_tail(self, thread_id: str) -> ThreadTail:
        """The thread's tail (created, with the journal's last seq, for its first user); give
        it back with `close_tail`."""
        pid = thread_persistence_id(thread_id)
        tail = self._tails.get(pid)
        if tail is None:
            tail = ThreadTail(thread_id, pid, shard_of(pid, self.journal.shards), self._buffer)
            self._tails[pid] = tail
            self._by_shard[tail.shard].add(tail)
            tail.loading = asyncio.get_running_loop().create_future()
            try:
                tail.last_seq = await self.journal.highest_seq(pid)
                self.stats.journal_reads += 1
            except BaseException as exc:
                self._drop(tail)
                tail.loading.set_exception(exc)
                tail.loading.exception()  # retrieved: the other openers get it too
                tail.loading = None
                raise
            loading, tail.loading = tail.loading, None
            loading.set_result(None)
            tail.checked_at = time.monotonic()
            if tail.stale:
                tail.stale = False
                self.fill(tail)
        elif tail.loading is not None:
            await asyncio.shield(tail.loading)
        tail.refs += 1
        return tail

    def close_tail(self, tail: ThreadTail) -> None:
        tail.refs -= 1
        if tail.refs <= 0 and self._tails.get(tail.pid) is tail:
            self._drop(tail)

    def _drop(self, tail: ThreadTail) -> None:
        self._tails.pop(tail.pid, None)
        tails = self._by_shard.get(tail.shard)
        if tails is not None:
            tails.discard(tail)
            if not tails:
                del self._by_shard[tail.shard]

    @property
    def _buffer(self) -> int:
        return max(1, self.settings.stream_buffer)

    def _entry(self, stored: StoredEvent) -> TailEvent:
        event = event_mapper.to_domain(stored)
        return TailEvent(stored.seq, event, self.encode(stored.seq, event), removed_by(event))

    def _on_append(self, events: Sequence[StoredEvent]) -> None:
        """The journal's in-process feed: this process's durable appends."""
        batches: dict[ThreadTail, list[TailEvent]] = {}
        for stored in events:
            tail = self._tails.get(stored.pid)
            if tail is not None:
                if tail.loading is not None:
                    tail.stale = True
                elif tail.filling:
                    tail.refill = True
                else:
                    batch = batches.setdefault(tail, [])
                    expected = (batch[-1].seq if batch else tail.last_seq) + 1
                    if stored.seq == expected:
                        batch.append(self._entry(stored))
                    elif stored.seq > expected:
                        tail.refill = True  # a gap (another writer's events): read it
            if self._watchers and stored.type in JOIN_EVENT_TYPES:
                self._tell_watchers(stored)
        for tail, batch in batches.items():
            if batch:
                tail.extend(batch)
            if tail.refill:
                tail.refill = False
                self.fill(tail)

    def _tell_watchers(self, stored: StoredEvent) -> None:
        accounts = joined(event_mapper.to_domain(stored))
        for account in accounts & self._watchers.keys():
            thread_id = stored.payload.get("threadId") or ""
            for watcher in list(self._watchers[account]):
                watcher.joined(thread_id, stored.seq)

    def fill(self, tail: ThreadTail) -> None:
        """Read the thread's events after the tail's last seq (once at a time per tail)."""
        if tail.loading is not None:
            tail.stale = True
            return
        if tail.filling:
            tail.refill = True
            return
        tail.filling = True
        task = asyncio.create_task(self._fill(tail), name=f"stream-fill-{tail.thread_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fill(self, tail: ThreadTail) -> None:
        try:
            while True:
                tail.refill = False
                stored = await self.journal.read(tail.pid, tail.last_seq + 1)
                self.stats.journal_reads += 1
                batch: list[TailEvent] = []
                for e in stored:
                    if e.seq != tail.last_seq + 1 + len(batch):
                        break
                    batch.append(self._entry(e))
                if batch:
                    tail.extend(batch)
                tail.checked_at = time.monotonic()
                if not tail.refill:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            # the next poll reads it again (a tail checked long ago is due for the backstop)
            log.warning("reading thread %s for its stream failed", tail.thread_id, exc_info=True)
            tail.checked_at = 0.0
        finally:
            tail.filling = False

    async def read_after(self, tail: ThreadTail, pos: int) -> list[TailEvent]:
        """A subscriber's catch-up: the thread's events after `pos`, from the journal, without
        a gap (not kept in the tail)."""
        stored = await self.journal.read(tail.pid, pos + 1)
        self.stats.journal_reads += 1
        out: list[TailEvent] = []
        for e in stored:
            if e.seq != pos + 1 + len(out):
                break
            out.append(self._entry(e))
        return out

    async def _beat_forever(self) -> None:
        """One timer for every stream's heartbeat (none per subscriber): each interval, wake
        every stream with its `beat` set; an idle one writes its comment line."""
        while True:
            await asyncio.sleep(self.settings.stream_heartbeat)
            for wakeup in list(self._wakeups):
                wakeup.beat = True
                wakeup.event.set()

    async def _poll_forever(self) -> None:
        cursor: int | None = None
        while True:
            try:
                changes = await self.journal.changes(cursor)
                first, cursor = cursor is None, changes.cursor
                if not first:
                    self._wake_for(changes.shards if changes.complete else None)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("polling the journal's changes for streams failed", exc_info=True)
            await asyncio.sleep(self.poll_interval)

    def _wake_for(self, shards: dict[int, int] | None) -> None:
        """Fill the tails of the noted shards (all of them when the notes are incomplete) and
        those due for the backstop or whose last read failed."""
        due = time.monotonic() - self.settings.stream_backstop
        if shards is None:
            targets = list(self._tails.values())
        else:
            targets = [t for shard in shards for t in self._by_shard.get(shard, ())]
            targets += [t for t in self._tails.values() if t.checked_at < due]
        for tail in targets:
            self.fill(tail)


class TailCursor:
    """One subscriber's position in one tail: the seq of the last event it was given."""

    __slots__ = ("catch_ups", "live", "pos", "tail")

    def __init__(self, tail: ThreadTail, pos: int) -> None:
        self.tail = tail
        self.pos = pos
        self.live = False
        self.catch_ups = 0

    async def take(self, hub: StreamHub) -> list[TailEvent]:
        """The events after `pos` that can be had now ([] if none), moving `pos` past them.
        Raises FellBehind for a live subscriber the tail no longer remembers events for."""
        events = self.tail.after(self.pos)
        if events is None:
            if self.live or self.catch_ups >= hub.settings.stream_catch_up_rounds:
                missed = self.tail.last_seq - self.pos
                raise FellBehind(missed)
            self.catch_ups += 1
            events = await hub.read_after(self.tail, self.pos)
        else:
            self.live = True
        if events:
            self.pos = events[-1].seq
        return events


def stream_deadline(settings: StreamSettings) -> float:
    """When a stream ends by itself (monotonic; inf: never)."""
    limit = settings.stream_max_duration
    return time.monotonic() + limit if limit > 0 else float("inf")


class ThreadStream:
    """The frames of one thread's stream for one account, from seq `after` + 1. With a `sink`
    (the connection's, from the HTTP adapter) a caught-up stream is written to from the tail's
    broadcast, without waking its task (application/stream_wakeup.py)."""

    KIND = "thread"

    def __init__(
        self,
        hub: StreamHub,
        tail: ThreadTail,
        account_id: str,
        after: int,
        sink: Sink | None = None,
    ) -> None:
        self.hub = hub
        self.tail = tail
        self.account_id = account_id
        self.cursor = TailCursor(tail, after)
        self.wakeup = DirectWakeup(hub, self.cursor, account_id, self.KIND, float("inf"))
        self.wakeup.sink = sink
        self.ended_by = ""  # why the stream ended: behind, access, duration, closing

    async def frames(self) -> AsyncIterator[bytes]:
        """SSE chunks: events (several per chunk when they come together), heartbeats."""
        hub, settings = self.hub, self.hub.settings
        self.tail.subscribers.add(self.wakeup)
        unregister = hub.serving(self.wakeup)
        try:
            ends = self.wakeup.ends = stream_deadline(settings)
            while not hub.closing.is_set():
                self.wakeup.event.clear()
                try:
                    events = await self.cursor.take(hub)
                except FellBehind as exc:
                    hub.stats.dropped[self.KIND] += exc.missed
                    self.ended_by = "behind"
                    return
                except Exception:  # the journal failed a catch-up: the client resumes later
                    log.warning("stream of %s failed", self.tail.thread_id, exc_info=True)
                    self.ended_by = "error"
                    return
                if events:
                    chunk, keep = self._until_removal(events)
                    hub.stats.delivered[self.KIND] += len(chunk)
                    yield b"".join(e.frame for e in chunk)
                    if not keep:
                        seq = chunk[-1].seq
                        if not await hub.still_reads(self.tail.thread_id, self.account_id, seq):
                            self.ended_by = "access"
                            return
                        self.cursor.pos = seq  # the rest of the batch is taken again
                    continue
                if time.monotonic() >= ends:  # checked when woken: at least every heartbeat
                    self.ended_by = "duration"
                    return
                if self.wakeup.beat:
                    self.wakeup.beat = False
                    yield HEARTBEAT
                    continue
                self.wakeup.parked = True  # caught up: new events may be written directly
                try:
                    await self.wakeup.event.wait()
                finally:
                    self.wakeup.parked = False
            self.ended_by = "closing"
        finally:
            self.wakeup.parked = False
            unregister()
            self.tail.subscribers.discard(self.wakeup)

    def _until_removal(self, events: list[TailEvent]) -> tuple[list[TailEvent], bool]:
        """The events up to the first that may remove the account (then False: check it)."""
        account = self.account_id
        for i, e in enumerate(events):
            if e.removes is not None and removes(e.removes, account):
                return events[: i + 1], False
        return events, True
