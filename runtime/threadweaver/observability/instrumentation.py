"""Instrumentation of one runtime: thin timing wrappers set around the objects the composition
root built, so that no module of the application or the adapters knows about metrics.

- the command gateway (``Member.execute``): commands by type and outcome, their latency, and
  the commands other members forwarded here;
- the peer client (``Member.peers``): forwarded commands, their latency and refusals;
- the entities' journal (``EntityManager.journal``): append outcomes and latency;
- shard-map application (``Member.apply_map``): handoffs and their duration;
- the read model's queries and its apply transaction;
- the DynamoDB journal's client (the observer of its ClientStats: every request it sends);
- projection lag (:class:`~.lag.ProjectionLag`, a listener of the journal's appends), which
  the member's status (its Lease) reports too (``Member.lag_of``).

Each wrapper is an instance attribute shadowing the class's method, set once before the
runtime starts; the cost per call is two ``perf_counter`` calls and a few dict updates.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..application.ports import NewEvent, StoredEvent
from ..domain import Command, Event
from ..shards import ShardMap
from .lag import ProjectionLag
from .recorders import (
    Recorders,
    append_outcome,
    command_outcome,
    forward_outcome,
    query_outcome,
)

if TYPE_CHECKING:
    from ..server import Runtime

#: the read model's query methods (``queries=`` of the HTTP API), timed by name
QUERY_METHODS = (
    "get_thread",
    "list_threads",
    "list_administrator_ids",
    "list_member_ids",
    "list_messages",
)


def _shadow(obj: object, name: str, wrapper: Callable[..., Any]) -> None:
    """Set ``wrapper`` as ``obj``'s own attribute ``name`` (it shadows the class's method)."""
    vars(obj)[name] = wrapper


def instrument_gateway(member: Any, rec: Recorders) -> None:
    execute = member.execute
    commands = rec.commands
    perf = time.perf_counter

    @functools.wraps(execute)
    async def timed_execute(command: Command, *, forwarded: bool = False) -> list[Event]:
        started = perf()
        try:
            events: list[Event] = await execute(command, forwarded=forwarded)
        except BaseException as exc:
            if forwarded:
                commands.received_done(command_outcome(exc))
            else:
                commands.done(type(command).__name__, command_outcome(exc), perf() - started)
            raise
        if forwarded:
            commands.received_done("ok")
        else:
            commands.done(type(command).__name__, "ok", perf() - started)
        return events

    _shadow(member, "execute", timed_execute)


class TimedPeerClient:
    """The member's peer client with each forward timed and its outcome counted."""

    def __init__(self, inner: Any, rec: Recorders) -> None:
        self._inner = inner
        self._forwards = rec.forwards

    async def forward(self, address: str, command: Command) -> list[Event]:
        started = time.perf_counter()
        try:
            events: list[Event] = await self._inner.forward(address, command)
        except BaseException as exc:
            self._forwards.done(forward_outcome(exc), time.perf_counter() - started)
            raise
        self._forwards.done("ok", time.perf_counter() - started)
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedJournal:
    """The entities' journal with each append timed and its outcome counted; everything else
    goes to the journal itself."""

    def __init__(self, inner: Any, rec: Recorders) -> None:
        self._inner = inner
        self._journal = rec.journal

    async def append(
        self, pid: str, expected_seq: int, events: Sequence[NewEvent], *, writer: str = ""
    ) -> list[StoredEvent]:
        started = time.perf_counter()
        try:
            stored: list[StoredEvent] = await self._inner.append(
                pid, expected_seq, events, writer=writer
            )
        except BaseException as exc:
            self._journal.done(append_outcome(exc), 0, 0.0)
            raise
        self._journal.done("ok", len(events), time.perf_counter() - started)
        return stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedQueuedJournal(TimedJournal):
    """For journals with ``append_nowait`` (a future per append): timed by a done callback."""

    def append_nowait(
        self, pid: str, expected_seq: int, events: Sequence[NewEvent], *, writer: str = ""
    ) -> asyncio.Future:
        future: asyncio.Future = self._inner.append_nowait(pid, expected_seq, events, writer=writer)
        future.add_done_callback(
            functools.partial(self._appended, time.perf_counter(), len(events))
        )
        return future

    def _appended(self, started: float, count: int, future: asyncio.Future) -> None:
        if future.cancelled():
            self._journal.done("abandoned", 0, 0.0)
            return
        exc = future.exception()
        self._journal.done(append_outcome(exc), count, time.perf_counter() - started)


def timed_journal(journal: Any, rec: Recorders) -> TimedJournal:
    if callable(getattr(journal, "append_nowait", None)):
        return TimedQueuedJournal(journal, rec)
    return TimedJournal(journal, rec)


def instrument_handoffs(member: Any, rec: Recorders) -> None:
    apply_map = member.apply_map
    handoffs = rec.handoffs

    @functools.wraps(apply_map)
    async def timed_apply_map(new: ShardMap) -> None:
        first = member.map is None
        before = member.serving
        started = time.perf_counter()
        await apply_map(new)
        after = member.serving
        handoffs.map_applied(
            first,
            lost=not before.difference(after).is_empty(),
            gained=not after.difference(before).is_empty(),
            in_handoff=member.map is not None and member.map.in_handoff,
            seconds=time.perf_counter() - started,
        )

    _shadow(member, "apply_map", timed_apply_map)


def instrument_read_model(read_model: Any, rec: Recorders) -> None:
    queries = rec.queries
    for name in QUERY_METHODS:
        method = getattr(read_model, name, None)
        if method is not None:
            _shadow(read_model, name, _timed_query(name, method, rec))
    apply = read_model.apply

    @functools.wraps(apply)
    async def timed_apply(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = await apply(*args, **kwargs)
        queries.apply.observe(time.perf_counter() - started)
        return result

    _shadow(read_model, "apply", timed_apply)


def _timed_query(
    name: str, method: Callable[..., Awaitable[Any]], rec: Recorders
) -> Callable[..., Awaitable[Any]]:
    queries = rec.queries

    @functools.wraps(method)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = await method(*args, **kwargs)
        except BaseException as exc:
            queries.done(name, query_outcome(exc), time.perf_counter() - started)
            raise
        queries.done(name, "ok", time.perf_counter() - started)
        return result

    return timed


def instrument_dynamodb(journal: Any, rec: Recorders) -> None:
    """Count the DynamoDB journal's requests: its client reports each one to the observer of
    its ClientStats (adapters/journal/dynamodb/client.py), whatever transport it uses."""
    stats = getattr(journal, "client_stats", None)
    if stats is not None:
        stats.observer = rec.dynamodb.done


def instrument(runtime: Runtime, rec: Recorders) -> ProjectionLag:
    """Wrap the runtime's objects (before ``start()``); returns the lag tracker it subscribed."""
    member = runtime.member
    instrument_gateway(member, rec)
    instrument_handoffs(member, rec)
    if member.peers is not None:
        member.peers = TimedPeerClient(member.peers, rec)
    runtime.entities.journal = timed_journal(runtime.entities.journal, rec)
    instrument_read_model(runtime.read_model, rec)
    instrument_dynamodb(runtime.journal, rec)
    lag = ProjectionLag(member)
    runtime.journal.subscribe(lag.on_append)
    member.lag_of = lag.of  # the Lease reports the lag /metrics shows
    return lag
