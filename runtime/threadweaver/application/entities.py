"""Entity lifecycle: load, handle, persist, passivate (after Akka's persistent actors).

One in-memory entity per active thread. Commands to one entity run strictly one at a time (an
asyncio.Lock, FIFO); different entities run concurrently, which is what lets the journal batch
their appends into shared commits. State is rebuilt from the latest snapshot plus the events
after it. An append is conditional on the sequence number: a conflict means another writer got
there first (e.g. during a handoff), so the entity reloads and decides again.
Idle entities are passivated, and the number in memory is capped, so memory stays bounded.

Idempotency (application/idempotency.py): a command carrying `idempotency_key` has the key
recorded on its stored events' envelopes (metadata, application/event_mapper.py); each entity
keeps a bounded map of its recent keys, rebuilt on replay and kept in snapshots, and answers a
retried command with the events it appended the first time instead of deciding again.

Events and snapshots are read and written through the event mapper (application/event_mapper.py):
older schema versions are upcast, and a snapshot of another version than the current one is
ignored, the entity replaying its events from the start instead (`EntityStats.snapshots_ignored`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..domain import (
    Command,
    CreateThread,
    Event,
    Thread,
    decide,
    evolve,
    thread_persistence_id,
)
from . import event_mapper, idempotency, tracing
from .event_mapper import EventMapper, RequestMetadata
from .idempotency import IdempotencyKeyReused, RecentKeys, Recorded
from .ports import ConcurrencyConflict, Journal, JournalUnavailable, Snapshot
from .read_your_writes import Executed
from .settings import EntitySettings  # declared with the other settings; importable from here
from .stats import AppendStats, append_outcome

log = logging.getLogger(__name__)


@dataclass(slots=True)
class EntityStats:
    commands: int = 0
    rejected: int = 0
    conflicts: int = 0
    loads: int = 0
    events_replayed: int = 0
    snapshots_saved: int = 0
    snapshots_ignored: int = 0  # of another schema version: replayed from the events instead
    passivated: int = 0
    idempotent_replays: int = 0  # retried keyed commands answered from the journal
    load_seconds: float = 0.0  # time spent in loads (metrics: their mean)


class _Entity:
    __slots__ = ("last_used", "loaded", "lock", "pid", "recent", "seq", "snapshot_seq", "state")

    def __init__(self, pid: str) -> None:
        self.pid = pid
        self.state: Thread | None = None
        self.seq = 0
        self.lock = asyncio.Lock()
        self.last_used = time.monotonic()
        self.loaded = False
        self.snapshot_seq = 0
        self.recent: RecentKeys | None = None  # created with the first keyed command or replay


class EntityManager:
    """The local CommandGateway: runs commands on the entities of this process."""

    def __init__(
        self,
        journal: Journal,
        settings: EntitySettings = EntitySettings(),
        *,
        writer: str = "",
        mapper: EventMapper = event_mapper.MAPPER,
    ) -> None:
        self.journal = journal
        self.mapper = mapper
        self.settings = settings
        self.writer = writer
        self.stats = EntityStats()
        self.append_stats = AppendStats()  # the journal appends /metrics reports
        self._entities: OrderedDict[str, _Entity] = OrderedDict()
        self._sweeper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._entities)

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        if self.settings.passivate_after > 0:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="entity-passivation")

    async def close(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._entities.clear()

    # -- commands ---------------------------------------------------------------------------
    async def execute(self, command: Command) -> list[Event]:
        """The command's events, as an `Executed` carrying the thread's seq after it."""
        pid = thread_persistence_id(command.thread_id)
        while True:
            entity = self._entity(pid)
            async with entity.lock:
                if self._entities.get(pid) is not entity:
                    continue  # stopped while this command waited (handoff, passivation): redo
                return await self._handle(entity, command)

    async def _handle(self, entity: _Entity, command: Command) -> list[Event]:
        pid = entity.pid
        entity.last_used = time.monotonic()
        self.stats.commands += 1
        key = command.idempotency_key if self.settings.idempotency_keys > 0 else None
        digest = idempotency.request_hash(command) if key else ""
        if not entity.loaded:
            if isinstance(command, CreateThread) and not key:
                entity.loaded = True  # a fresh id: the conditional append checks it anyway
            else:  # (a keyed create's id is derived: it may exist already)
                await self._load(entity)
        for _ in range(self.settings.max_conflict_retries + 1):
            if key:
                recorded = await self._recorded(entity, command.account_id, key, digest)
                if recorded is not None:
                    return recorded
            try:
                events = decide(entity.state, command)
            except Exception:
                self.stats.rejected += 1
                raise
            if not events:
                return Executed(events, entity.seq)
            try:
                await self._persist(
                    entity, events, (command.account_id, key, digest) if key else None
                )
            except ConcurrencyConflict:
                self.stats.conflicts += 1
                await self._load(entity)
                continue
            return Executed(events, entity.seq)
        raise JournalUnavailable(f"{pid}: too many concurrent writers, try again")

    async def _recorded(
        self, entity: _Entity, account_id: str, key: str, digest: str
    ) -> Executed | None:
        """The events a keyed command appended before, read back from the journal; None if the
        key is unknown (or forgotten); IdempotencyKeyReused if it came with another request."""
        entry = entity.recent.get(account_id, key) if entity.recent is not None else None
        if entry is None:
            return None
        if entry.request_hash != digest:
            self.stats.rejected += 1
            raise IdempotencyKeyReused()
        stored = (await self.journal.read(entity.pid, entry.first_seq))[: entry.count]
        if [e.seq for e in stored] != list(range(entry.first_seq, entry.first_seq + entry.count)):
            raise JournalUnavailable(
                f"{entity.pid}: events {entry.first_seq}+{entry.count} of "
                "an idempotent command cannot be read back"
            )
        self.stats.idempotent_replays += 1
        return Executed([self.mapper.to_domain(e) for e in stored], stored[-1].seq)

    def _recent(self, entity: _Entity) -> RecentKeys:
        if entity.recent is None:
            entity.recent = RecentKeys(
                self.settings.idempotency_keys, self.settings.idempotency_window
            )
        return entity.recent

    async def _persist(
        self, entity: _Entity, events: list[Event], keyed: tuple[str, str, str] | None = None
    ) -> None:
        traced = tracing.tracer()  # the request's trace context goes on the envelopes
        trace_context = traced.trace_context() if traced.enabled else None
        metadata = None
        if keyed is not None or trace_context is not None:
            metadata = [
                RequestMetadata(
                    idempotency.meta(*keyed, i, len(events)) if keyed else None, trace_context
                )
                for i in range(len(events))
            ]
        new = self.mapper.to_new_events(events, metadata)
        # A caller that gives up (time-out) must not withdraw an append half-way: the journal's
        # `append_nowait` goes on when its awaiter is cancelled.
        started = time.perf_counter()
        try:
            with traced.span("journal append", attributes={"threadweaver.pid": entity.pid}):
                stored = await self.journal.append_nowait(
                    entity.pid, entity.seq, new, writer=self.writer
                )
        except asyncio.CancelledError:
            self.append_stats.done("abandoned", 0, 0.0)
            entity.loaded = False  # the outcome is unknown: reload before the next command
            raise
        except ConcurrencyConflict:
            self.append_stats.done("conflict", 0, 0.0)
            raise
        except BaseException as exc:
            self.append_stats.done(append_outcome(exc), 0, 0.0)
            entity.loaded = False
            raise
        self.append_stats.done("ok", len(new), time.perf_counter() - started)
        state = entity.state
        for e in events:
            state = evolve(state, e)
        entity.state = state
        if keyed is not None:
            ts = stored[0].ts if stored else idempotency.now_us()
            self._recent(entity).record(
                keyed[0], keyed[1], Recorded(keyed[2], entity.seq + 1, len(events), ts)
            )
        entity.seq += len(events)
        self._maybe_snapshot(entity)

    def _maybe_snapshot(self, entity: _Entity) -> None:
        if entity.state is None or not self.settings.snapshot_due(
            entity.seq - entity.snapshot_seq, entity.state.size
        ):
            return
        state = self.mapper.snapshot_state(entity.state)
        if entity.recent:
            state[idempotency.SNAPSHOT_KEY] = entity.recent.to_snapshot()
        snapshot = Snapshot(entity.pid, entity.seq, state)
        entity.snapshot_seq = entity.seq
        task = asyncio.create_task(self._save_snapshot(snapshot))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _save_snapshot(self, snapshot: Snapshot) -> None:
        try:
            await self.journal.save_snapshot(snapshot)
            self.stats.snapshots_saved += 1
        except Exception:  # an optimisation only: replay still works without it
            log.warning("snapshot of %s at %d failed", snapshot.pid, snapshot.seq, exc_info=True)

    async def _load(self, entity: _Entity) -> None:
        started = time.perf_counter()
        state, seq = None, 0
        keys = self.settings.idempotency_keys
        recent = RecentKeys(keys, self.settings.idempotency_window) if keys > 0 else None
        snapshot = (
            await self.journal.load_snapshot(entity.pid) if self.settings.snapshot_every else None
        )
        if snapshot is not None:
            # the Thread's dict, with our reserved key (ignored by Thread.from_snapshot) or not
            state = self.mapper.thread_from_snapshot(snapshot.state)
            if state is None:  # another schema version: replay from the first event
                log.info(
                    "snapshot of %s at %d is of schema %r: replaying its events instead",
                    entity.pid,
                    snapshot.seq,
                    snapshot.state.get("schema"),
                )
                self.stats.snapshots_ignored += 1
                snapshot = None
        if snapshot is not None:
            seq = snapshot.seq
            if recent is not None:
                recent.load_snapshot(snapshot.state.get(idempotency.SNAPSHOT_KEY))
        stored = await self.journal.read(entity.pid, seq + 1)
        for ev in stored:
            if ev.seq != seq + 1:
                raise JournalUnavailable(f"{entity.pid}: journal gap at seq {seq + 1}")
            state = evolve(state, self.mapper.to_domain(ev))
            if recent is not None and ev.metadata:
                recent.observe(ev.seq, ev.ts, event_mapper.idempotency_record(ev))
            seq = ev.seq
        if recent is not None:
            recent.prune()
        entity.recent = recent if recent else None
        entity.state, entity.seq, entity.loaded = state, seq, True
        entity.snapshot_seq = snapshot.seq if snapshot else 0
        self.stats.loads += 1
        self.stats.events_replayed += len(stored)
        self.stats.load_seconds += time.perf_counter() - started

    # -- memory -----------------------------------------------------------------------------
    def _entity(self, pid: str) -> _Entity:
        entity = self._entities.get(pid)
        if entity is None:
            entity = self._entities[pid] = _Entity(pid)
            if len(self._entities) > self.settings.max_entities:
                self._evict(len(self._entities) - self.settings.max_entities)
        else:
            self._entities.move_to_end(pid)
        return entity

    def _evict(self, count: int) -> None:
        for pid in list(itertools.islice(self._entities, count * 2)):  # oldest first, no full copy
            if count <= 0:
                break
            if not self._entities[pid].lock.locked():
                del self._entities[pid]
                self.stats.passivated += 1
                count -= 1

    def passivate_idle(self, now: float | None = None) -> int:
        """Stop entities idle for longer than the passivation timeout; returns how many."""
        now = time.monotonic() if now is None else now
        cutoff = now - self.settings.passivate_after
        idle = [
            pid for pid, e in self._entities.items() if e.last_used < cutoff and not e.lock.locked()
        ]
        for pid in idle:
            del self._entities[pid]
        self.stats.passivated += len(idle)
        return len(idle)

    async def _sweep_forever(self) -> None:
        interval = max(0.5, min(30.0, self.settings.passivate_after / 4))
        while True:
            await asyncio.sleep(interval)
            self.passivate_idle()

    async def stop_entities(self, predicate: Callable[[str], bool]) -> int:
        """Stop the entities whose pid matches, after their in-flight command (handoff)."""
        stopped = 0
        for pid in [p for p in self._entities if predicate(p)]:
            entity = self._entities.get(pid)
            if entity is None:
                continue
            async with entity.lock:
                if self._entities.get(pid) is entity:
                    del self._entities[pid]
                    stopped += 1
        return stopped
