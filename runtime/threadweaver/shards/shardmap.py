"""The shard map: who owns which shards, published by the operator, watched by every pod.

One ConfigMap per cluster (``<cluster>-shardmap``, key ``shardmap.json``) holds
:meth:`ShardMap.to_json`. Locally, without Kubernetes, a static ``ShardMap.initial(S, [name])``
makes one process own everything.

Handoff protocol (after Akka Cluster Sharding). A shard is served by at most one member at any
time, at the price of a short unavailability of the moving ranges:

1. The operator publishes ``rebalance(members)``: epoch ``E+1``, the new assignments and a
   :class:`Handoff` naming the moves, ``complete=False``. From now on the moving ranges are
   served by nobody: the losing member no longer has them in ``assignments`` and the gaining
   member must not start them yet (:meth:`ShardMap.serving_ranges` excludes both).
2. Each losing member stops taking commands for :meth:`ShardMap.losing` ranges (answers 503 with
   ``Retry-After``), finishes in-flight work, stops their entities and read-model updaters, then
   writes ``acked-epoch = E+1`` into its Lease. A member acknowledges an epoch once it serves
   nothing outside its ``serving_ranges``; a member with nothing to give up acknowledges at once,
   and a member absent from ``assignments`` gives up everything.
3. When every losing member has acknowledged, or is gone (lease expired, pod deleted), which
   :meth:`ShardMap.pending_acks` computes, the operator publishes :meth:`complete_handoff`
   (same epoch, ``complete=True``).
4. Only then does the gaining member start the ranges (entities recover from the journal, RMUs
   catch up from their stored offsets).

A new rebalance that changes the assignments is refused while a handoff is incomplete; with
``max_ranges_per_round`` the operator rebalances in rounds, one handoff per round.

Restart requests (``restarts``) are orthogonal to epochs: ``member -> {"start-end": generation}``;
a member restarts that range's RMU whenever the generation it last saw increases. They do not
bump the epoch (nothing moves, nothing to acknowledge).
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, TypeGuard

from .assignment import Move, assign, limit_moves, plan_moves
from .ranges import RangeSet, ShardRange

__all__ = ["SHARDMAP_KEY", "Handoff", "ShardMap", "ShardMapError"]

SHARDMAP_KEY = "shardmap.json"
"""Key of the serialized map in the cluster's ConfigMap."""

_EMPTY = RangeSet()
_FIELDS = ("epoch", "shards", "assignments", "handoff", "restarts", "addresses")


class ShardMapError(ValueError):
    """A shard map (or a change to one) that would break the one-owner-per-shard contract."""


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Handoff:
    """The moves introduced at ``epoch``; ``complete`` once every losing member let go."""

    epoch: int
    moves: tuple[Move, ...]
    complete: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "moves", tuple(self.moves))

    def losing_members(self) -> frozenset[str]:
        """Members that must acknowledge before the handoff can complete."""
        return frozenset(m.source for m in self.moves if m.source is not None)

    def ranges(self) -> RangeSet:
        return RangeSet(tuple(m.range for m in self.moves))

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "moves": [
                {"range": m.range.to_json(), "from": m.source, "to": m.target} for m in self.moves
            ],
            "complete": self.complete,
        }


def _freeze(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(sorted(mapping.items(), key=lambda kv: str(kv[0]))))


