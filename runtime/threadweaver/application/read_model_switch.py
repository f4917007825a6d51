"""A member's read models during a rebuild (docs/architecture.md, "Rebuilding the read model in
a cluster"; the stages are in threadweaver.shards.readmodel).

`SwitchableReadModel` is the ReadModel port a member hands to its HTTP API and its RMUs: queries
go to one database (`queries_database`), the RMUs' reads and writes of checkpoints and rows to
another or the same one (`rmus_database`), and either can move while the member serves.

`ReadModelSwitch` carries out the operator's directives for one member: it opens the databases
it names (through a `ReadModelOpener`: same server, same credentials), runs the shadow RMUs of
the catch-up stage, records what the previous database had reached when the RMUs move in the
handover stage, moves the queries at the directive's `switch_at`, and measures the target's
progress for the member's report. The member (application/sharding.py) stops and starts its own
RMUs around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from ..shards import RangeSet, ReadModelDirective, ReadModelReport, ShardRange
from .ports import ApplyResult, Journal, MessagePage, MessageView, ReadModel, ThreadView
from .projector import PROJECTION, Projector
from .row_operations import ProjectedEvent
from .settings import ProjectorSettings

log = logging.getLogger(__name__)

__all__ = ["ReadModelOpener", "ReadModelSwitch", "SwitchableReadModel"]

ReadModelOpener = Callable[[str], Awaitable[ReadModel]]
"""Opens (starts, does not migrate) the read model of a database of the same server."""

#: the target is caught up when it is at most this far behind the journal (seconds)
CAUGHT_UP_WITHIN = 1.0
#: how often the target's progress is measured (seconds)
MONITOR_EVERY = 1.0
#: how long a database no longer used stays open (queries started before a switch finish)
RETIRE_AFTER = 30.0


class SwitchableReadModel:
    """The ReadModel port over two delegates: one for queries, one for the RMUs."""

    def __init__(self, initial: ReadModel, database: str) -> None:
        self._queries = self._rmus = initial
        self.queries_database = self.rmus_database = database
        self.initial = initial

    def use_for_queries(self, read_model: ReadModel, database: str) -> None:
        self._queries, self.queries_database = read_model, database

    def use_for_rmus(self, read_model: ReadModel, database: str) -> None:
        self._rmus, self.rmus_database = read_model, database

    @property
    def for_queries(self) -> ReadModel:
        return self._queries

    @property
    def for_rmus(self) -> ReadModel:
        return self._rmus

    # lifecycle: of the database the process was started with (ReadModelSwitch closes others)
    async def start(self) -> None:
        await self.initial.start()

    async def close(self) -> None:
        await self.initial.close()

    async def migrate(self) -> None:
        await self.initial.migrate()

    # projection side
    async def load_offsets(self, projection: str, start: int, end: int) -> dict[int, int]:
        return await self._rmus.load_offsets(projection, start, end)

    async def apply(self, projection: str, events: Sequence[ProjectedEvent]) -> ApplyResult:
        return await self._rmus.apply(projection, events)

    # query side
    async def get_thread(self, thread_id: str, account_id: str) -> ThreadView | None:
        return await self._queries.get_thread(thread_id, account_id)

    async def list_threads(self, account_id: str, offset: int, limit: int) -> list[ThreadView]:
        return await self._queries.list_threads(account_id, offset, limit)

    async def list_administrator_ids(
        self, thread_id: str, account_id: str, offset: int, limit: int
    ) -> list[str] | None:
        return await self._queries.list_administrator_ids(thread_id, account_id, offset, limit)

    async def list_member_ids(
        self, thread_id: str, account_id: str, offset: int, limit: int
    ) -> list[str] | None:
        return await self._queries.list_member_ids(thread_id, account_id, offset, limit)

    async def list_messages(
        self, thread_id: str, account_id: str, offset: int, limit: int
    ) -> list[MessageView] | None:
        return await self._queries.list_messages(thread_id, account_id, offset, limit)

    async def list_messages_page(
        self, thread_id: str, account_id: str, after: int | None, offset: int, limit: int
    ) -> MessagePage | None:
        return await self._queries.list_messages_page(thread_id, account_id, after, offset, limit)

    async def ping(self) -> None:
        await self._queries.ping()


class ReadModelSwitch:
    """One member's side of the rebuild protocol (see the module docstring)."""

    def __init__(
        self,
        read_model: SwitchableReadModel,
        opener: ReadModelOpener,
        journal: Journal,
        projector_settings: ProjectorSettings,
        view: Callable[[], tuple[RangeSet, Mapping[ShardRange, Projector]]],
        on_change: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.read_model = read_model
        self.opener = opener
        self.journal = journal
        self.projector_settings = projector_settings
        self.view = view  # the member's served ranges and its RMUs
        self.on_change = on_change  # publishes the member's status when the report changes
        self.clock = clock
        self.directive: ReadModelDirective | None = None
        self.shadows: dict[ShardRange, Projector] = {}
        self.shadow_database: str | None = None
        self.floors: dict[int, int] = {}  # the previous database's checkpoints at the handover
        self._floors_pending: set[ShardRange] = set()  # ranges whose floors are not read yet
        self._open: dict[str, ReadModel] = {read_model.rmus_database: read_model.initial}
        self._progress: tuple[int, float | None, bool] = (0, None, False)
        self._monitor: asyncio.Task[None] | None = None
        self._query_switch: asyncio.Task[None] | None = None
        self._retiring: dict[str, asyncio.Task[None]] = {}

    async def database(self, name: str) -> ReadModel:
        """The read model of database ``name``, opened once."""
        retiring = self._retiring.pop(name, None)
        if retiring is not None:
            retiring.cancel()
        if name not in self._open:
            self._open[name] = await self.opener(name)
        return self._open[name]

    def rmus_move(self, directive: ReadModelDirective) -> bool:
        """Whether the RMUs must move to another database (the member stops them first)."""
        return directive.rmu_database != self.read_model.rmus_database

    async def move_rmus(self, directive: ReadModelDirective, shards: int) -> None:
        """Point the RMUs at the directive's database (the member's RMUs are stopped). Entering
        the handover, remember the checkpoints the previous database reached: the target must
        pass them before the member reports ``handedOver``."""
        previous = self.read_model.for_rmus
        target = directive.rmu_database
        self._floors_pending.clear()
        if directive.stage == "handover":
            self.floors = await previous.load_offsets(PROJECTION, 0, shards)
        else:
            self.floors = {}
        log.info("read model: RMUs %s -> %s", self.read_model.rmus_database, target)
        self.read_model.use_for_rmus(await self.database(target), target)

    async def ranges_started(self, ranges: Sequence[ShardRange]) -> None:
        """RMUs started for ``ranges`` (a takeover) during the handover: their floors are the
        previous database's checkpoints now. Their previous owner stopped writing it before it
        gave them up (it applied the handover directive, published with or before the map)."""
        d = self.directive
        if d is None or d.stage != "handover" or not ranges:
            return
        self._floors_pending.update(ranges)
        try:
            await self._load_pending_floors(d.serving)
        except Exception as exc:  # the old database unreachable: not handed over until read
            log.warning("read model: reading the previous checkpoints failed (%s)", exc)

    async def _load_pending_floors(self, database: str) -> None:
        previous = await self.database(database)
        for rng in sorted(self._floors_pending):
            self.floors.update(await previous.load_offsets(PROJECTION, rng.start, rng.end))
            self._floors_pending.discard(rng)

    async def apply(self, directive: ReadModelDirective, serving: RangeSet) -> None:
        """Adopt ``directive`` (after :meth:`move_rmus` if it moved them)."""
        self.directive = directive
        if self.shadow_database != directive.shadow_database:
            await self._stop_shadows()
            self.shadow_database = directive.shadow_database
        await self.reconcile_shadows(serving)
        await self._move_queries(directive)
        if directive.target is not None and self._monitor is None:
            self._monitor = asyncio.create_task(self._monitor_loop(), name="read-model-monitor")
        elif directive.target is None and self._monitor is not None:
            self._monitor.cancel()
            self._monitor = None
            self._progress = (0, None, False)
        self._retire_unused()

    async def reconcile_shadows(self, serving: RangeSet) -> None:
        """One shadow RMU per served range on the catch-up stage's target, none otherwise."""
        wanted = set(serving) if self.shadow_database else set()
        for rng in [r for r in self.shadows if r not in wanted]:
            await self.shadows.pop(rng).stop()
        if not wanted or self.shadow_database is None:
            return
        target = await self.database(self.shadow_database)
        for rng in wanted - set(self.shadows):
            shadow = Projector(self.journal, target, rng.start, rng.end, self.projector_settings)
            self.shadows[rng] = shadow
            shadow.start()

    async def _stop_shadows(self) -> None:
        for shadow in self.shadows.values():
            await shadow.stop()
        self.shadows.clear()

    async def _move_queries(self, directive: ReadModelDirective) -> None:
        if self._query_switch is not None:
            self._query_switch.cancel()
            self._query_switch = None
        if directive.serving == self.read_model.queries_database:
            return
        target = await self.database(directive.serving)
        delay = (directive.switch_at or 0.0) - self.clock()
        if delay <= 0:
            self._switch_queries(target, directive.serving)
        else:
            self._query_switch = asyncio.create_task(
                self._switch_queries_later(delay, target, directive.serving),
                name="read-model-query-switch",
            )

    async def _switch_queries_later(self, delay: float, target: ReadModel, name: str) -> None:
        await asyncio.sleep(delay)
        self._query_switch = None
        self._switch_queries(target, name)
        self._retire_unused()

    def _switch_queries(self, target: ReadModel, name: str) -> None:
        log.info("read model: queries %s -> %s", self.read_model.queries_database, name)
        self.read_model.use_for_queries(target, name)

    def _retire_unused(self) -> None:
        """Close, after a grace period, the databases nobody uses any more (never the one the
        process was started with: the runtime closes that one)."""
        used = {
            self.read_model.queries_database,
            self.read_model.rmus_database,
            self.shadow_database,
        }
        if self.directive is not None:
            used |= {self.directive.serving, self.directive.target}
        for name, read_model in list(self._open.items()):
            if name in used or read_model is self.read_model.initial or name in self._retiring:
                continue
            self._retiring[name] = asyncio.create_task(self._retire(name), name=f"retire-{name}")

    async def _retire(self, name: str) -> None:
        await asyncio.sleep(RETIRE_AFTER)
        self._retiring.pop(name, None)
        read_model = self._open.pop(name, None)
        if read_model is not None:
            await read_model.close()

    async def close(self) -> None:
        for task in (self._monitor, self._query_switch, *self._retiring.values()):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._monitor = self._query_switch = None
        self._retiring.clear()
        await self._stop_shadows()
        for read_model in self._open.values():
            if read_model is not self.read_model.initial:
                await read_model.close()
        self._open = {self.read_model.rmus_database: self.read_model.initial}

    # -- progress ---------------------------------------------------------------------------
    def report(
        self, serving: RangeSet, projectors: Mapping[ShardRange, Projector]
    ) -> ReadModelReport:
        rm, d = self.read_model, self.directive
        base = ReadModelReport(queries=rm.queries_database, rmus=rm.rmus_database)
        if d is None or d.target is None:
            return base
        shards = serving.count()
        caught_up, lag, handed_over = self._progress
        if d.stage == "catch-up":
            caught_up, lag = self._shadow_progress(serving)
        return ReadModelReport(
            queries=base.queries,
            rmus=base.rmus,
            target=d.target,
            stage=d.stage,
            shards=shards,
            caught_up=min(caught_up, shards),
            lag_seconds=lag,
            handed_over=handed_over and d.stage == "handover" and not self._floors_pending,
        )

    def _shadow_progress(self, serving: RangeSet) -> tuple[int, float | None]:
        """Shards whose shadow RMU read everything once and applies within a second."""
        caught_up = 0
        lags: list[float | None] = []
        for rng in serving:
            shadow = self.shadows.get(rng)
            if shadow is None or not shadow.is_alive or not shadow.caught_up_once:
                lags.append(None)
                continue
            lags.append(shadow.state.lag_seconds)
            if shadow.state.running and shadow.state.lag_seconds <= CAUGHT_UP_WITHIN:
                caught_up += rng.end - rng.start
        known = [lag for lag in lags if lag is not None]
        lag = max(known) if known and len(known) == len(lags) else None
        return caught_up, lag

    async def measure(self, serving: RangeSet, projectors: Mapping[ShardRange, Projector]) -> None:
        """Measure the target's progress: in the fill stage its checkpoints against the RMUs';
        in the handover stage whether the RMUs (now on the target) passed ``floors``."""
        d = self.directive
        if d is None or d.target is None:
            return
        if d.stage == "fill":
            target = await self.database(d.target)
            within = CAUGHT_UP_WITHIN * 1e6 if self.journal.offset_slack else 0.0
            caught_up, lag = 0, 0.0
            for rng in serving:
                theirs = await target.load_offsets(PROJECTION, rng.start, rng.end)
                projector = projectors.get(rng)
                ours = projector.offsets if projector is not None else {}
                for shard in range(rng.start, rng.end):
                    behind = ours.get(shard, 0) - theirs.get(shard, 0)
                    caught_up += behind <= within
                    lag = max(lag, behind / 1e6)
            self._progress = (caught_up, lag if self.journal.offset_slack else None, False)
        elif d.stage == "handover":
            if self._floors_pending:
                await self._load_pending_floors(d.serving)
            done = 0
            for rng in serving:
                projector = projectors.get(rng)
                if projector is None or not projector.caught_up_once:
                    continue
                ours = projector.offsets
                if all(ours.get(s, 0) >= f for s, f in self.floors.items() if s in rng):
                    done += rng.end - rng.start
            self._progress = (done, None, done == serving.count())

    async def _monitor_loop(self) -> None:
        last: ReadModelReport | None = None
        while True:
            await asyncio.sleep(MONITOR_EVERY)
            serving, projectors = self.view()
            try:
                await self.measure(serving, projectors)
            except Exception as exc:  # the target unreachable: report what is known
                log.warning("read model: measuring the target failed (%s)", exc)
                continue
            report = self.report(serving, projectors)
            if report != last and self.on_change is not None:
                last = report
                await self.on_change()
