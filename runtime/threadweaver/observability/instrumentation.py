"""Instrumentation of one runtime's objects that are not on a command's path: thin timing
wrappers set around what the composition root built.

The per-command figures are not wrapped: the command gateway (``Member.command_stats``,
``Member.forward_stats``) and the entities (``EntityManager.append_stats``) count them inline
in stats objects they own (application/stats.py), which the collector reads at scrape time.
Wrapped here:

- shard-map application (``Member.apply_map``): handoffs and their duration;
- the read model's queries and its apply transaction;
- the DynamoDB journal's client (the observer of its ClientStats: every request it sends);
- projection lag (:class:`~.lag.ProjectionLag`, a listener of the journal's appends), which
  the member's status (its Lease) reports too (``Member.lag_of``).

Each wrapper is an instance attribute shadowing the class's method, set once before the
runtime starts; the cost per call is two ``perf_counter`` calls and a few dict updates.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..shards import ShardMap
from .lag import ProjectionLag
from .recorders import Recorders, query_outcome

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
    instrument_handoffs(member, rec)
    instrument_read_model(runtime.read_model, rec)
    instrument_dynamodb(runtime.journal, rec)
    lag = ProjectionLag(member)
    runtime.journal.subscribe(lag.on_append)
    member.lag_of = lag.of  # the Lease reports the lag /metrics shows
    return lag
