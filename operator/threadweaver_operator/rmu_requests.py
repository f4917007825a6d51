"""RMU restarts asked for through the API server: the annotation
``threadweaver.io/restart-rmu: <range>[@<nonce>]`` on the ThreadWeaverCluster (written by
``kubectl threadweaver restart-rmu``; the operator never calls pods).

Pure. A request is handled once: its value is remembered in ``status.rmuRestartRequest``, so
a new request needs a new value (the plugin appends a timestamp as the nonce). Handling adds a
restart request (:meth:`ShardMap.request_restart`, keyed by the requested range) for every
member that serves a part of the range; the member restarts each of its RMUs that overlaps it.
"""

from __future__ import annotations

from dataclasses import dataclass

from threadweaver.shards import RangeSet, ShardMap, ShardRange

__all__ = ["RESTART_ANNOTATION", "RestartOutcome", "handle_restart_request", "parse_request"]

RESTART_ANNOTATION = "threadweaver.io/restart-rmu"


@dataclass(frozen=True)
class RestartOutcome:
    shard_map: ShardMap
    requested: tuple[tuple[str, ShardRange], ...] = ()  # (member, range) restart requests added
    problem: str | None = None  # why nothing was requested (a Warning)


def parse_request(value: str, shards: int) -> ShardRange:
    """The range of an annotation value ``start-end[@nonce]``; ValueError naming the problem."""
    text = value.split("@", 1)[0].strip()
    r = ShardRange.parse(text)
    if r.end > shards:
        raise ValueError(f"range {r} exceeds the cluster's {shards} shards")
    return r


def handle_restart_request(shard_map: ShardMap, value: str) -> RestartOutcome:
    """Request the restart of the RMUs of the range in ``value`` on the members serving it."""
    try:
        r = parse_request(value, shard_map.shards)
    except ValueError as exc:
        return RestartOutcome(shard_map, problem=f"{RESTART_ANNOTATION}={value!r}: {exc}")
    wanted = RangeSet((r,))
    requested: list[tuple[str, ShardRange]] = []
    new_map = shard_map
    for member in shard_map.assignments:
        if not shard_map.serving_ranges(member).isdisjoint(wanted):
            new_map = new_map.request_restart(member, r)
            requested.append((member, r))
    if not requested:
        return RestartOutcome(
            shard_map,
            problem=f"{RESTART_ANNOTATION}={value!r}: no member serves shards {r} now "
            "(moving in a handoff, or nobody assigned); request it again later",
        )
    return RestartOutcome(new_map, tuple(requested))
