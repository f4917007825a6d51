"""Read-model updaters (RMUs): project the journal's events of a shard range into the read model.

An RMU keeps one offset per shard in the read model (committed with the rows). It reads batches
of its range after those offsets, decodes and projects them into row operations
(application/thread_projection.py) and has the read model apply them. When the local journal
reports an append in its range (push), it reads only the shards that append touched, which keeps
projection lag at one small read even where a read costs one query per shard (DynamoDB); a full
read of the range runs at start and every poll interval as a fallback (appends by other
processes, eventually consistent indexes). Errors restart the loop with exponential backoff; the
state (running, offset, lag, restarts, last error) is what a member reports in its Lease.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from . import event_mapper, tracing
from .ports import Journal, ReadModel, StoredEvent
from .settings import ProjectorSettings  # declared with the other settings; importable from here
from .thread_projection import project

log = logging.getLogger(__name__)

PROJECTION = "threads"


@dataclass(slots=True)
class ProjectorState:
    running: bool = False
    offset: int = 0  # highest offset applied in the range
    applied: int = 0
    skipped: int = 0
    lag_events: int = 0  # events read but not yet applied (a full batch = behind)
    lag_seconds: float = 0.0  # age of the newest applied event when last applied
    restarts: int = 0
    last_error: str | None = None
    last_applied_ts: int = 0


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
        self._offsets: dict[int, int] = {}
        self._dirty: set[int] = set()  # shards with pushed appends not read yet
        self._pushed: dict[int, int] = {}  # shard -> highest offset pushed
        self._caught_up = asyncio.Event()

    @property
    def range(self) -> tuple[int, int]:
        return self.start_shard, self.end_shard

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._unsubscribe = self.journal.subscribe(self._on_append)
        self._task = asyncio.create_task(
            self._supervise(), name=f"rmu-{self.start_shard}-{self.end_shard}"
        )

    async def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
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
        """Wait until a read of the range returned nothing new (tests, readiness)."""
        await asyncio.wait_for(self._caught_up.wait(), timeout)

    def _on_append(self, events: Sequence[StoredEvent]) -> None:
        for ev in events:
            if self.start_shard <= ev.shard < self.end_shard:
                self._dirty.add(ev.shard)
                if ev.offset > self._pushed.get(ev.shard, 0):
                    self._pushed[ev.shard] = ev.offset
        if self._dirty:
            self._caught_up.clear()
            self._wake.set()

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
        self._offsets = await self.read_model.load_offsets(
            self.projection, self.start_shard, self.end_shard
        )
        self.state.offset = max(self._offsets.values(), default=self.state.offset)
        sweep: _Sweep | None = self._new_sweep()  # start with a full read (catch-up)
        retry = 0.0  # > 0 while pushed events were not readable yet (lagging index)
        while True:
            self._wake.clear()
            dirty, self._dirty = sorted(self._dirty), set()
            # What was pushed before this read; an append during the read marks its shard dirty
            # again (normal path), it must not count as "not readable yet" (the retry path).
            targets = {s: self._pushed.get(s, 0) for s in dirty}
            # The dirty shards are scattered over the range (new threads land on random
            # shards): read them together and apply them in one read-model transaction.
            while dirty and len(await self._read_and_apply_set(dirty)) >= self.settings.batch_size:
                pass
            behind = {s for s in dirty if self._offsets.get(s, 0) < targets[s]}
            if behind:  # an eventually consistent index (or a gap): read them again soon
                self._dirty |= behind
                retry = min(self.settings.poll_interval, max(0.02, retry * 2))
            else:
                retry = 0.0
            if sweep is not None:
                # One chunk of the full read, then pushed shards again: a read that costs one
                # query per shard (DynamoDB) must not hold back what was just written.
                end = min(self.end_shard, sweep.next + self.settings.sweep_chunk)
                events = await self._read_and_apply(sweep.next, end, sweep.cursor)
                for ev in events:
                    sweep.cursor[ev.shard] = max(sweep.cursor.get(ev.shard, 0), ev.offset)
                if len(events) >= self.settings.batch_size:
                    self.state.lag_events = len(events)
                    continue  # more in this chunk
                sweep.next = end
                if end < self.end_shard:
                    continue
                sweep = None
            if self._dirty and not retry:
                continue
            if retry:
                await asyncio.sleep(retry)
                continue
            self.state.lag_events = 0
            self.state.lag_seconds = 0.0
            if not self._wake.is_set():  # no append arrived since this read
                self._caught_up.set()
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
            except TimeoutError:
                sweep = self._new_sweep()
                continue
            if self.settings.coalesce > 0:
                await asyncio.sleep(self.settings.coalesce)

    def _new_sweep(self) -> _Sweep:
        """A full read of the range. Where offsets are write times from several writers
        (DynamoDB), it starts `offset_slack` before each shard's offset, since an event can
        become visible behind an offset already reached; events applied before are skipped by
        their sequence number."""
        slack = self.journal.offset_slack
        return _Sweep(self.start_shard, {s: max(0, o - slack) for s, o in self._offsets.items()})

    async def _read_and_apply(
        self, start: int, end: int, after: dict[int, int]
    ) -> Sequence[StoredEvent]:
        """One batch of shards [start, end) after `after`; returns the events read."""
        events = await self.journal.read_shards(start, end, after, self.settings.batch_size)
        await self._apply(events)
        return events

    async def _read_and_apply_set(self, shards: list[int]) -> Sequence[StoredEvent]:
        """One batch of the given shards after their applied offsets; returns the events read."""
        events = await self.journal.read_shard_set(shards, self._offsets, self.settings.batch_size)
        await self._apply(events)
        return events

    async def _apply(self, events: Sequence[StoredEvent]) -> None:
        if events:
            traced = tracing.tracer()  # a span linked to the commands' spans (tracing.py)
            links = event_mapper.trace_contexts(events) if traced.enabled else ()
            with traced.span("project events", links=links):
                result = await self.read_model.apply(self.projection, project(events))
            self._offsets.update(result.offsets)
            self._record(events, result.applied, result.skipped, result.offsets)
            if self.on_applied:
                self.on_applied(events)

    def _record(
        self,
        events: Sequence[StoredEvent],
        applied: int,
        skipped: int,
        applied_offsets: Mapping[int, int],
    ) -> None:
        st = self.state
        st.applied += applied
        st.skipped += skipped
        if applied_offsets:
            st.offset = max(st.offset, max(applied_offsets.values()))
        newest = max(e.ts for e in events)
        st.last_applied_ts = max(st.last_applied_ts, newest)
        st.lag_seconds = max(0.0, time.time() - newest / 1e6)
        st.last_error = None


@dataclass(slots=True)
class _Sweep:
    next: int  # first shard of the next chunk
    cursor: dict[int, int]  # per shard: read after this offset
