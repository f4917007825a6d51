"""Rebalances you can review: the gate of ``spec.rebalance.mode: manual`` over
:func:`.rebalancing.decide`.

Pure. :func:`review` takes the decision the operator would make on its own and the whole plan
from the published map to a balanced one (:mod:`.proposal`), and

* in ``auto`` mode returns the decision unchanged;
* in ``manual`` mode holds every new round until the plan is approved: it publishes the plan in
  ``status.proposedPlan`` (state ``AwaitingApproval``) and keeps the shard map (Rebalancing
  reason ``AwaitingApproval``). The annotation ``threadweaver.io/approve-rebalance: <plan id>``
  approves it (state ``Approved``); the plan's rounds then run one after the other, each once
  the previous handoff completed, as long as the recomputed remaining rounds are still the
  plan's. When they are not (the members changed: a scale, a member died or came up), the plan
  is stale: it is replaced by a new one, with a new id, and nothing of it runs.
* With ``autoApproveFailover`` (the default), a round that moves only the ranges of dead
  members runs at once (waiting would leave their shards unserved); whatever else must move
  is proposed as the next plan.

What is never gated: the first shard map, completing a handoff already published, addresses and
RMU restarts. The status is the plan's memory (an operator restart resumes from it).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from threadweaver.shards import RangeSet, ShardMap

from .events import Event
from .proposal import RebalancePlan, failover_map, plan_rebalance
from .rebalancing import (
    REBALANCE,
    WAIT,
    Decision,
    decide,
    statefulset_replicas,
    target_members,
)
from .spec_operations import RebalancePolicy
from .supervision import MemberView

__all__ = ["APPROVED", "APPROVE_ANNOTATION", "AWAITING_APPROVAL", "Review", "review"]

APPROVE_ANNOTATION = "threadweaver.io/approve-rebalance"
AWAITING_APPROVAL = "AwaitingApproval"
APPROVED = "Approved"
_DONE_REASONS = ("Balanced", "ScaledToZero", "Initialized")


@dataclass(frozen=True)
class Review:
    decision: Decision  # what this pass publishes
    plan: RebalancePlan | None  # the rounds still to run after this pass's step (None: none)
    plan_status: Mapping[str, Any] | None = None  # status.proposedPlan (manual mode)
    events: tuple[Event, ...] = ()  # announce the status write

    @property
    def now_moves(self) -> int:
        """Ranges this pass starts moving (a new round published)."""
        h = self.decision.shard_map.handoff
        return len(h.moves) if self.decision.action == REBALANCE and h is not None else 0


def review(
    cluster: str,
    shards: int,
    replicas: int,
    current: ShardMap | None,
    views: Mapping[str, MemberView],
    dead: Collection[str],
    rolling_update: bool,
    max_ranges_per_round: int,
    policy: RebalancePolicy,
    approval: str | None,
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> Review:
    """The decision of this pass under ``policy`` (see the module docstring). ``approval`` is
    the value of the approve annotation, ``previous`` the last ``status.proposedPlan``."""
    decision = decide(
        cluster, shards, replicas, current, views, dead, rolling_update, max_ranges_per_round
    )
    plan = _plan(cluster, replicas, current, views, dead, max_ranges_per_round, decision)
    if not policy.manual or current is None:
        return Review(decision, _after_now(plan, decision))
    gate = _Gate(cluster, replicas, current, decision, plan, previous, approval, now)
    if decision.action != REBALANCE:
        return gate.idle()
    if policy.auto_approve_failover:
        holding = sorted(m for m in dead if not current.assignments.get(m, RangeSet()).is_empty())
        if holding:
            return gate.failover(holding, views, dead, max_ranges_per_round)
    return gate.round()


def _plan(
    cluster: str,
    replicas: int,
    current: ShardMap | None,
    views: Mapping[str, MemberView],
    dead: Collection[str],
    max_ranges_per_round: int,
    decision: Decision,
) -> RebalancePlan | None:
    """Every round from ``current`` (its handoff completed) to balanced; None when nothing
    moves or no rebalance can be planned (no map, a shard-count mismatch, no member up)."""
    if current is None or replicas <= 0 or decision.reason == "ShardsMismatch":
        return None
    base = current.complete_handoff()
    target, _, _ = target_members(cluster, replicas, base, views, dead)
    if not target:
        return None
    return plan_rebalance(base, target, max_ranges_per_round, dead)


def _after_now(plan: RebalancePlan | None, decision: Decision) -> RebalancePlan | None:
    """In auto mode: the plan without the round this pass publishes."""
    if plan is None or decision.action != REBALANCE:
        return plan
    rest = plan.rounds[1:]
    return replace(plan, rounds=rest) if rest else None


def _stamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Gate:
    """One pass of the manual gate (the inputs every branch needs)."""

    cluster: str
    replicas: int
    current: ShardMap
    decision: Decision
    plan: RebalancePlan | None
    previous: Mapping[str, Any] | None
    approval: str | None
    now: datetime

    def idle(self) -> Review:
        """No new round is due: keep the plan while a round is in flight, members are awaited
        or a rolling update runs; drop it once the map is balanced."""
        prev = self.previous
        if self.decision.reason not in _DONE_REASONS:
            return Review(self.decision, self.plan, prev)
        events: tuple[Event, ...] = ()
        if prev:
            if prev.get("state") == APPROVED:
                event = Event("Normal", "RebalancePlanCompleted", f"plan {prev.get('id')} ran")
            else:
                event = Event(
                    "Normal",
                    "RebalancePlanWithdrawn",
                    f"plan {prev.get('id')} is not needed any more: "
                    f"{self.decision.message or self.decision.reason}",
                )
            events = (event,)
        return Review(self.decision, None, None, events)

    def failover(
        self,
        holding: list[str],
        views: Mapping[str, MemberView],
        dead: Collection[str],
        max_ranges_per_round: int,
    ) -> Review:
        """Move the ranges of the dead members now; propose what else must move."""
        moved = failover_map(self.current, holding)
        if moved is self.current:
            return self.round()
        moved = moved.with_addresses(self.decision.shard_map.addresses)
        n = len(moved.handoff.moves) if moved.handoff else 0
        decision = Decision(
            moved,
            statefulset_replicas(self.cluster, self.replicas, moved),
            REBALANCE,
            "Failover",
            f"published epoch {moved.epoch}: {n} range(s) move off dead member(s) "
            f"{', '.join(holding)} without approval (spec.rebalance.autoApproveFailover)",
            leaving=self.decision.leaving,
            waiting_for=self.decision.waiting_for,
            previous=self.current,
        )
        base = moved.complete_handoff()
        target, _, _ = target_members(self.cluster, self.replicas, base, views, dead)
        rest = plan_rebalance(base, target, max_ranges_per_round) if target else None
        if rest is None:
            events = self._replaced_by(None)
            return Review(decision, None, None, events)
        status = self._status(rest, AWAITING_APPROVAL)
        return Review(decision, rest, status, self._replaced_by(rest))

    def round(self) -> Review:
        """A new round is due: run it if it belongs to the approved plan, else hold it."""
        plan, prev = self.plan, self.previous
        if plan is None:  # pragma: no cover - decide() moves something, so a plan exists
            return Review(self.decision, None, prev)
        done = self._rounds_done(plan)
        if done is not None and prev is not None:
            total = len(prev.get("rounds") or ())
            decision = replace(
                self.decision,
                message=f"plan {prev.get('id')}, round {done + 1}/{total}: "
                + self.decision.message,
            )
            return Review(decision, _after_now(plan, decision), prev)
        if self.approval == plan.id:
            status = self._status(plan, APPROVED)
            event = Event(
                "Normal",
                "RebalanceApproved",
                f"plan {plan.id} approved ({plan.summary()}); round 1/{len(plan.rounds)} starts",
            )
            decision = replace(
                self.decision,
                message=f"plan {plan.id}, round 1/{len(plan.rounds)}: " + self.decision.message,
            )
            return Review(decision, _after_now(plan, decision), status, (event,))
        held = Decision(
            self.current.with_addresses(self.decision.shard_map.addresses),
            statefulset_replicas(self.cluster, self.replicas, self.current),
            WAIT,
            AWAITING_APPROVAL,
            f"plan {plan.id} ({plan.summary()}) awaits approval: "
            f"kubectl threadweaver approve {self.cluster} {plan.id}",
            leaving=self.decision.leaving,
            waiting_for=self.decision.waiting_for,
            previous=self.current,
        )
        return Review(held, plan, self._status(plan, AWAITING_APPROVAL), self._replaced_by(plan))

    # -- helpers -----------------------------------------------------------------------------

    def _rounds_done(self, plan: RebalancePlan) -> int | None:
        """How many rounds of the approved plan in the status ran, if the recomputed rounds are
        exactly its remaining ones (None: no approved plan, or a stale one)."""
        prev = self.previous
        if not prev or prev.get("state") != APPROVED:
            return None
        rounds = list(prev.get("rounds") or ())
        from_epoch = prev.get("fromEpoch")
        if not isinstance(from_epoch, int) or list(prev.get("members") or ()) != list(plan.members):
            return None
        done = self.current.epoch - from_epoch
        if not 0 <= done < len(rounds) or rounds[done:] != plan.rounds_json():
            return None
        return done

    def _status(self, plan: RebalancePlan, state: str) -> dict[str, Any]:
        prev = self.previous or {}
        same = prev.get("id") == plan.id
        stamp = _stamp(self.now)
        status: dict[str, Any] = {
            "id": plan.id,
            "state": state,
            "reason": plan.reason,
            "fromEpoch": plan.from_epoch,
            "maxRangesPerRound": plan.max_ranges_per_round,
            "members": list(plan.members),
            "rounds": plan.rounds_json(),
            "shards": plan.shards_json(),
            "proposedAt": (prev.get("proposedAt") or stamp) if same else stamp,
        }
        if state == APPROVED:
            status["approvedAt"] = (prev.get("approvedAt") if same else None) or stamp
        return status

    def _replaced_by(self, plan: RebalancePlan | None) -> tuple[Event, ...]:
        """The Event of a new proposal (none when it is the one already in the status)."""
        prev = self.previous
        if plan is not None and prev and prev.get("id") == plan.id:
            return ()
        if plan is None:
            if not prev:
                return ()
            return (
                Event(
                    "Normal",
                    "RebalancePlanReplaced",
                    f"plan {prev.get('id')} is stale (the members changed): nothing else to move",
                ),
            )
        how = f"kubectl threadweaver approve {self.cluster} {plan.id}"
        if prev:
            return (
                Event(
                    "Normal",
                    "RebalancePlanReplaced",
                    f"plan {prev.get('id')} is stale (the members changed): replaced by plan "
                    f"{plan.id} ({plan.summary()}); approve with: {how}",
                ),
            )
        return (
            Event(
                "Normal",
                "RebalanceProposed",
                f"plan {plan.id} ({plan.summary()}) awaits approval: {how}",
            ),
        )