@dataclass(frozen=True, slots=True)
class ShardMap:
    """One version of the cluster's shard ownership. Immutable; every change returns a new map.

    Invariants (checked on construction, so a map read from JSON is safe to act on): every shard
    has exactly one owner (unless there are no members at all), a handoff belongs to the map's
    epoch and its moves end at the owner named in ``assignments``.
    """

    epoch: int
    shards: int
    assignments: Mapping[str, RangeSet]
    handoff: Handoff | None = None
    restarts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    addresses: Mapping[str, str] = field(default_factory=dict)
    # Derived lookup tables, built once.
    _owners: tuple[tuple[int, int, str], ...] = field(init=False, repr=False, compare=False)
    _moves: tuple[Move, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _is_int(self.epoch) or self.epoch < 0:
            raise ShardMapError(f"epoch must be an integer >= 0, got {self.epoch!r}")
        if not _is_int(self.shards) or self.shards < 1:
            raise ShardMapError(f"shards must be an integer >= 1, got {self.shards!r}")
        object.__setattr__(self, "assignments", _freeze(self.assignments))
        object.__setattr__(
            self, "restarts", _freeze({m: _freeze(g) for m, g in self.restarts.items()})
        )
        object.__setattr__(self, "addresses", _freeze(self.addresses))
        object.__setattr__(self, "_owners", self._check_assignments())
        self._check_handoff()
        self._check_restarts()
        self._check_addresses()
        incomplete = self.handoff is not None and not self.handoff.complete
        moves = tuple(sorted(self.handoff.moves, key=lambda m: m.range.start)) if incomplete else ()  # type: ignore[union-attr]
        object.__setattr__(self, "_moves", moves)

    def __hash__(self) -> int:
        return hash((self.epoch, self.shards, tuple(self.assignments.items()), self.handoff))

    # -- validation ---------------------------------------------------------------------------

    def _check_assignments(self) -> tuple[tuple[int, int, str], ...]:
        spans: list[tuple[int, int, str]] = []
        for member, ranges in self.assignments.items():
            if not isinstance(member, str) or not member:
                raise ShardMapError(
                    f"assignments: member names must be non-empty strings, got {member!r}"
                )
            if not isinstance(ranges, RangeSet):
                raise ShardMapError(
                    f"assignments[{member!r}]: expected a RangeSet, got {type(ranges).__name__}"
                )
            for r in ranges:
                if r.end > self.shards:
                    raise ShardMapError(
                        f"assignments[{member!r}]: range {r} exceeds the {self.shards} shards"
                    )
                spans.append((r.start, r.end, member))
        spans.sort()
        for (_, e0, m0), (s1, e1, m1) in itertools.pairwise(spans):
            if s1 < e0:
                raise ShardMapError(
                    f"assignments: shards {s1}-{min(e0, e1)} are owned by both {m0!r} and {m1!r}"
                )
        if self.assignments:  # no members at all (scaled to zero) is the only uncovered state
            covered = RangeSet(tuple(ShardRange(s, e) for s, e, _ in spans))
            missing = RangeSet.full(self.shards).difference(covered)
            if not missing.is_empty():
                raise ShardMapError(f"assignments: shards {missing} have no owner")
        return tuple(spans)

    def _check_handoff(self) -> None:
        h = self.handoff
        if h is None:
            return
        if not isinstance(h, Handoff):
            raise ShardMapError(f"handoff: expected a Handoff, got {type(h).__name__}")
        if h.epoch != self.epoch:
            raise ShardMapError(
                f"handoff: epoch {h.epoch} does not match the map's epoch {self.epoch}"
            )
        seen = _EMPTY
        for move in h.moves:
            if not isinstance(move, Move):
                raise ShardMapError(f"handoff: expected Move values, got {move!r}")
            r = RangeSet((move.range,))
            if move.range.end > self.shards:
                raise ShardMapError(f"handoff: move {move.range} exceeds the {self.shards} shards")
            if move.source == move.target:
                raise ShardMapError(
                    f"handoff: move {move.range} goes from {move.target!r} to itself"
                )
            if not r.isdisjoint(seen):
                raise ShardMapError(f"handoff: shards {r.intersection(seen)} move more than once")
            if not r.issubset(self.assignments.get(move.target, _EMPTY)):
                raise ShardMapError(
                    f"handoff: move {move.range} to {move.target!r} but assignments disagree"
                )
            seen = seen.union(r)

    def _check_restarts(self) -> None:
        for member, generations in self.restarts.items():
            if not isinstance(member, str) or not member:
                raise ShardMapError(
                    f"restarts: member names must be non-empty strings, got {member!r}"
                )
            for key, generation in generations.items():
                try:
                    r = ShardRange.parse(key) if isinstance(key, str) else None
                except ValueError as exc:
                    raise ShardMapError(f"restarts[{member!r}]: {exc}") from None
                if r is None or r.end > self.shards or str(r) != key:
                    raise ShardMapError(f"restarts[{member!r}]: invalid range key {key!r}")
                if not _is_int(generation) or generation < 0:
                    raise ShardMapError(
                        f"restarts[{member!r}][{key!r}]: generation must be an integer >= 0"
                    )

    def _check_addresses(self) -> None:
        for member, address in self.addresses.items():
            host, sep, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
            if not (
                isinstance(member, str)
                and member
                and host
                and sep
                and port.isdigit()
                and 0 < int(port) < 65536
            ):
                raise ShardMapError(f"addresses[{member!r}]: expected 'host:port', got {address!r}")

    # -- construction and transitions ---------------------------------------------------------

    @classmethod
    def initial(
        cls, shards: int, members: Iterable[str], addresses: Mapping[str, str] | None = None
    ) -> ShardMap:
        """Epoch 1, contiguous blocks, no handoff: nobody served anything before."""
        try:
            return cls(1, shards, assign(shards, list(members)), None, {}, addresses or {})
        except ShardMapError:
            raise
        except ValueError as exc:
            raise ShardMapError(str(exc)) from None

    @property
    def in_handoff(self) -> bool:
        """True while a handoff waits for acknowledgements."""
        return self.handoff is not None and not self.handoff.complete

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self.assignments)

    def rebalance(
        self, members: Iterable[str], max_ranges_per_round: int | None = None
    ) -> ShardMap:
        """The next map for ``members``: balanced with minimal movement, at most
        ``max_ranges_per_round`` ranges moving between live members (see ``limit_moves``).

        Returns ``self`` when nothing changes (safe to call on every reconcile); raises
        :class:`ShardMapError` if something would change during an incomplete handoff.
        Restart requests of members that left are dropped; addresses are kept.
        """
        try:
            target = assign(self.shards, list(members), self.assignments)
            if max_ranges_per_round is not None:
                target = limit_moves(self.assignments, target, max_ranges_per_round)
        except ValueError as exc:
            raise ShardMapError(str(exc)) from None
        if target == dict(self.assignments):
            return self
        if self.in_handoff:
            raise ShardMapError(
                f"cannot rebalance: the handoff of epoch {self.epoch} is not complete"
            )
        moves = tuple(plan_moves(self.assignments, target))
        epoch = self.epoch + 1
        return ShardMap(
            epoch=epoch,
            shards=self.shards,
            assignments=target,
            handoff=Handoff(epoch, moves, False) if moves else None,
            restarts={m: g for m, g in self.restarts.items() if m in target},
            addresses=self.addresses,
        )

    def complete_handoff(self) -> ShardMap:
        """Mark the current handoff complete (idempotent): gaining members may start."""
        if self.handoff is None or self.handoff.complete:
            return self
        return replace(self, handoff=replace(self.handoff, complete=True))

    def request_restart(self, member: str, range: ShardRange | str) -> ShardMap:
        """Ask ``member`` to restart the RMU of ``range`` (bumps that range's generation)."""
        if member not in self.assignments:
            raise ShardMapError(
                f"cannot restart an RMU on {member!r}: not a member of the shard map"
            )
        try:
            r = ShardRange.parse(range) if isinstance(range, str) else range
        except ValueError as exc:
            raise ShardMapError(str(exc)) from None
        if r.end > self.shards:
            raise ShardMapError(f"range {r} exceeds the {self.shards} shards")
        generations = dict(self.restarts.get(member, {}))
        generations[str(r)] = generations.get(str(r), 0) + 1
        return replace(self, restarts={**self.restarts, member: generations})

    def with_addresses(self, addresses: Mapping[str, str]) -> ShardMap:
        """Replace the routing address overrides (local multi-process runs)."""
        return replace(self, addresses=addresses)

    # -- queries for members and the operator -------------------------------------------------

    def _check_shard(self, shard: int) -> None:
        if not _is_int(shard) or not 0 <= shard < self.shards:
            raise ValueError(f"shard {shard!r} is outside 0..{self.shards - 1}")

    def owner_of(self, shard: int) -> str | None:
        """The assigned owner (which, during a handoff, may not serve it yet: see ``moving``)."""
        self._check_shard(shard)
        i = bisect.bisect_right(self._owners, shard, key=lambda s: s[0]) - 1
        if i >= 0 and shard < self._owners[i][1]:
            return self._owners[i][2]
        return None

    def moving(self, shard: int) -> Move | None:
        """The move of an incomplete handoff that covers ``shard``: nobody serves it now."""
        self._check_shard(shard)
        i = bisect.bisect_right(self._moves, shard, key=lambda m: m.range.start) - 1
        if i >= 0 and shard in self._moves[i].range:
            return self._moves[i]
        return None

    def losing(self, member: str) -> RangeSet:
        """Ranges moving away from ``member`` in the incomplete handoff: stop them, then ack."""
        return RangeSet(tuple(m.range for m in self._moves if m.source == member))

    def gaining(self, member: str) -> RangeSet:
        """Ranges moving to ``member`` in the incomplete handoff: start them once complete."""
        return RangeSet(tuple(m.range for m in self._moves if m.target == member))

    def serving_ranges(self, member: str) -> RangeSet:
        """What ``member`` may serve now: its assignment minus incoming moving ranges."""
        return self.assignments.get(member, _EMPTY).difference(self.gaining(member))

    def pending_acks(self, acked_epochs: Mapping[str, int]) -> frozenset[str]:
        """Losing members that still must acknowledge this epoch.

        ``acked_epochs`` holds the acknowledged epoch of every *live* member (lease valid, pod
        present); a losing member absent from it is gone and acknowledges by absence. An empty
        result means the operator may publish :meth:`complete_handoff`.
        """
        if not self.in_handoff:
            return frozenset()
        assert self.handoff is not None
        return frozenset(
            m
            for m in self.handoff.losing_members()
            if m in acked_epochs and acked_epochs[m] < self.epoch
        )

    def restart_generations(self, member: str) -> Mapping[str, int]:
        """``{"start-end": generation}`` restart requests addressed to ``member``."""
        return self.restarts.get(member, MappingProxyType({}))

    def address_of(self, member: str) -> str | None:
        return self.addresses.get(member)

    def counts(self) -> dict[str, int]:
        """Shards per member (for status and metrics)."""
        return {m: rs.count() for m, rs in self.assignments.items()}

    # -- serialization ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A plain dict with stable keys (see module docstring for the protocol)."""
        return {
            "epoch": self.epoch,
            "shards": self.shards,
            "assignments": {m: rs.to_json() for m, rs in self.assignments.items()},
            "handoff": self.handoff.to_json() if self.handoff is not None else None,
            "restarts": {m: dict(g) for m, g in self.restarts.items()},
            "addresses": dict(self.addresses),
        }

    def dumps(self) -> str:
        """Compact, key-sorted JSON text for the ConfigMap (stable: equal maps, equal text)."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> ShardMap:
        """Parse and validate; every problem raises :class:`ShardMapError` naming the field."""
        if isinstance(data, (str, bytes, bytearray)):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise ShardMapError(f"shard map is not valid JSON: {exc}") from None
        if not isinstance(data, Mapping):
            raise ShardMapError(f"shard map must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise ShardMapError(f"shard map has unknown fields {unknown}")
        for key in ("epoch", "shards", "assignments"):
            if key not in data:
                raise ShardMapError(f"shard map is missing {key!r}")
        return cls(
            epoch=_int(data["epoch"], "epoch"),
            shards=_int(data["shards"], "shards"),
            assignments={
                m: _ranges(v, f"assignments[{m!r}]")
                for m, v in _object(data["assignments"], "assignments").items()
            },
            handoff=_handoff(data.get("handoff")),
            restarts={
                m: {
                    k: _int(n, f"restarts[{m!r}][{k!r}]")
                    for k, n in _object(g, f"restarts[{m!r}]").items()
                }
                for m, g in _object(data.get("restarts") or {}, "restarts").items()
            },
            addresses={
                m: _str(a, f"addresses[{m!r}]")
                for m, a in _object(data.get("addresses") or {}, "addresses").items()
            },
        )


# -- JSON field parsers (raise ShardMapError naming the path) ---------------------------------


def _int(value: Any, path: str) -> int:
    if not _is_int(value):
        raise ShardMapError(f"{path}: expected an integer, got {value!r}")
    return value


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ShardMapError(f"{path}: expected a string, got {value!r}")
    return value


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ShardMapError(f"{path}: expected an object, got {type(value).__name__}")
    return value


def _range(value: Any, path: str) -> ShardRange:
    try:
        return ShardRange.from_json(value)
    except ValueError as exc:
        raise ShardMapError(f"{path}: {exc}") from None


def _ranges(value: Any, path: str) -> RangeSet:
    if not isinstance(value, list):
        raise ShardMapError(f"{path}: expected a list of [start, end] pairs, got {value!r}")
    return RangeSet(tuple(_range(item, f"{path}[{i}]") for i, item in enumerate(value)))


def _handoff(value: Any) -> Handoff | None:
    if value is None:
        return None
    obj = _object(value, "handoff")
    unknown = sorted(set(obj) - {"epoch", "moves", "complete"})
    if unknown:
        raise ShardMapError(f"handoff has unknown fields {unknown}")
    complete = obj.get("complete", False)
    if not isinstance(complete, bool):
        raise ShardMapError(f"handoff.complete: expected a boolean, got {complete!r}")
    raw_moves = obj.get("moves", [])
    if not isinstance(raw_moves, list):
        raise ShardMapError(f"handoff.moves: expected a list, got {type(raw_moves).__name__}")
    moves = []
    for i, raw in enumerate(raw_moves):
        path = f"handoff.moves[{i}]"
        move = _object(raw, path)
        if set(move) != {"range", "from", "to"}:
            raise ShardMapError(
                f"{path}: expected exactly the fields range, from, to, got {sorted(move)}"
            )
        source = move["from"]
        if source is not None:
            source = _str(source, f"{path}.from")
        moves.append(
            Move(_range(move["range"], f"{path}.range"), source, _str(move["to"], f"{path}.to"))
        )
    if "epoch" not in obj:
        raise ShardMapError("handoff is missing 'epoch'")
    return Handoff(_int(obj["epoch"], "handoff.epoch"), tuple(moves), complete)
