"""The replay check: can this image's code read the journal? (`threadweaver replay-check`)

For each entity checked, every stored event is decoded through the event mapper (upcasting older
schema versions) and folded with the domain's `evolve`, as an entity does when it loads; its
snapshot, when it is of the current snapshot version, must decode and equal the fold of the
events up to its seq (a snapshot of another version is counted: entities replay past it). The
check stops at the first event (or snapshot) it cannot read and names it: pid, seq, type, error.

Which entities (`ReplayScope`):

- all: every entity of every shard;
- a sample of N: N entities spread over the shards. The shards are visited in strides (0, S/N,
  2S/N, ... first, then the shards in between), and each visited shard contributes its first
  ceil(N/S) entities in journal order (its oldest, the likeliest to hold old schema versions)
  until N are found; empty shards are passed over, so fewer than N are checked only when the
  journal holds fewer.

Entities are found by reading the shards' streams (`Journal.read_shard_set`), then read by pid
(`Journal.read`, strongly consistent). Pure application code: the journal is a port.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..domain import Thread, evolve
from .event_mapper import MAPPER, EventMapper
from .ports import Journal

SNAPSHOT = "snapshot"  # the `type` of a failure that is a snapshot's
_PAGE = 500


@dataclass(frozen=True, slots=True)
class ReplayScope:
    """All entities (`sample` None) or a sample of `sample` entities spread over the shards."""

    sample: int | None = 100

    def describe(self) -> str:
        return "all" if self.sample is None else f"sample of {self.sample}"


@dataclass(frozen=True, slots=True)
class Unreadable:
    """The first thing the check could not read: an event, or a snapshot (type `snapshot`)."""

    pid: str
    seq: int
    type: str
    error: str

    def to_json(self) -> dict[str, object]:
        return {"pid": self.pid, "seq": self.seq, "type": self.type, "error": self.error}

    def describe(self) -> str:
        return f"{self.pid} seq {self.seq} ({self.type}): {self.error}"


@dataclass(frozen=True, slots=True)
class ReplayReport:
    scope: str
    shards: int
    entities: int
    events: int
    snapshots: int  # snapshots checked against the fold
    snapshots_to_replay: int  # of another version: entities replay their events instead
    seconds: float
    failure: Unreadable | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "ok": self.ok,
            "scope": self.scope,
            "shards": self.shards,
            "entities": self.entities,
            "events": self.events,
            "snapshots": self.snapshots,
            "snapshotsToReplay": self.snapshots_to_replay,
            "seconds": round(self.seconds, 3),
        }
        if self.failure is not None:
            out["failure"] = self.failure.to_json()
        return out


def shard_order(shards: int, wanted: int) -> Iterator[int]:
    """Every shard once: the stride of `wanted` shards spread over all of them first."""
    step = max(1, shards // max(1, wanted))
    for start in range(step):
        yield from range(start, shards, step)


class _Counts:
    def __init__(self) -> None:
        self.entities = self.events = self.snapshots = self.to_replay = 0


async def _pids_of_shard(journal: Journal, shard: int, limit: int | None) -> list[str]:
    """The distinct pids of `shard` in journal order, at most `limit` (None: all)."""
    pids: dict[str, None] = {}
    after = 0
    while limit is None or len(pids) < limit:
        events = await journal.read_shard_set([shard], {shard: after}, _PAGE)
        if not events:
            break
        for e in events:
            pids.setdefault(e.pid)
            if limit is not None and len(pids) >= limit:
                break
        after = events[-1].offset
    return list(pids)


async def _check_entity(
    journal: Journal, mapper: EventMapper, pid: str, counts: _Counts
) -> Unreadable | None:
    snapshot = await journal.load_snapshot(pid)
    expected: Thread | None = None
    if snapshot is not None:
        if not mapper.schemas.snapshot_readable(snapshot.state):
            counts.to_replay += 1
            snapshot = None
        else:
            try:
                expected = mapper.thread_from_snapshot(snapshot.state)
            except Exception as exc:
                return Unreadable(pid, snapshot.seq, SNAPSHOT, _error(exc))
    state: Thread | None = None
    seq = 0
    for stored in await journal.read(pid):
        if stored.seq != seq + 1:
            return Unreadable(pid, seq + 1, "gap", f"seq {stored.seq} follows {seq}")
        try:
            state = evolve(state, mapper.to_domain(stored))
        except Exception as exc:
            return Unreadable(pid, stored.seq, stored.type, _error(exc))
        seq = stored.seq
        counts.events += 1
        if snapshot is not None and seq == snapshot.seq:
            counts.snapshots += 1
            if state != expected:
                return Unreadable(
                    pid,
                    seq,
                    SNAPSHOT,
                    "the snapshot differs from this image's replay of the events up to it "
                    "(if the fold changed, raise the snapshot version: event_schema.py)",
                )
    if snapshot is not None and snapshot.seq > seq:
        return Unreadable(pid, snapshot.seq, SNAPSHOT, f"snapshot beyond the last event ({seq})")
    counts.entities += 1
    return None


def _error(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def replay_check(
    journal: Journal,
    scope: ReplayScope,
    mapper: EventMapper = MAPPER,
    clock: Callable[[], float] = time.perf_counter,
) -> ReplayReport:
    """Check the entities of `scope` in a started journal; the first unreadable one ends it."""
    started = clock()
    counts = _Counts()
    failure: Unreadable | None = None
    wanted = scope.sample
    per_shard = None if wanted is None else max(1, math.ceil(wanted / journal.shards))
    for shard in shard_order(journal.shards, wanted or journal.shards):
        if wanted is not None and counts.entities >= wanted:
            break
        limit = (
            None
            if wanted is None or per_shard is None
            else min(per_shard, wanted - counts.entities)
        )
        for pid in await _pids_of_shard(journal, shard, limit):
            failure = await _check_entity(journal, mapper, pid, counts)
            if failure is not None:
                break
        if failure is not None:
            break
    return ReplayReport(
        scope.describe(),
        journal.shards,
        counts.entities,
        counts.events,
        counts.snapshots,
        counts.to_replay,
        clock() - started,
        failure,
    )
