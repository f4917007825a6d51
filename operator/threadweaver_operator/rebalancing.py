"""Pure rebalancing decisions: from what is published and observed, the next step.

One call of :func:`decide` per reconcile; the handler applies the result (publishes the map,
sets the StatefulSet's replicas) and calls again a few seconds later. Every step is safe to
repeat and to resume after an operator restart, since it depends only on observed state.

Rules:

* **Initialize**: no shard map yet: epoch 1, shards in contiguous blocks over
  ``<name>-0 .. <name>-(replicas-1)``; nobody served anything before, so no handoff.
* **Complete the handoff** of the published epoch once every losing member acknowledged it
  (``acked-epoch`` in its Lease) or is gone (no valid Lease): :meth:`ShardMap.pending_acks`.
  While it is incomplete nothing else changes.
* **Scale up**: the StatefulSet's replicas are raised at once; a new member joins the next
  rebalance when it is *up* (Lease valid or Pod Ready).
* **Scale down**: members with ordinal >= ``spec.replicas`` leave the target; their ranges move
  away (all at once: ``limit_moves`` never delays moves off leaving members), and the
  StatefulSet keeps them until that handoff is complete; only then are its replicas lowered.
* **Dead members** (see :mod:`.supervision`) leave the target; their ranges are reassigned.
* **Rolling update**: while the StatefulSet rolls out a new template, no new round starts
  (members restart one by one; moving shards at the same time would double the disruption).
* **Rounds**: at most ``maxRangesPerRound`` ranges move between live members per epoch.
* ``replicas == 0``: the StatefulSet goes to zero, the map is kept (nobody serves; scaling up
  again resumes from it; members that do not come back are dead and lose their ranges).
* **Addresses**: the map carries the address each live member advertises in its Lease, which
  members use to forward commands (without it they fall back to pod DNS through the headless
  Service); it changes no epoch.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from threadweaver.shards import ShardMap, ShardMapError

from . import names
from .supervision import MemberView

__all__ = [
    "Decision",
    "decide",
    "rolling_update_in_progress",
    "statefulset_replicas",
    "target_members",
]

INITIALIZE = "initialize"
REBALANCE = "rebalance"
COMPLETE = "complete-handoff"
WAIT = "wait"
STEADY = "steady"


@dataclass(frozen=True)
class Decision:
    shard_map: ShardMap
    statefulset_replicas: int
    action: str
    reason: str  # CamelCase, used as the Rebalancing condition's reason
    message: str
    pending_acks: frozenset[str] = frozenset()
    leaving: tuple[str, ...] = ()
    waiting_for: tuple[str, ...] = ()  # desired members not up yet
    previous: ShardMap | None = field(default=None, compare=False)

    @property
    def changed(self) -> bool:
        return self.previous is None or self.shard_map.dumps() != self.previous.dumps()

    @property
    def rebalancing(self) -> bool:
        """True while shards move or wait to move (the Rebalancing condition)."""
        return (
            self.action in (REBALANCE, COMPLETE)
            or self.shard_map.in_handoff
            or self.reason
            in (
                "AwaitingAcks",
                "AwaitingApproval",
                "Draining",
                "WaitingForMembers",
                "RollingUpdate",
                "Unbalanced",
            )
        )


def statefulset_replicas(cluster: str, replicas: int, shard_map: ShardMap | None) -> int:
    """Replicas the StatefulSet must have: ``replicas``, or more while a member with a higher
    ordinal still holds shards or must still acknowledge a handoff (it is being drained)."""
    if shard_map is None or replicas == 0:
        return max(replicas, 0)
    holding = {m for m, rs in shard_map.assignments.items() if not rs.is_empty()}
    if shard_map.in_handoff and shard_map.handoff is not None:
        holding |= shard_map.handoff.losing_members()
    need = replicas
    for m in holding:
        o = names.ordinal(cluster, m)
        if o is not None and o >= replicas:
            need = max(need, o + 1)
    return need


def rolling_update_in_progress(statefulset: Mapping[str, Any] | None) -> bool:
    """True while the StatefulSet controller has not caught up with the template."""
    if not statefulset:
        return False
    meta = statefulset.get("metadata") or {}
    status = statefulset.get("status") or {}
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return True
    current, update = status.get("currentRevision"), status.get("updateRevision")
    return bool(current and update and current != update)


def decide(
    cluster: str,
    shards: int,
    replicas: int,
    current: ShardMap | None,
    views: Mapping[str, MemberView],
    dead: Collection[str] = (),
    rolling_update: bool = False,
    max_ranges_per_round: int = 8,
) -> Decision:
    """The next rebalancing step (see the module docstring)."""
    decision = _decide(
        cluster, shards, replicas, current, views, dead, rolling_update, max_ranges_per_round
    )
    addresses = {
        m: v.status.address
        for m, v in views.items()
        if v.live and v.status is not None and v.status.address and m not in dead
    }
    if dict(decision.shard_map.addresses) == addresses:
        return decision
    return replace(decision, shard_map=decision.shard_map.with_addresses(addresses))


def _decide(
    cluster: str,
    shards: int,
    replicas: int,
    current: ShardMap | None,
    views: Mapping[str, MemberView],
    dead: Collection[str],
    rolling_update: bool,
    max_ranges_per_round: int,
) -> Decision:
    desired = names.members(cluster, max(replicas, 0))
    if current is None:
        new = ShardMap.initial(shards, desired)
        return Decision(
            new,
            max(replicas, 0),
            INITIALIZE,
            "Initialized",
            f"published epoch {new.epoch}: {shards} shards over {len(desired)} members",
            previous=None,
        )
    if current.shards != shards:
        return Decision(
            current,
            statefulset_replicas(cluster, replicas, current),
            WAIT,
            "ShardsMismatch",
            f"the published shard map has {current.shards} shards, the spec {shards}: "
            "shards cannot change on a live cluster",
            previous=current,
        )

    if current.in_handoff:
        acked = {m: v.acked_epoch for m, v in views.items() if v.live and m not in dead}
        pending = current.pending_acks(acked)
        if pending:
            return Decision(
                current,
                statefulset_replicas(cluster, replicas, current),
                WAIT,
                "AwaitingAcks",
                f"epoch {current.epoch}: waiting for {', '.join(sorted(pending))} to hand off",
                pending_acks=pending,
                previous=current,
            )
        new = current.complete_handoff()
        return Decision(
            new,
            statefulset_replicas(cluster, replicas, new),
            COMPLETE,
            "HandoffComplete",
            f"epoch {new.epoch}: handoff complete",
            previous=current,
        )

    if replicas <= 0:
        return Decision(
            current, 0, STEADY, "ScaledToZero", "no members: nothing serves", previous=current
        )

    target, leaving, waiting = target_members(cluster, replicas, current, views, dead)
    sts = statefulset_replicas(cluster, replicas, current)

    if not target:
        return Decision(
            current,
            sts,
            WAIT,
            "WaitingForMembers",
            "no member is up yet",
            leaving=leaving,
            waiting_for=waiting,
            previous=current,
        )
    try:
        new = current.rebalance(target, max_ranges_per_round)
    except ShardMapError as exc:  # pragma: no cover - guarded by in_handoff above
        return Decision(current, sts, WAIT, "RebalanceRefused", str(exc), previous=current)
    if new is current or new == current:
        if waiting:
            return Decision(
                current,
                sts,
                WAIT,
                "WaitingForMembers",
                f"waiting for {', '.join(waiting)} to come up",
                waiting_for=waiting,
                previous=current,
            )
        return Decision(
            current, sts, STEADY, "Balanced", f"epoch {current.epoch}: balanced", previous=current
        )
    if rolling_update:
        return Decision(
            current,
            sts,
            WAIT,
            "RollingUpdate",
            "the StatefulSet is rolling out: rebalancing resumes afterwards",
            leaving=leaving,
            waiting_for=waiting,
            previous=current,
        )
    moves = len(new.handoff.moves) if new.handoff else 0
    what = f"draining {', '.join(leaving)}; " if leaving else ""
    return Decision(
        new,
        statefulset_replicas(cluster, replicas, new),
        REBALANCE,
        "Draining" if leaving else "Rebalancing",
        f"published epoch {new.epoch}: {what}{moves} range(s) move",
        leaving=leaving,
        waiting_for=waiting,
        previous=current,
    )


def target_members(
    cluster: str,
    replicas: int,
    current: ShardMap,
    views: Mapping[str, MemberView],
    dead: Collection[str] = (),
) -> tuple[list[str], tuple[str, ...], tuple[str, ...]]:
    """The members a rebalance of ``current`` spreads the shards over, the members that leave
    (assigned but not in the target: ordinal >= ``replicas``, or dead) and the desired members
    not up yet (they join a later rebalance). A dead member is never a target, even once it
    holds nothing and its Pod still reports Ready (a hung process, or a fake node's Pod): its
    ranges moved off it, and they move back only once its Lease is valid again."""
    desired = names.members(cluster, max(replicas, 0))
    assigned = set(current.assignments)
    dead_set = set(dead)
    waiting = tuple(m for m in desired if m not in assigned and not _up(views, m))
    target = [m for m in desired if m not in dead_set and (m in assigned or _up(views, m))]
    leaving = tuple(sorted(m for m in assigned if m not in target))
    return target, leaving, waiting


def _up(views: Mapping[str, MemberView], member: str) -> bool:
    view = views.get(member)
    return view is not None and view.up
