"""Per-thread continuity for a read-model updater (application/projector.py).

The read model applies a thread's events strictly in sequence (application/projection.py): an
event after a gap stalls its whole shard. An RMU gets events from several places (its own
process's appends, index reads, repairs) in no guaranteed order, so before a batch goes to the
read model this module

- drops events the thread's row has already applied,
- passes the next run of consecutive events of each thread, and every event of a thread it does
  not know yet (the read model judges those),
- holds back the events behind a gap, so that one missing event never stalls the shard, and says
  when the gap is due to be repaired: by reading the thread's missing events from the journal by
  sequence number (one bounded read, independent of any offset or index).

It learns each thread's applied sequence number from the results of the batches (a bounded,
least recently used map). Pure bookkeeping: no I/O, no clock (callers pass `now`).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .ports import StoredEvent


def event_order(ev: StoredEvent) -> tuple[int, str, int]:
    """The order of a batch: the journal's (offset, pid, seq)."""
    return ev.offset, ev.pid, ev.seq


@dataclass(slots=True)
class _Gap:
    since: float  # when the gap was first seen
    due: float  # when to read the thread's missing events (again)
    attempts: int = 0


class Continuity:
    """What an RMU knows of each thread's progress, and the events it holds behind gaps."""

    def __init__(
        self, capacity: int = 65_536, repair_after: float = 0.1, max_repair_delay: float = 5.0
    ) -> None:
        self.capacity = capacity
        self.repair_after = repair_after
        self.max_repair_delay = max_repair_delay
        self._known: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._held: dict[str, dict[int, StoredEvent]] = {}
        self._gaps: dict[str, _Gap] = {}
        self.repairs = 0  # repair reads handed out (metrics and tests)

    # -- what goes to the read model ---------------------------------------------------------
    def admit(self, events: Iterable[StoredEvent], now: float) -> list[StoredEvent]:
        """The events of `events` (and the held ones they unblock) that may be applied now, in
        the journal's order; the rest are dropped (applied already) or held (behind a gap)."""
        by_pid: dict[str, dict[int, StoredEvent]] = {}
        for ev in events:
            by_pid.setdefault(ev.pid, {})[ev.seq] = ev
        out: list[StoredEvent] = []
        for pid, new in by_pid.items():
            held = self._held.pop(pid, None)
            evs = {**held, **new} if held else new
            seqs = sorted(evs)
            known = self._known.get(pid)
            # A thread not known yet: its first event here starts the run; the read model says
            # whether that was its next one (ApplyResult.gaps when it was not).
            applied = seqs[0] - 1 if known is None else known
            rest: dict[int, StoredEvent] = {}
            following = applied + 1
            for seq in seqs:
                if seq <= applied:
                    continue
                if seq == following and not rest:
                    out.append(evs[seq])
                    following += 1
                else:
                    rest[seq] = evs[seq]
            self._hold(pid, rest, now)
        out.sort(key=event_order)
        return out

    def _hold(self, pid: str, rest: dict[int, StoredEvent], now: float) -> None:
        if not rest:
            self._gaps.pop(pid, None)
            return
        self._held[pid] = rest
        if pid not in self._gaps:
            self._gaps[pid] = _Gap(since=now, due=now + self.repair_after)

    def applied(
        self,
        events: Iterable[StoredEvent],
        stalled: Iterable[int],
        gaps: Mapping[str, int],
        now: float,
    ) -> list[StoredEvent]:
        """Learn from the result of applying `events` (as admitted). `gaps`: pid -> the seq its
        row has, for the threads whose gap stalled a shard (`stalled`). Returns the events to
        pass again: those of stalled shards that are not behind a gap (the read model stopped
        the shard before them, or applied them: then they are skipped next time)."""
        stalled = set(stalled)
        again: list[StoredEvent] = []
        behind: dict[str, dict[int, StoredEvent]] = {}
        for ev in events:
            if ev.shard not in stalled:
                self._learn(ev.pid, ev.seq)
            elif ev.pid in gaps:
                if ev.seq > gaps[ev.pid]:
                    behind.setdefault(ev.pid, {})[ev.seq] = ev
            else:
                again.append(ev)
        for pid, seq in gaps.items():
            self._known[pid] = seq
            self._known.move_to_end(pid)
            rest = {**self._held.pop(pid, {}), **behind.get(pid, {})}
            self._hold(pid, {s: e for s, e in rest.items() if s > seq}, now)
        self._evict()
        return again

    def _learn(self, pid: str, seq: int) -> None:
        known = self._known.get(pid, 0)
        self._known[pid] = max(known, seq)
        self._known.move_to_end(pid)

    def _evict(self) -> None:
        known = self._known
        while len(known) > self.capacity:
            pid = next(iter(known))
            if pid in self._held:  # a thread behind a gap keeps what it knows
                known.move_to_end(pid)
                if len(self._held) >= len(known):
                    return
                continue
            del known[pid]

    # -- repairs -----------------------------------------------------------------------------
    def due_repairs(self, now: float, limit: int) -> list[tuple[str, int]]:
        """Up to `limit` threads whose gap is due to be repaired: (pid, first missing seq).
        Each is due again later (backing off) unless the events it gets fill the gap."""
        out: list[tuple[str, int]] = []
        for pid, gap in self._gaps.items():
            if gap.due > now:
                continue
            held = self._held.get(pid)
            if not held:
                continue
            known = self._known.get(pid)
            first = (known if known is not None else min(held) - 1) + 1
            out.append((pid, first))
            gap.attempts += 1
            delay = self.repair_after * (2**gap.attempts)
            gap.due = now + min(self.max_repair_delay, delay)
            self.repairs += 1
            if len(out) >= limit:
                break
        return out

    def next_repair(self) -> float | None:
        """When the earliest gap is due (None: no gap)."""
        return min((g.due for g in self._gaps.values()), default=None)

    # -- what the checkpoint must not pass ---------------------------------------------------
    def held_floors(self) -> dict[int, int]:
        """Per shard, the lowest offset of an event held behind a gap."""
        floors: dict[int, int] = {}
        for held in self._held.values():
            for ev in held.values():
                if ev.offset < floors.get(ev.shard, ev.offset + 1):
                    floors[ev.shard] = ev.offset
        return floors

    @property
    def held(self) -> int:
        """Events held behind gaps."""
        return sum(len(h) for h in self._held.values())

    def oldest_gap(self, now: float) -> float:
        """Seconds the oldest gap has been open (0: none)."""
        return max((now - g.since for g in self._gaps.values()), default=0.0)

    def known_seq(self, pid: str) -> int | None:
        return self._known.get(pid)
