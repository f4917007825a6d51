"""A read model built from the journal, from its checkpoints to the journal's head
(`threadweaver project`, runtime/threadweaver/project_command.py).

Unlike an RMU (application/projector.py), which follows a range for good, a build reads each
shard of its set in turn, from its checkpoint (minus `Journal.offset_slack`) to the end, and
stops once a whole pass over the set left it close enough to the journal's head:

- **Passes.** A pass reads every shard, page by page, until the journal has nothing more after
  its cursor. Events appended to a shard after the pass read it are for the next pass, so at
  the end of a pass nothing older than the pass's duration is unapplied: the pass's duration
  bounds the lag. A pass that applied nothing means caught up (lag 0); `until_lag` (seconds)
  accepts a last pass at most that long.
- **Batches.** Pages of several shards are gathered into batches of `batch_size` events,
  applied in one read-model transaction each, with the shards' checkpoints (the read model's
  `projection_offset` rows, as the RMUs keep them): a build killed at any point resumes from
  them, and applying again what was applied before is skipped by sequence number
  (application/projection.py). Reading the next batch overlaps applying this one.
- **Gaps.** An event after a missing one of its thread (offsets that are write times from
  several clocks can order a thread's events out of sequence) stops its shard in that batch;
  the thread's missing events are read by sequence number and applied without moving the
  checkpoint, then the batch again, before the next one, so a checkpoint never passes an
  event that is not applied.

Only ports are used: whatever the journal and the read model, it writes nothing but the read
model it builds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..domain.ids import thread_persistence_id
from .ports import ApplyResult, Journal, ReadModel, StoredEvent
from .projector import PROJECTION
from .row_operations import ProjectedEvent
from .thread_projection import project

__all__ = ["BuildError", "BuildProgress", "BuildSettings", "ProjectionBuild", "estimate_eta"]

#: rounds of gap repair of one batch before the build gives up (each makes progress)
MAX_REPAIR_ROUNDS = 16


class BuildError(Exception):
    """The build cannot go on (an event missing from the journal, an undecodable event)."""


@dataclass(frozen=True, slots=True)
class BuildSettings:
    batch_size: int = 2000  # events per read-model transaction
    page_size: int = 2000  # events per journal read of one shard
    #: stop after a pass at most this long (seconds): the lag it leaves; 0: until a pass finds
    #: nothing new
    until_lag: float = 1.0
    read_ahead: int = 2  # batches read while one is applied


@dataclass(slots=True)
class BuildProgress:
    """Where a build stands (what progress reports and the summary show)."""

    shards: int  # shards of the set
    started_at: float  # clock() at the start
    applied: int = 0  # events applied to the read model
    skipped: int = 0  # events read again and skipped (applied before)
    passes: int = 0  # passes started
    shards_done: int = 0  # shards of the current pass read to the end
    pass_applied: int = 0  # events applied in the current pass
    pass_started_at: float = 0.0
    #: the shard being read: the write time (epoch s) of its first event read, of its latest one
    shard_first_ts: float | None = None
    shard_latest_ts: float | None = None
    resumed: bool = False  # checkpoints existed at the start
    lag_seconds: float | None = None  # once a pass finished: the lag it leaves at most
    done: bool = False
    repairs: int = 0  # threads whose missing events were read by sequence number
    checkpoints: dict[int, int] = field(default_factory=dict)

    def pass_fraction(self, now: float) -> float:
        """The fraction of the current pass done: whole shards, and of the shard being read the
        share of its history (by write time, from its first event read to the pass's start)."""
        if self.shards <= 0:
            return 1.0
        partial = 0.0
        first, latest = self.shard_first_ts, self.shard_latest_ts
        if first is not None and latest is not None:
            span = self.pass_started_at - first
            partial = min(1.0, max(0.0, (latest - first) / span)) if span > 0 else 0.0
        return min(1.0, (self.shards_done + partial) / self.shards)

    def events_per_second(self, now: float) -> float:
        elapsed = now - self.started_at
        return (self.applied + self.skipped) / elapsed if elapsed > 0 else 0.0

    def eta_seconds(self, now: float) -> float | None:
        """Seconds left in the current pass (the first one holds nearly all the work); None
        until there is something to extrapolate from."""
        if self.done:
            return 0.0
        return estimate_eta(self.pass_fraction(now), now - self.pass_started_at)


def estimate_eta(fraction: float, elapsed: float) -> float | None:
    """Time left for a job `fraction` done after `elapsed` seconds, at the same pace."""
    if fraction <= 0.0 or elapsed <= 0.0:
        return None
    return max(0.0, elapsed * (1.0 - fraction) / fraction)


class ProjectionBuild:
    """Build the read model of `shards` (sorted shard numbers) from the journal."""

    def __init__(
        self,
        journal: Journal,
        read_model: ReadModel,
        shards: Sequence[int],
        settings: BuildSettings = BuildSettings(),
        *,
        projection: str = PROJECTION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal
        self.read_model = read_model
        self.shards = sorted(set(shards))
        self.settings = settings
        self.projection = projection
        self.clock = clock
        self.progress = BuildProgress(shards=len(self.shards), started_at=clock())
        self._checkpoints: dict[int, int] = {}  # as stored in the read model
        self._cursors: dict[int, int] = {}  # where the next pass reads each shard after

    async def run(self) -> BuildProgress:
        """Pass after pass until caught up (see the module docstring); the final progress."""
        await self._load_checkpoints()
        progress = self.progress
        slack = self.journal.offset_slack
        self._cursors = {s: max(0, self._checkpoints.get(s, 0) - slack) for s in self.shards}
        while True:
            progress.passes += 1
            progress.shards_done = 0
            progress.pass_applied = 0
            progress.pass_started_at = self.clock()
            await self._pass()
            lag = 0.0 if not progress.pass_applied else self.clock() - progress.pass_started_at
            progress.lag_seconds = lag
            if lag == 0.0 or lag <= self.settings.until_lag:
                break
        progress.done = True
        return progress

    async def _load_checkpoints(self) -> None:
        for start, end in _runs(self.shards):
            self._checkpoints.update(
                await self.read_model.load_offsets(self.projection, start, end)
            )
        self.progress.resumed = bool(self._checkpoints)
        self.progress.checkpoints = self._checkpoints

    # -- one pass ---------------------------------------------------------------------------
    async def _pass(self) -> None:
        """Read (and project) the next batches while the current one is applied."""
        batches: asyncio.Queue[list[ProjectedEvent] | Exception | None] = asyncio.Queue(
            max(1, self.settings.read_ahead)
        )
        reader = asyncio.create_task(self._read_pass(batches), name="projection-build-reader")
        try:
            while True:
                batch = await batches.get()
                if batch is None:
                    break
                if isinstance(batch, Exception):
                    raise batch
                await self._apply(batch)
            await reader
        finally:
            if not reader.done():
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _read_pass(
        self, batches: asyncio.Queue[list[ProjectedEvent] | Exception | None]
    ) -> None:
        """Every shard of the set read to its end, in batches of projected events; an error
        ends the queue (the writer raises it)."""
        try:
            await self._read_shards(batches)
        except Exception as exc:
            await batches.put(exc)
            return
        await batches.put(None)

    async def _read_shards(
        self, batches: asyncio.Queue[list[ProjectedEvent] | Exception | None]
    ) -> None:
        s, progress, journal = self.settings, self.progress, self.journal
        exact = journal.offset_slack == 0  # a short page is the end of the shard
        buffer: list[StoredEvent] = []
        for shard in self.shards:
            after = self._cursors[shard]
            progress.shard_first_ts = progress.shard_latest_ts = None
            while True:
                page = await journal.read_shard_set([shard], {shard: after}, s.page_size)
                if not page:
                    break
                if progress.shard_first_ts is None:
                    progress.shard_first_ts = page[0].ts / 1e6
                progress.shard_latest_ts = page[-1].ts / 1e6
                after = page[-1].offset  # a journal never splits events sharing an offset
                buffer += page
                if len(buffer) >= s.batch_size:
                    await batches.put(_projected(buffer))
                    buffer = []
                if exact and len(page) < s.page_size:
                    break
            self._cursors[shard] = after
            progress.shards_done += 1
        progress.shard_first_ts = progress.shard_latest_ts = None
        if buffer:
            await batches.put(_projected(buffer))

    # -- applying ---------------------------------------------------------------------------
    async def _apply(self, batch: list[ProjectedEvent]) -> None:
        projected = self._pinned(batch)
        result = await self.read_model.apply(self.projection, projected)
        rounds = 0
        while result.stalled or result.gaps:
            rounds += 1
            if rounds > MAX_REPAIR_ROUNDS:
                raise BuildError(f"gaps in threads {sorted(result.gaps)} not repaired")
            await self._repair(result.gaps)
            result = await self.read_model.apply(self.projection, projected)
        self._record(result)

    def _pinned(
        self, projected: list[ProjectedEvent], *, keep: bool = False
    ) -> list[ProjectedEvent]:
        """The batch with offsets that never move a checkpoint back (events read again behind
        it, within the journal's slack); with `keep`, offsets that do not move it at all (a
        thread's missing events, applied out of their shard's order)."""
        if not keep and not self.journal.offset_slack:
            return projected  # read after the checkpoints: every offset is above them
        checkpoints = self._checkpoints
        out = projected
        for i, p in enumerate(projected):
            stored = checkpoints.get(p.shard, 0)
            offset = stored if keep else max(p.offset, stored)
            if offset != p.offset:
                if out is projected:
                    out = list(projected)
                out[i] = ProjectedEvent(p.thread_id, p.seq, p.shard, offset, p.operations)
        return out

    async def _repair(self, gaps: Mapping[str, int]) -> None:
        """Apply each gap thread's events from the one its row misses, read by sequence number;
        the checkpoints stay where they are (the batch is applied again afterwards)."""
        for thread_id, stored_seq in sorted(gaps.items()):
            missing = await self.journal.read(thread_persistence_id(thread_id), stored_seq + 1)
            if not missing or missing[0].seq != stored_seq + 1:
                raise BuildError(
                    f"thread {thread_id}: event {stored_seq + 1} is not in the journal, "
                    "yet a later one is"
                )
            self.progress.repairs += 1
            projected = self._pinned(_projected(missing), keep=True)
            self._record(await self.read_model.apply(self.projection, projected))

    def _record(self, result: ApplyResult) -> None:
        progress = self.progress
        progress.applied += result.applied
        progress.pass_applied += result.applied
        progress.skipped += result.skipped
        for shard, offset in result.offsets.items():
            if offset > self._checkpoints.get(shard, 0):
                self._checkpoints[shard] = offset


def _projected(events: Sequence[StoredEvent]) -> list[ProjectedEvent]:
    try:
        return project(events)
    except ValueError as exc:
        raise BuildError(f"an event of the journal cannot be decoded: {exc}") from exc


def _runs(shards: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted shard numbers as half-open runs [start, end)."""
    runs: list[tuple[int, int]] = []
    for shard in shards:
        if runs and runs[-1][1] == shard:
            runs[-1] = (runs[-1][0], shard + 1)
        else:
            runs.append((shard, shard + 1))
    return runs
