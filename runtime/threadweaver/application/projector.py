"""Read-model updaters (RMUs): project the journal's events of a shard range into the read model.

An RMU keeps one offset per shard in the read model, committed with the rows (its checkpoint).
It reads batches of its range, decodes and projects them into row operations
(application/thread_projection.py) and has the read model apply them.

Where events come from:
- the appends of this process: the journal hands each durable append's events, as stored
  (offsets included), to its subscribers; the RMU of their range queues and applies them as they
  are, without reading them back (the in-process feed);
- the journal, for everything else: at start (a restart, a takeover) the whole range after its
  checkpoints, `Journal.offset_slack` before them (an event can become visible behind an offset
  already read where offsets are write times, DynamoDB); every poll interval `Journal.changes`
  says in which shards other writers appended (one cheap call, whatever the number of shards),
  and only those are read (again `settle` later where the index is eventually consistent); and
  one shard at a time, each once per `backstop_period`, as a last resort.

Convergence whatever the visibility order: events pass through `Continuity`
(application/thread_continuity.py), which drops what a thread's row has applied, passes each
thread's next events, and holds the events behind a gap; a gap open for `repair_after` seconds is
repaired by reading the thread's missing events by sequence number (`Journal.read`), backing off
if they are not there yet. A gap therefore costs one bounded read, never a loop, and never stops
the other threads of its shard.

The checkpoint a restart reads from never reaches an event the RMU knows of and has not applied
(held behind a gap, queued, to be passed again, dropped from an overfull queue and not read yet),
nor an append of this process still in flight (`Journal.in_flight_floor`): whatever the order in
which appends finish, a restart after a kill finds every one that took effect.

Errors restart the loop with exponential backoff; the state (running, offset, lag, restarts,
last error) is what a member reports in its Lease.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from . import event_mapper, tracing
from .ports import ApplyResult, Changes, Journal, ReadModel, StoredEvent
from .row_operations import ProjectedEvent
from .settings import ProjectorSettings  # declared with the other settings; importable from here
from .shard_reads import ShardReads
from .thread_continuity import Continuity
from .thread_projection import project

log = logging.getLogger(__name__)

PROJECTION = "threads"

__all__ = ["PROJECTION", "Projector", "ProjectorSettings", "ProjectorState"]


@dataclass(slots=True)
class ProjectorState:
    running: bool = False
    offset: int = 0  # highest checkpoint offset in the range (a restart reads from there)
    # highest offset of an event applied: the checkpoint can stay below it while an append of
    # this process is in flight (observability/lag.py measures the lag from this one)
    applied_offset: int = 0
    applied: int = 0
    skipped: int = 0
    lag_events: int = 0  # events known but not applied yet (read, pushed or held behind a gap)
    lag_seconds: float = 0.0  # age of the newest applied event when last applied
    restarts: int = 0
    last_error: str | None = None
    last_applied_ts: int = 0
    repairs: int = 0  # reads of a thread's missing events (gap repairs)


class Projector:
    """The RMU of one shard range [start, end)."""

    def __init__(
        self,
        journal: Journal,
        read_model: ReadModel,
        start: int,
        end: int,
        settings: ProjectorSettings = ProjectorSettings(),
        *,
        projection: str = PROJECTION,
        on_applied: Callable[[Sequence[StoredEvent]], None] | None = None,
    ) -> None:
        self.journal = journal
        self.read_model = read_model
        self.start_shard = start
        self.end_shard = end
        self.settings = settings
        self.projection = projection
        self.on_applied = on_applied
        self.state = ProjectorState()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._caught_up = asyncio.Event()
        # read everything it owed once since its start (a rebuild's shadow RMU is caught up)
        self.caught_up_once = False
        self._reset()

    def _reset(self) -> None:
        """A clean slate (a new start): everything is read again from the checkpoints."""
        self._offsets: dict[int, int] = {}  # the checkpoints, as the read model stores them
        self._fed: collections.deque[StoredEvent] = collections.deque()  # this process's appends
        # shard -> (lowest offset of the fed events dropped, when a read of it can settle that)
        self._dropped: dict[int, tuple[int, float]] = {}
        self._reads = ShardReads()
        self._again: list[StoredEvent] = []  # events to pass to the read model again
        s = self.settings
        self._continuity = Continuity(s.known_threads, s.repair_after, s.max_backoff)
        self._changes: int | None = None  # Journal.changes cursor; None: not caught up yet
        self._next_poll = 0.0
        self._next_backstop = 0.0
        self._backstop_next = self.start_shard

    @property
    def range(self) -> tuple[int, int]:
        return self.start_shard, self.end_shard

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._reset()
        self._caught_up.clear()
        self.caught_up_once = False
        self._unsubscribe = self.journal.subscribe(self._on_append)
        self._task = asyncio.create_task(
            self._supervise(), name=f"rmu-{self.start_shard}-{self.end_shard}"
        )

    async def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            task = self._task
            # Cancel until it ends: on Python 3.11 asyncio.wait_for can swallow a cancellation
            # that arrives as its wait completes (a wake-up during a handoff), and the loop
            # would go on while stop() waited for it for good.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            await asyncio.gather(task, return_exceptions=True)
            self._task = None
        self.state.running = False

    async def restart(self) -> None:
        await self.stop()
        self.state.restarts += 1
        self.start()

    @property
    def is_alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def wait_caught_up(self, timeout: float | None = None) -> None:
        """Wait until the RMU has nothing left to read or apply (tests, readiness)."""
        async with asyncio.timeout(timeout):
            await self._caught_up.wait()

    def _on_append(self, events: Sequence[StoredEvent]) -> None:
        """The in-process feed: this process's durable appends, queued as they are."""
        start, end = self.start_shard, self.end_shard
        fed = self._fed
        before = len(fed)
        fed.extend(ev for ev in events if start <= ev.shard < end)
        if len(fed) == before:
            return
        if len(fed) > self.settings.max_queued:
            self._drop_queue()
        self._caught_up.clear()
        self._wake.set()

    def _drop_queue(self) -> None:
        """Too many appends queued (the read model has been away): read their shards from the
        journal instead, after the checkpoints (which stay below every queued event)."""
        settled_at = time.monotonic() + (self.settings.settle if self.journal.offset_slack else 0)
        lowest: dict[int, int] = {}
        for ev in self._fed:
            if ev.offset < lowest.get(ev.shard, ev.offset + 1):
                lowest[ev.shard] = ev.offset
        log.warning(
            "RMU %d-%d: %d appends queued; reading their %d shards from the journal instead",
            *self.range,
            len(self._fed),
            len(lowest),
        )
        self._fed.clear()
        for shard, offset in lowest.items():
            old = self._dropped.get(shard)
            self._dropped[shard] = (min(offset, old[0]) if old else offset, settled_at)
            after = self._offsets.get(shard, 0)
            self._reads.owe(shard, after)
            if settled_at > time.monotonic():  # an eventually consistent index: again later
                self._reads.owe_later(settled_at, shard, after)

    # -- the loop ---------------------------------------------------------------------------
    async def _supervise(self) -> None:
        backoff = self.settings.min_backoff
        while True:
            try:
                self.state.running = True
                await self._run()
            except asyncio.CancelledError:
                self.state.running = False
                raise
            except Exception as exc:
                self.state.running = False
                self.state.restarts += 1
                self.state.last_error = f"{type(exc).__name__}: {exc}"[:500]
                delay = backoff * (0.5 + random.random())
                log.warning(
                    "RMU %d-%d failed (%s); restarting in %.1fs",
                    self.start_shard,
                    self.end_shard,
                    self.state.last_error,
                    delay,
                )
                await asyncio.sleep(delay)
                backoff = min(self.settings.max_backoff, backoff * 2)
            else:
                return

    async def _run(self) -> None:
        """One life of the loop. What it owes survives a restart after an error (an apply that
        failed gave nothing to the read model: its events are passed again)."""
        self._offsets = await self.read_model.load_offsets(
            self.projection, self.start_shard, self.end_shard
        )
        self.state.offset = max(self._offsets.values(), default=self.state.offset)
        if self._changes is None:  # the first life: catch up from the checkpoints
            changes = await self.journal.changes(None)
            now = time.monotonic()
            self._catch_up()
            self._notice(changes, now)
            self._next_poll = now + self.settings.poll_interval
            self._next_backstop = now + self._backstop_step()
        while True:
            now = time.monotonic()
            if now >= self._next_poll:
                await self._poll(now)
            if now >= self._next_backstop:
                self._backstop(now)
            worked = await self._round(now)
            if worked:
                continue
            st = self.state
            st.lag_events = self._continuity.held + len(self._fed)
            if not st.lag_events:
                st.lag_seconds = 0.0
            if not self._wake.is_set() and not self._continuity.held and not self._dropped:
                self._caught_up.set()
                self.caught_up_once = True
            waits = [
                self._next_poll,
                self._next_backstop,
                self._continuity.next_repair(),
                self._reads.next_due(),
            ]
            timeout = max(0.0, min(w for w in waits if w is not None) - time.monotonic())
            try:
                async with asyncio.timeout(timeout):  # not wait_for: see stop()
                    await self._wake.wait()
            except TimeoutError:
                continue
            self._wake.clear()
            if self.settings.coalesce > 0:
                await asyncio.sleep(self.settings.coalesce)

    def _catch_up(self) -> None:
        """Read the whole range after its checkpoints: what was written while no RMU of it ran
        (a start, a takeover). Where offsets are write times from several writers (DynamoDB), it
        starts `offset_slack` before each checkpoint, since an event can become visible behind
        an offset already reached; events applied before are dropped by sequence number."""
        for shard in range(self.start_shard, self.end_shard):
            self._reads.owe(shard, self._behind_checkpoint(shard))

    def _behind_checkpoint(self, shard: int) -> int:
        return max(0, self._offsets.get(shard, 0) - self.journal.offset_slack)

    async def _poll(self, now: float) -> None:
        """Ask the journal where other writers appended (one cheap call, whatever the number
        of shards: DynamoDB's change notes, SQLite's ordering)."""
        changes = await self.journal.changes(self._changes)
        self._notice(changes, now)
        self._next_poll = now + self.settings.poll_interval

    def _notice(self, changes: Changes, now: float) -> None:
        self._changes = changes.cursor
        if not changes.complete:
            log.info("RMU %d-%d: changes unknown for a while; reading the range", *self.range)
            self._catch_up()
        settle = self.settings.settle if self.journal.offset_slack else 0.0
        for shard, after in changes.shards.items():
            if self.start_shard <= shard < self.end_shard:
                self._reads.owe(shard, after)
                if settle:  # an eventually consistent index may not show it yet
                    self._reads.owe_later(now + settle, shard, after)

    def _backstop_step(self) -> float:
        return self.settings.backstop_period / max(1, self.end_shard - self.start_shard)

    def _backstop(self, now: float) -> None:
        """One shard of the range read after its checkpoint minus the slack, so that each is
        read once per `backstop_period`: the last resort for a writer that announces nothing
        (an older version during a rolling upgrade, a process killed between its write and its
        note). About S / backstop_period queries per second for S shards."""
        shard = self._backstop_next
        self._reads.owe(shard, self._behind_checkpoint(shard))
        self._backstop_next = shard + 1 if shard + 1 < self.end_shard else self.start_shard
        self._next_backstop = now + self._backstop_step()

    async def _round(self, now: float) -> bool:
        """Gather what can be applied now (events to pass again, repairs, one chunk of reads)
        and apply it in one read-model transaction. Returns False when there was nothing."""
        events = self._again
        self._again = []
        fed = self._fed
        for _ in range(min(len(fed), self.settings.batch_size)):
            events.append(fed.popleft())
        repairs = self._continuity.due_repairs(now, self.settings.repairs_per_round)
        if repairs:
            events += await self._repair(repairs)
        self._reads.promote(now)
        read = bool(self._reads)
        if read:
            events += await self._read_chunk()
        admitted = self._continuity.admit(events, time.monotonic())
        if admitted:
            await self._apply(admitted)
        return bool(events) or read or bool(self._fed)

    async def _repair(self, repairs: Sequence[tuple[str, int]]) -> list[StoredEvent]:
        """Each thread's events from its first missing seq: one read per thread, by sequence
        number, so neither the visibility order of an index nor an offset can hide them."""
        self.state.repairs += len(repairs)
        log.debug("RMU %d-%d: repairing gaps of %d threads", *self.range, len(repairs))
        results = await asyncio.gather(*(self.journal.read(pid, first) for pid, first in repairs))
        return [ev for events in results for ev in events]

    async def _read_chunk(self) -> list[StoredEvent]:
        chunk = self._reads.chunk(self.settings.sweep_chunk)
        started = time.monotonic()
        events = await self.journal.read_shard_set(list(chunk), chunk, self.settings.batch_size)
        for shard in self._reads.advance(chunk, events):
            dropped = self._dropped.get(shard)
            if dropped is not None and started >= dropped[1]:
                del self._dropped[shard]  # the dropped events are among what was read
        return events

    # -- applying ---------------------------------------------------------------------------
    async def _apply(self, events: list[StoredEvent]) -> None:
        """Apply `events` (admitted, in order) in one read-model transaction."""
        projected = self._checkpointed(project(events), events)
        traced = tracing.tracer()  # a span linked to the commands' spans (tracing.py)
        links = event_mapper.trace_contexts(events) if traced.enabled else ()
        try:
            with traced.span("project events", links=links):
                result = await self.read_model.apply(self.projection, projected)
        except BaseException:
            self._again = events + self._again  # nothing was applied: pass them again
            raise
        self._offsets.update(result.offsets)
        gaps = self._gap_pids(result, projected, events)
        self._again += self._continuity.applied(events, result.stalled, gaps, time.monotonic())
        self._record(events, result)
        if self.on_applied:
            self.on_applied(events)

    def _checkpointed(
        self, projected: list[ProjectedEvent], events: Sequence[StoredEvent]
    ) -> list[ProjectedEvent]:
        """The batch with the offsets its checkpoints may advance to. A checkpoint never goes
        back for events read again (below it) and never reaches an event the RMU knows but has
        not applied (held behind a gap, queued, to be passed again, dropped from the queue and
        not read yet) or an append of this process in flight: a restart reads from the
        checkpoint and must find those."""
        limits = self._continuity.held_floors()
        for pending in (self._again, self._fed):
            for ev in pending:
                if ev.offset < limits.get(ev.shard, ev.offset + 1):
                    limits[ev.shard] = ev.offset
        for shard, (offset, _) in self._dropped.items():
            limits[shard] = min(offset, limits.get(shard, offset))
        for shard in {ev.shard for ev in events}:
            floor = self.journal.in_flight_floor(shard)
            if floor is not None:
                limits[shard] = min(floor, limits.get(shard, floor))
        out = projected
        for i, (p, ev) in enumerate(zip(projected, events)):
            offset = max(p.offset, self._offsets.get(ev.shard, 0))
            limit = limits.get(ev.shard)
            if limit is not None:
                offset = min(offset, limit - 1)
            if offset != p.offset:
                if out is projected:
                    out = list(projected)
                out[i] = ProjectedEvent(p.thread_id, p.seq, p.shard, offset, p.operations)
        return out

    @staticmethod
    def _gap_pids(
        result: ApplyResult, projected: Sequence[ProjectedEvent], events: Sequence[StoredEvent]
    ) -> dict[str, int]:
        """ApplyResult.gaps (by thread id) by persistence id."""
        if not result.gaps:
            return {}
        pids = {p.thread_id: ev.pid for p, ev in zip(projected, events)}
        return {pids[tid]: seq for tid, seq in result.gaps.items() if tid in pids}

    def _record(self, events: Sequence[StoredEvent], result: ApplyResult) -> None:
        st = self.state
        st.applied += result.applied
        st.skipped += result.skipped
        if result.offsets:
            st.offset = max(st.offset, max(result.offsets.values()))
        if events and not result.stalled and not result.gaps:  # the whole batch is applied
            st.applied_offset = max(st.applied_offset, max(e.offset for e in events), st.offset)
        else:
            st.applied_offset = max(st.applied_offset, st.offset)
        newest = max(e.ts for e in events)
        st.last_applied_ts = max(st.last_applied_ts, newest)
        st.lag_seconds = max(0.0, time.time() - newest / 1e6)
        st.lag_events = self._continuity.held + len(self._again) + len(self._fed)
        st.last_error = None

    @property
    def offsets(self) -> Mapping[int, int]:
        """The checkpoints as last stored (tests)."""
        return dict(self._offsets)
