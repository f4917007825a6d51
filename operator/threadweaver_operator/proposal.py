"""A rebalancing plan: every round of moves from the published shard map to a balanced one.

The rounds are what the operator publishes one after the other: each is a call of
:meth:`ShardMap.rebalance` (at most ``maxRangesPerRound`` ranges between live members; moves
off leaving or dead members all in the first round) followed by the completed handoff. The
plan simulates exactly those calls, so its rounds are the ones that will run, and
``kubectl threadweaver rebalance --dry-run`` shows the same rounds the operator makes.

A plan's id names its starting point: the epoch and assignments it starts from, the target
members and the round size. When the members change, the id changes: an approval of the old
id approves nothing (``spec.rebalance.mode: manual``, see :mod:`.review`).

:func:`failover_map` is the one round that moves only the ranges of dead members (to the
members that lack shards), for ``spec.rebalance.autoApproveFailover``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from threadweaver.shards import Handoff, Move, RangeSet, ShardMap, assign, plan_moves

__all__ = ["MAX_ROUNDS", "RebalancePlan", "failover_map", "move_json", "plan_id", "plan_rebalance"]

MAX_ROUNDS = 10_000
"""A bound on the simulation (a plan converges in ceil(moves / maxRangesPerRound) rounds)."""

FAILOVER = "Failover"
SCALE_DOWN = "ScaleDown"
SCALE_UP = "ScaleUp"
REBALANCE = "Rebalance"


@dataclass(frozen=True)
class RebalancePlan:
    """The rounds from the map of ``from_epoch`` to a balanced map over ``members``."""

    id: str
    reason: str  # Failover | ScaleDown | ScaleUp | Rebalance
    from_epoch: int
    members: tuple[str, ...]  # the target
    max_ranges_per_round: int
    rounds: tuple[tuple[Move, ...], ...]
    before: Mapping[str, int]  # shards per member now
    after: Mapping[str, int]  # shards per member once every round ran

    @property
    def moves(self) -> int:
        return sum(len(r) for r in self.rounds)

    def rounds_json(self) -> list[dict[str, Any]]:
        return [{"moves": [move_json(m) for m in moves]} for moves in self.rounds]

    def shards_json(self) -> list[dict[str, Any]]:
        """``[{member, before, after}]`` for every member holding shards before or after."""
        members = sorted(set(self.before) | set(self.after))
        return [
            {"member": m, "before": self.before.get(m, 0), "after": self.after.get(m, 0)}
            for m in members
        ]

    def summary(self) -> str:
        return (
            f"{self.reason}: {len(self.rounds)} round(s), {self.moves} range move(s) over "
            f"{', '.join(self.members)}"
        )


def move_json(move: Move) -> dict[str, Any]:
    return {
        "range": str(move.range),
        "from": move.source,
        "to": move.target,
        "shards": len(move.range),
    }


def plan_id(current: ShardMap, members: Sequence[str], max_ranges_per_round: int) -> str:
    """``e<epoch>-<8 hex>``: a digest of the starting assignments, the target and the round size
    (restart requests and addresses move nothing and are left out)."""
    key = {
        "epoch": current.epoch,
        "shards": current.shards,
        "assignments": {m: rs.to_json() for m, rs in current.assignments.items()},
        "members": sorted(members),
        "maxRangesPerRound": max_ranges_per_round,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return f"e{current.epoch}-{digest}"


def plan_rebalance(
    current: ShardMap,
    members: Sequence[str],
    max_ranges_per_round: int,
    dead: Collection[str] = (),
) -> RebalancePlan | None:
    """The plan from ``current`` (a pending handoff counts as completed: it completes before
    the next round) to a balanced map over ``members``; None when nothing would move."""
    start = current.complete_handoff()
    rounds: list[tuple[Move, ...]] = []
    shard_map = start
    while len(rounds) < MAX_ROUNDS:
        nxt = shard_map.rebalance(members, max_ranges_per_round)
        if nxt is shard_map:
            break
        rounds.append(nxt.handoff.moves if nxt.handoff is not None else ())
        shard_map = nxt.complete_handoff()
    if not rounds:
        return None
    before = {m: n for m, n in start.counts().items() if n}
    after = {m: n for m, n in shard_map.counts().items() if n}
    return RebalancePlan(
        id=plan_id(start, members, max_ranges_per_round),
        reason=_reason(before, members, rounds, dead),
        from_epoch=start.epoch,
        members=tuple(sorted(members)),
        max_ranges_per_round=max_ranges_per_round,
        rounds=tuple(rounds),
        before=before,
        after=after,
    )


def _reason(
    before: Mapping[str, int],
    members: Sequence[str],
    rounds: Sequence[Sequence[Move]],
    dead: Collection[str],
) -> str:
    if any(m.source in dead for moves in rounds for m in moves if m.source is not None):
        return FAILOVER
    if any(m not in members for m in before):
        return SCALE_DOWN
    if any(m not in before for m in members):
        return SCALE_UP
    return REBALANCE


def failover_map(current: ShardMap, dead: Collection[str]) -> ShardMap:
    """The next epoch moving only the ranges of ``dead`` members (and unowned shards), to the
    members below their balanced count, as :func:`assign` would place them; ``current`` itself
    when there is nothing to move (or no survivor). Moves between live members are left to a
    later plan. ``current`` must not be in a handoff."""
    survivors = [m for m in current.assignments if m not in dead]
    if not survivors or not any(m in current.assignments for m in dead):
        return current
    balanced = assign(current.shards, survivors, current.assignments)
    moves = tuple(
        m for m in plan_moves(current.assignments, balanced) if m.source is None or m.source in dead
    )
    assignments = {m: current.assignments[m] for m in survivors}
    for move in moves:
        assignments[move.target] = assignments[move.target].union(RangeSet((move.range,)))
    epoch = current.epoch + 1
    return ShardMap(
        epoch=epoch,
        shards=current.shards,
        assignments=assignments,
        handoff=Handoff(epoch, moves, False) if moves else None,
        restarts={m: g for m, g in current.restarts.items() if m in assignments},
        addresses=current.addresses,
    )
