"""The runtime side of sharding (docs/architecture.md, "Sharding inside a member"): a member
applies each shard map it receives, serves exactly its `serving_ranges`, hands ranges over
safely, runs one read-model updater per served range, and routes commands for other shards to
their owner.

Handoff, as seen by a member (see threadweaver.shards.shardmap for the whole protocol):
- a new map makes some served ranges `losing`: from that instant commands for them wait briefly
  and then answer 503 (Retry-After); in-flight commands finish; the ranges' entities and RMUs
  stop; then the member acknowledges the epoch (through its status sink: the Lease);
- ranges it gains are started only once the map says the handoff is complete.
The journal's conditional appends stay the last line of defence: a write by a stale owner
conflicts instead of forking a stream (counted in `stats.conflicts`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from ..domain import Command, Event, thread_persistence_id
from ..shards import (
    MemberStatus,
    RangeSet,
    ReadModelDirective,
    RmuState,
    ShardMap,
    ShardRange,
    shard_of,
)
from .entities import EntityManager
from .gateway import ForwardRefused, NotOwner, ShardUnavailable
from .ports import Journal, ReadModel
from .projector import Projector, ProjectorState
from .read_model_switch import ReadModelOpener, ReadModelSwitch, SwitchableReadModel
from .settings import ProjectorSettings
from .stats import CommandStats, ForwardStats, command_outcome, forward_outcome

log = logging.getLogger(__name__)


class PeerClient(Protocol):
    """Forwards a command to another member (adapters: HTTP to the peer's internal endpoint)."""

    async def forward(self, address: str, command: Command) -> list[Event]: ...


StatusSink = Callable[[MemberStatus], Awaitable[None]]
"""Publishes this member's status (Kubernetes: its Lease annotations)."""


def _own_lag(rng: ShardRange, state: ProjectorState) -> tuple[float, int]:
    """A range's projection lag as its updater measures it."""
    return state.lag_seconds, state.lag_events


@dataclass(frozen=True, slots=True)
class ShardingSettings:
    member: str
    handoff_wait: float = 2.0  # how long a request for a moving shard waits before 503
    drain_timeout: float = 10.0  # how long in-flight commands of lost ranges may take
    address_template: str = ""  # e.g. "{member}.tw-headless.ns.svc:8080" when not in the map


class Member:
    """One runtime member of a sharded cluster, driven by the shard maps it is given."""

    def __init__(
        self,
        settings: ShardingSettings,
        entities: EntityManager,
        journal: Journal,
        read_model: ReadModel,
        projector_settings: ProjectorSettings,
        status_sink: StatusSink | None = None,
        peers: PeerClient | None = None,
        address: str | None = None,
        holds_lease: Callable[[], bool] | None = None,
        open_read_model: ReadModelOpener | None = None,
    ) -> None:
        self.settings = settings
        self.entities = entities
        self.journal = journal
        self.read_model = read_model
        self.projector_settings = projector_settings
        self.status_sink = status_sink
        self.peers = peers
        self.address = address
        # False once this member could not renew its lease for a lease duration: the operator
        # may then give its ranges to others, so it stops serving (fencing) until it renews.
        self.holds_lease = holds_lease or (lambda: True)
        self.map: ShardMap | None = None
        self.serving = RangeSet()
        self.acked_epoch = 0
        self.projectors: dict[ShardRange, Projector] = {}
        self._restart_seen: dict[str, int] = {}
        self._restarts_primed = False  # the first map's generations are recorded
        self._inflight: collections.Counter[int] = collections.Counter()
        self._drained = asyncio.Condition()
        self._draining = 0
        self._map_changed = asyncio.Event()
        self._apply_lock = asyncio.Lock()
        # a rebuild of the read model (read_model_switch.py): only over a SwitchableReadModel
        self.read_models: ReadModelSwitch | None = None
        if open_read_model is not None and isinstance(read_model, SwitchableReadModel):
            self.read_models = ReadModelSwitch(
                read_model,
                open_read_model,
                journal,
                projector_settings,
                view=lambda: (self.serving, self.projectors),
                on_change=self.publish_status,
            )
        self.forwarded = 0
        self.refused = 0
        # what /metrics reads at scrape time (observability/collector.py), counted inline
        self.command_stats = CommandStats()
        self.forward_stats = ForwardStats()
        self.waiting_for_map = 0  # commands parked until the next map (tests wait on it)
        # (seconds, events) of a range's projection lag, as the status reports it: the
        # updater's own figures, unless the composition root sets a better measure (the one
        # /metrics shows, observability/lag.py)
        self.lag_of: Callable[[ShardRange, ProjectorState], tuple[float, int]] = _own_lag

    @property
    def name(self) -> str:
        return self.settings.member

    # -- shard maps -------------------------------------------------------------------------
    async def apply_map(self, new: ShardMap) -> None:
        """Adopt `new`: give up lost ranges (then acknowledge), start ranges now served."""
        async with self._apply_lock:
            if self.map is not None and new.shards != self.map.shards:
                log.error(
                    "shard map with %d shards ignored: this cluster has %d",
                    new.shards,
                    self.map.shards,
                )
                return
            if new.shards != self.journal.shards:
                log.error(
                    "shard map with %d shards ignored: the journal has %d",
                    new.shards,
                    self.journal.shards,
                )
                return
            serving = new.serving_ranges(self.name)
            lost = self.serving.difference(serving)
            self.map, self.serving = new, serving
            self._map_changed.set()
            self._map_changed = asyncio.Event()
            if not lost.is_empty():
                log.info("epoch %d: giving up %s", new.epoch, lost)
                await self._drain(lost)
                await self.entities.stop_entities(lambda pid: shard_of(pid, new.shards) in lost)
            await self._reconcile_projectors()
            await self._apply_restarts(new)
            self.acked_epoch = new.epoch
            log.info(
                "epoch %d%s: serving %s",
                new.epoch,
                " (handoff pending)" if new.in_handoff else "",
                serving or "nothing",
            )
        await self.publish_status()

    async def apply_read_model(self, directive: ReadModelDirective) -> None:
        """Adopt the operator's read-model directive (threadweaver.shards.readmodel): move the
        RMUs (stopped, then started again on the new database from its checkpoints), run or
        stop the shadow RMUs, move the queries at the directive's instant."""
        switch = self.read_models
        if switch is None:
            log.error("read-model directive ignored: this member cannot switch read models")
            return
        async with self._apply_lock:
            if switch.rmus_move(directive):
                for rng in list(self.projectors):
                    await self.projectors.pop(rng).stop()
                await switch.move_rmus(directive, self.journal.shards)
            await switch.apply(directive, self.serving)
            await self._reconcile_projectors()
        await self.publish_status()

    async def _drain(self, lost: RangeSet) -> None:
        self._draining += 1
        try:
            await self._drain_until_idle(lost)
        finally:
            self._draining -= 1

    async def _drain_until_idle(self, lost: RangeSet) -> None:
        deadline = time.monotonic() + self.settings.drain_timeout
        async with self._drained:
            while any(n and s in lost for s, n in self._inflight.items()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning(
                        "in-flight commands of %s still running after %.0fs; the "
                        "journal's conditional writes guard them",
                        lost,
                        self.settings.drain_timeout,
                    )
                    return
                try:  # asyncio.timeout, not wait_for: see Projector.stop
                    async with asyncio.timeout(remaining):
                        await self._drained.wait()
                except TimeoutError:
                    pass

    async def _reconcile_projectors(self) -> None:
        wanted = set(self.serving)
        for rng in [r for r in self.projectors if r not in wanted]:
            await self.projectors.pop(rng).stop()
        started = sorted(wanted - set(self.projectors))
        for rng in started:
            p = Projector(
                self.journal, self.read_model, rng.start, rng.end, self.projector_settings
            )
            self.projectors[rng] = p
            p.start()
        if self.read_models is not None:
            await self.read_models.ranges_started(started)
            await self.read_models.reconcile_shadows(self.serving)

    async def _apply_restarts(self, new: ShardMap) -> None:
        # The first map a member applies only records the generations: its RMUs have just
        # started, and the requests are older than this process. In later maps a generation
        # above the one recorded, or the first one of a range, is a new request.
        first_map = not self._restarts_primed
        self._restarts_primed = True
        for key, generation in new.restart_generations(self.name).items():
            seen = self._restart_seen.get(key)
            self._restart_seen[key] = generation
            if first_map or (seen is not None and generation <= seen):
                continue
            rng = ShardRange.parse(key)
            for prange, projector in self.projectors.items():
                if prange.start < rng.end and rng.start < prange.end:
                    log.info(
                        "restart of the RMU of %s requested (generation %d)", prange, generation
                    )
                    await projector.restart()

    async def stop(self) -> None:
        for p in self.projectors.values():
            await p.stop()
        self.projectors.clear()
        if self.read_models is not None:
            await self.read_models.close()

    # -- status -----------------------------------------------------------------------------
    def status(self) -> MemberStatus:
        rmus = []
        for rng, p in sorted(self.projectors.items()):
            lag_seconds, lag_events = self.lag_of(rng, p.state)
            rmus.append(
                RmuState(
                    range=rng,
                    running=p.is_alive and p.state.running,
                    offset=p.state.offset,
                    lag_events=lag_events,
                    lag_seconds=round(lag_seconds, 3),
                    restarts=p.state.restarts,
                    last_error=p.state.last_error,
                )
            )
        return MemberStatus(
            member=self.name,
            read_model=(
                self.read_models.report(self.serving, self.projectors)
                if self.read_models is not None
                else None
            ),
            acked_epoch=self.acked_epoch,
            owned=self.serving,
            rmus=tuple(rmus),
            address=self.address,
        )

    async def publish_status(self) -> None:
        if self.status_sink is not None:
            try:
                await self.status_sink(self.status())
            except Exception:
                log.warning("publishing the member status failed", exc_info=True)

    # -- commands (CommandGateway) ----------------------------------------------------------
    async def execute(self, command: Command, *, forwarded: bool = False) -> list[Event]:
        # counted inline (command_stats, read by /metrics): no wrapper, no extra coroutine
        started = time.perf_counter()
        try:
            pid = thread_persistence_id(command.thread_id)
            deadline = time.monotonic() + self.settings.handoff_wait
            while True:
                current = self.map
                if current is None:
                    raise ShardUnavailable("this member has not received its shard map yet")
                shard = shard_of(pid, current.shards)
                if shard in self.serving:
                    if not self.holds_lease():
                        self.refused += 1
                        raise ShardUnavailable(
                            "this member cannot renew its lease; its shards may be moving "
                            "elsewhere",
                            retry_after=1,
                        )
                    events = await self._run_local(shard, command)
                    break
                move = current.moving(shard)
                owner = current.owner_of(shard)
                if move is None and owner is not None and owner != self.name:
                    if forwarded:  # one hop only: the sender's map is newer or older than ours
                        raise ShardUnavailable(
                            f"shard {shard} is not served here (owner {owner})", retry_after=1
                        )
                    try:
                        events = await self._forward(owner, command)
                        break
                    except ForwardRefused:
                        # Refused unrun. If our map changed meanwhile (a handoff completed
                        # while the owner held the command), route it again: it may be ours.
                        if self.map is current:
                            raise
                        continue
                # moving (handoff in progress), or not started here yet: wait for the next map
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.refused += 1
                    raise ShardUnavailable(
                        f"shard {shard} is being handed over; retry shortly", retry_after=1
                    )
                self.waiting_for_map += 1
                try:
                    async with asyncio.timeout(remaining):
                        await self._map_changed.wait()
                except TimeoutError:
                    pass
                finally:
                    self.waiting_for_map -= 1
        except BaseException as exc:
            if forwarded:
                self.command_stats.received_done(command_outcome(exc))
            else:
                self.command_stats.done(
                    type(command).__name__, command_outcome(exc), time.perf_counter() - started
                )
            raise
        if forwarded:
            self.command_stats.received_done("ok")
        else:
            self.command_stats.done(type(command).__name__, "ok", time.perf_counter() - started)
        return events

    async def _run_local(self, shard: int, command: Command) -> list[Event]:
        self._inflight[shard] += 1
        try:
            return await self.entities.execute(command)
        finally:
            self._inflight[shard] -= 1
            if not self._inflight[shard]:
                del self._inflight[shard]
                if self._draining:  # only a handoff waits for in-flight commands
                    async with self._drained:
                        self._drained.notify_all()

    def address_of(self, member: str) -> str | None:
        if self.map is not None:
            addr = self.map.address_of(member)
            if addr:
                return addr
        if self.settings.address_template:
            return self.settings.address_template.format(member=member)
        return None

    async def _forward(self, owner: str, command: Command) -> list[Event]:
        address = self.address_of(owner)
        if self.peers is None or not address:
            raise NotOwner(owner, address)
        self.forwarded += 1
        started = time.perf_counter()
        try:
            events = await self.peers.forward(address, command)
        except BaseException as exc:
            self.forward_stats.done(forward_outcome(exc), time.perf_counter() - started)
            raise
        self.forward_stats.done("ok", time.perf_counter() - started)
        return events
