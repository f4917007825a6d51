"""Projection lag per served range, measured from the journal's append notifications.

A read-model updater's own state (``ProjectorState.lag_seconds``) is the age of the newest
event it applied, taken when it applied it: while the read model is down nothing is applied, so
that figure stands still. This tracker listens to the journal's appends (``Journal.subscribe``)
and remembers, per served range and per notification, the highest offset written and the oldest
write time; entries whose offset the range's updater has reached (``ProjectorState.applied_offset``) are
applied. The lag is then the age of the oldest entry not applied yet, which keeps growing while
the read model is stalled, and 0 once the updater caught up.

Cost: per notification (one per SQLite group commit, one per DynamoDB append) a loop over its
events with a bisect when the member serves several ranges. Entries are dropped as the updater
applies them; behind a stalled read model at most :data:`MAX_ENTRIES` are kept per range, by
merging neighbours (a merged entry keeps the older write time: the lag is never under-stated).

Only this member's appends are seen: events another writer appended to a range this member
serves (around a handoff) are covered by the updater's own figures, which :meth:`ProjectionLag.of`
takes when they are larger. The collector (``/metrics``) and the member's Lease (through
``Member.lag_of``) both report :meth:`ProjectionLag.of`.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Sequence

from ..application.ports import StoredEvent
from ..application.projector import ProjectorState
from ..application.sharding import Member
from ..shards import RangeSet, ShardRange

MAX_ENTRIES = 256


class _Pending:
    """Appends of one range not applied yet: [highest offset, oldest write time (us), events]."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: deque[list[int]] = deque()

    def add(self, offset: int, ts: int, count: int) -> None:
        entries = self.entries
        entries.append([offset, ts, count])
        if len(entries) > MAX_ENTRIES:
            merged: deque[list[int]] = deque([entries[0]])
            rest = list(entries)[1:]
            for i in range(0, len(rest) - 1, 2):
                a, b = rest[i], rest[i + 1]
                merged.append([max(a[0], b[0]), min(a[1], b[1]), a[2] + b[2]])
            if len(rest) % 2:
                merged.append(rest[-1])
            self.entries = merged

    def drop_applied(self, applied_offset: int) -> None:
        entries = self.entries
        while entries and entries[0][0] <= applied_offset:
            entries.popleft()


class ProjectionLag:
    """Per served range: this member's appends that its read-model updater has not applied."""

    def __init__(self, member: Member) -> None:
        self._member = member
        self._serving: RangeSet | None = None
        self._starts: list[int] = []
        self._ranges: list[ShardRange] = []
        self._pending: dict[ShardRange, _Pending] = {}

    def on_append(self, events: Sequence[StoredEvent]) -> None:
        """The journal's listener (``Journal.subscribe``)."""
        serving = self._member.serving
        if serving is not self._serving:
            self._reindex(serving)
        ranges, starts = self._ranges, self._starts
        if not ranges:
            return
        touched: dict[int, list[int]] = {}
        single = ranges[0] if len(ranges) == 1 else None
        for ev in events:
            shard = ev.shard
            if single is not None:
                if not single.start <= shard < single.end:
                    continue
                i = 0
            else:
                i = bisect.bisect_right(starts, shard) - 1
                if i < 0 or shard >= ranges[i].end:
                    continue
            acc = touched.get(i)
            if acc is None:
                touched[i] = [ev.offset, ev.ts, 1]
            else:
                if ev.offset > acc[0]:
                    acc[0] = ev.offset
                if ev.ts < acc[1]:
                    acc[1] = ev.ts
                acc[2] += 1
        projectors = self._member.projectors
        for i, (offset, ts, count) in touched.items():
            rng = ranges[i]
            pending = self._pending.get(rng)
            if pending is None:
                pending = self._pending[rng] = _Pending()
            projector = projectors.get(rng)
            if projector is not None:
                pending.drop_applied(projector.state.applied_offset)
            pending.add(offset, ts, count)

    def _reindex(self, serving: RangeSet) -> None:
        self._serving = serving
        self._ranges = sorted(serving)
        self._starts = [r.start for r in self._ranges]
        for rng in [r for r in self._pending if r not in set(self._ranges)]:
            del self._pending[rng]

    def of(
        self, rng: ShardRange, state: ProjectorState, now: float | None = None
    ) -> tuple[float, int]:
        """(seconds, events) of the range: this member's appends its updater has not applied,
        or the updater's own figures when larger (other writers' events it read, held or queued):
        what /metrics and the member's Lease report."""
        seconds, events = self.lag(rng, state.applied_offset, now)
        return max(seconds, state.lag_seconds), max(events, state.lag_events)

    def lag(
        self, rng: ShardRange, applied_offset: int, now: float | None = None
    ) -> tuple[float, int]:
        """(seconds, events) of the range's appends not applied yet at ``applied_offset``."""
        pending = self._pending.get(rng)
        if pending is None:
            return 0.0, 0
        pending.drop_applied(applied_offset)
        if not pending.entries:
            return 0.0, 0
        now = time.time() if now is None else now
        oldest = pending.entries[0][1] / 1e6
        return max(0.0, now - oldest), sum(e[2] for e in pending.entries)
