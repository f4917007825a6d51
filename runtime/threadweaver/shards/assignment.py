"""Balanced, minimal-movement assignment of shard ranges to members.

Three rules, in priority order:

1. every shard has exactly one owner and member shard counts differ by at most one;
2. minimal movement: shards leave only members above their target count (or members no longer
   listed, or nobody) and go only to members below it, and the members that get the extra
   "+1" shard are those already holding the most, so the number of moved shards is the minimum
   any balanced assignment needs;
3. few ranges per member: donors give up whole small ranges or one chunk at a range end,
   preferably an end touching a receiver or free shards, and receivers first take free
   shards adjacent to what they hold, then the rest in shard order.

Everything is deterministic (members are sorted by name, ties broken by name and position) so
the operator can recompute an assignment and compare it to the published one.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .ranges import RangeSet, ShardRange

__all__ = ["Move", "assign", "limit_moves", "plan_moves", "target_counts"]

_EMPTY = RangeSet()


@dataclass(frozen=True, slots=True)
class Move:
    """``range`` changes owner from ``source`` (``None``: nobody owned it) to ``target``."""

    range: ShardRange
    source: str | None
    target: str


def _members(members: Sequence[str]) -> list[str]:
    names = sorted(set(members))
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"member names must be non-empty strings, got {name!r}")
    return names


def _kept(
    shards: int, names: list[str], current: Mapping[str, RangeSet] | None
) -> dict[str, RangeSet]:
    """What each listed member keeps of ``current``: clipped to the cluster, overlaps resolved
    in favour of the first member by name (a valid map has none; this keeps bad input safe)."""
    full = RangeSet.full(shards)
    kept = {name: (current or {}).get(name, _EMPTY).intersection(full) for name in names}
    spans = sorted((r.start, r.end) for rs in kept.values() for r in rs)
    if all(e0 <= s1 for (_, e0), (s1, _) in itertools.pairwise(spans)):
        return kept  # the normal case: already disjoint
    claimed = _EMPTY
    for name in names:
        kept[name] = kept[name].difference(claimed)
        claimed = claimed.union(kept[name])
    return kept


def _targets(shards: int, names: list[str], kept: Mapping[str, RangeSet]) -> dict[str, int]:
    q, r = divmod(shards, len(names))
    ranked = sorted(names, key=lambda m: (-kept[m].count(), m))
    extra = set(ranked[:r])
    return {m: q + (1 if m in extra else 0) for m in names}


def target_counts(
    shards: int, members: Sequence[str], current: Mapping[str, RangeSet] | None = None
) -> dict[str, int]:
    """How many shards each member should hold after :func:`assign`.

    ``shards // n`` each; the ``shards % n`` extra shards go to the members that currently hold
    the most (ties by name), which is what makes the movement minimal.
    """
    names = _members(members)
    if not names:
        return {}
    return _targets(shards, names, _kept(shards, names, current))


def _blocks(shards: int, names: list[str]) -> dict[str, RangeSet]:
    q, r = divmod(shards, len(names))
    out: dict[str, RangeSet] = {}
    start = 0
    for i, name in enumerate(names):
        size = q + (1 if i < r else 0)
        out[name] = RangeSet((ShardRange(start, start + size),)) if size else _EMPTY
        start += size
    return out


def _release(held: RangeSet, k: int, attractive: RangeSet) -> RangeSet:
    """Choose ``k`` shards of ``held`` to give up, keeping both sides contiguous.

    First whole ranges, smallest first (the donor loses a fragment); then a single chunk from one
    end of one remaining range (all are now longer than what is left to give), preferring an end
    that touches ``attractive`` shards (free, or held by a receiver) so the receiver can merge it.
    """
    released: list[ShardRange] = []

    def touches(r: ShardRange) -> int:
        return int((r.start - 1) in attractive) + int(r.end in attractive)

    remaining = list(held)
    for r in sorted(remaining, key=lambda r: (len(r), -touches(r), r.start)):
        if k == 0:
            break
        if len(r) <= k:
            released.append(r)
            remaining.remove(r)
            k -= len(r)
    if k:
        best: tuple[tuple[int, int, int, int], ShardRange] | None = None
        for r in remaining:
            for right in (True, False):
                edge = r.end if right else r.start - 1
                key = (0 if edge in attractive else 1, -len(r), 0 if right else 1, r.start)
                chunk = ShardRange(r.end - k, r.end) if right else ShardRange(r.start, r.start + k)
                if best is None or key < best[0]:
                    best = (key, chunk)
        assert best is not None, "donor holds fewer shards than its surplus"
        released.append(best[1])
    return RangeSet(tuple(released))


class _OwnerIndex:
    """Owner lookup by shard over a fixed set of (disjoint) member ranges."""

    def __init__(self, owned: Mapping[str, RangeSet]) -> None:
        spans = sorted((r.start, r.end, m) for m, rs in owned.items() for r in rs)
        self._starts = [s for s, _, _ in spans]
        self._spans = spans

    def owner(self, shard: int) -> str | None:
        i = bisect.bisect_right(self._starts, shard) - 1
        if i >= 0 and shard < self._spans[i][1]:
            return self._spans[i][2]
        return None


def assign(
    shards: int, members: Sequence[str], current: Mapping[str, RangeSet] | None = None
) -> dict[str, RangeSet]:
    """A balanced assignment of ``shards`` shards to ``members``, moving as little as possible
    from ``current``.

    Returns one entry per member (sorted by name; a member may hold nothing when there are
    more members than shards). With no members, returns ``{}`` (nobody owns anything). With no
    usable ``current``, members get contiguous equal blocks in name order.
    """
    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise ValueError(f"shards must be an integer >= 1, got {shards!r}")
    names = _members(members)
    if not names:
        return {}
    owned = _kept(shards, names, current)
    if all(rs.is_empty() for rs in owned.values()):
        return _blocks(shards, names)
    target = _targets(shards, names, owned)
    pool = RangeSet.full(shards).difference(RangeSet(tuple(r for rs in owned.values() for r in rs)))

    # Donors give up their surplus, in shard order so that neighbours release touching ends.
    receivers = RangeSet(tuple(r for m in names if owned[m].count() < target[m] for r in owned[m]))
    for name in sorted(
        names, key=lambda m: (owned[m].ranges[0].start if owned[m].ranges else shards, m)
    ):
        surplus = owned[name].count() - target[name]
        if surplus > 0:
            released = _release(owned[name], surplus, pool.union(receivers))
            owned[name] = owned[name].difference(released)
            pool = pool.union(released)

    deficit = {m: target[m] - owned[m].count() for m in names if owned[m].count() < target[m]}
    gained: dict[str, list[ShardRange]] = {m: [] for m in deficit}
    index = _OwnerIndex(owned)  # owners of non-free shards do not change below

    def give(name: str, r: ShardRange) -> None:
        gained[name].append(r)
        deficit[name] -= len(r)

    # Receivers first take free shards adjacent to what they hold.
    rest: list[ShardRange] = []
    for free in pool:
        start, end = free.start, free.end
        left = index.owner(start - 1) if start > 0 else None
        if left is not None and deficit.get(left, 0) > 0:
            take = min(deficit[left], end - start)
            give(left, ShardRange(start, start + take))
            start += take
        right = index.owner(end) if end < shards else None
        if start < end and right is not None and deficit.get(right, 0) > 0:
            take = min(deficit[right], end - start)
            give(right, ShardRange(end - take, end))
            end -= take
        if start < end:
            rest.append(ShardRange(start, end))

    # Then the remaining free shards in shard order, receivers ordered by where they sit.
    def position(name: str) -> tuple[int, str]:
        held = owned[name]
        return (held.ranges[0].start if held.ranges else shards, name)

    queue = [m for m in sorted(deficit, key=position) if deficit[m] > 0]
    qi = 0
    for free in rest:
        start = free.start
        while start < free.end:
            name = queue[qi]
            take = min(deficit[name], free.end - start)
            give(name, ShardRange(start, start + take))
            start += take
            if deficit[name] == 0:
                qi += 1

    for name, ranges in gained.items():
        owned[name] = owned[name].union(RangeSet(tuple(ranges)))
    return owned


def _spans(assignment: Mapping[str, RangeSet]) -> list[tuple[int, int, str]]:
    spans = sorted((r.start, r.end, m) for m, rs in assignment.items() for r in rs)
    for (_, e0, m0), (s1, e1, m1) in itertools.pairwise(spans):
        if s1 < e0:
            raise ValueError(f"shards {s1}-{min(e0, e1)} are assigned to both {m0!r} and {m1!r}")
    return spans


def plan_moves(current: Mapping[str, RangeSet], target: Mapping[str, RangeSet]) -> list[Move]:
    """The ownership changes from ``current`` to ``target``, as maximal ranges in shard order.

    Shards nobody owns in ``current`` move with ``source=None``; shards nobody owns in
    ``target`` do not move.
    """
    cur = _spans(current)
    cur_starts = [s for s, _, _ in cur]
    moves: list[Move] = []
    for start, end, dst in _spans(target):
        pos = start
        i = bisect.bisect_right(cur_starts, pos) - 1
        if i < 0:
            i = 0
        while pos < end:
            # Find the current owner of `pos` and how far it extends.
            while i < len(cur) and cur[i][1] <= pos:
                i += 1
            if i < len(cur) and cur[i][0] <= pos:
                src, upto = cur[i][2], min(end, cur[i][1])
            else:
                src, upto = None, min(end, cur[i][0] if i < len(cur) else end)
            if src != dst:
                last = moves[-1] if moves else None
                if last and last.source == src and last.target == dst and last.range.end == pos:
                    moves[-1] = Move(ShardRange(last.range.start, upto), src, dst)
                else:
                    moves.append(Move(ShardRange(pos, upto), src, dst))
            pos = upto
    return moves


def limit_moves(
    current: Mapping[str, RangeSet], target: Mapping[str, RangeSet], max_ranges: int
) -> dict[str, RangeSet]:
    """An intermediate assignment on the way from ``current`` to ``target`` for rebalancing in
    rounds: at most ``max_ranges`` moves between members present in ``target``, in shard order.

    Moves of shards owned by nobody or by a member absent from ``target`` are always applied
    and not counted: nothing serves them, so delaying them buys no stability and would leave
    shards without a live owner. Repeating with the result converges to ``target`` in
    ``ceil(moves / max_ranges)`` rounds. Members of ``target`` all appear in the result.
    """
    if max_ranges < 1:
        raise ValueError(f"max_ranges must be >= 1, got {max_ranges}")
    moves = plan_moves(current, target)
    applied: list[Move] = []
    budget = max_ranges
    for move in moves:
        if move.source is None or move.source not in target:
            applied.append(move)
        elif budget > 0:
            applied.append(move)
            budget -= 1
    lost: dict[str, list[ShardRange]] = {}
    won: dict[str, list[ShardRange]] = {}
    for move in applied:
        if move.source is not None:
            lost.setdefault(move.source, []).append(move.range)
        won.setdefault(move.target, []).append(move.range)
    result: dict[str, RangeSet] = {}
    for name in sorted(set(current) | set(target)):
        held = current.get(name, _EMPTY)
        held = held.difference(RangeSet(tuple(lost.get(name, ())))).union(
            RangeSet(tuple(won.get(name, ())))
        )
        if name in target or not held.is_empty():
            result[name] = held
    return result
