"""``kubectl threadweaver rebalance CLUSTER --dry-run``: the moves the operator would make now,
round by round.

It builds the Observation the operator's pass would make of the same objects
(:func:`.reading.observation`) and calls the function that pass calls,
:func:`..cluster_view.review_cluster`: there is no second copy of the rebalancing rules. What
the operator does *now* (publish a round, complete a handoff, wait for acknowledgements or for
an approval) comes first, then every round still to run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from threadweaver.shards import Move

from ..cluster_view import cluster_view, review_cluster
from ..proposal import move_json
from ..rebalancing import REBALANCE
from ..review import APPROVED, AWAITING_APPROVAL
from .reading import PluginError, Snapshot, observation
from .tables import table

__all__ = ["dry_run", "render_dry_run"]


def dry_run(snapshot: Snapshot, now: datetime) -> dict[str, Any]:
    """The dry run as a JSON-ready dict (``-o json``)."""
    o = observation(snapshot, now)
    spec = o.valid_spec
    if spec is None:
        raise PluginError(
            "the spec is invalid, so the operator moves nothing until it is fixed: "
            + "; ".join(o.spec_problems)
        )
    view = cluster_view(o, spec)
    if view.map_error:
        raise PluginError(view.map_error)
    reviewed = review_cluster(o, spec, view)
    decision = reviewed.decision
    policy = spec.rebalance_policy
    current = view.current
    now_moves: Sequence[Move] = ()
    if decision.action == REBALANCE and decision.shard_map.handoff is not None:
        now_moves = decision.shard_map.handoff.moves
    elif current is not None and current.in_handoff and current.handoff is not None:
        now_moves = current.handoff.moves
    plan = reviewed.plan
    status = reviewed.plan_status or {}
    state = status.get("state") if policy.manual else None
    plan_json = None
    if plan is not None:
        approval_id = status.get("id") or plan.id
        plan_json = {
            "id": approval_id,
            "reason": plan.reason,
            "fromEpoch": plan.from_epoch,
            "members": list(plan.members),
            "rounds": plan.rounds_json(),
            "shards": plan.shards_json(),
            "approval": "not needed (spec.rebalance.mode auto)"
            if not policy.manual
            else "approved: the rounds run one after the other"
            if state == APPROVED
            else f"needed: kubectl threadweaver approve {o.name} {approval_id}",
        }
    return {
        "cluster": o.name,
        "namespace": o.namespace,
        "mode": policy.mode,
        "autoApproveFailover": policy.auto_approve_failover,
        "maxRangesPerRound": spec.max_ranges_per_round,
        "epoch": current.epoch if current else None,
        "now": {
            "action": decision.action,
            "reason": decision.reason,
            "message": decision.message,
            "epoch": decision.shard_map.epoch,
            "moves": [move_json(m) for m in now_moves],
            "inFlight": decision.action != REBALANCE and bool(now_moves),
        },
        "plan": plan_json,
        "proposedPlanState": state if state in (APPROVED, AWAITING_APPROVAL) else None,
    }


def render_dry_run(d: Mapping[str, Any]) -> str:
    lines = [
        f"Cluster:  {d['namespace']}/{d['cluster']}   epoch {d['epoch'] or '-'}   "
        f"mode {d['mode']} (autoApproveFailover {str(d['autoApproveFailover']).lower()}), "
        f"maxRangesPerRound {d['maxRangesPerRound']}",
        f"Next:     {d['now']['reason']}: {d['now']['message']}",
    ]
    rows: list[tuple[Any, ...]] = []
    if d["now"]["moves"]:
        label = f"in flight (epoch {d['now']['epoch']})" if d["now"]["inFlight"] else "next"
        rows += [_row(label, m) for m in d["now"]["moves"]]
    plan = d.get("plan")
    if plan:
        lines.append(
            f"Plan:     {plan['id']} ({plan['reason']}) over {', '.join(plan['members'])}: "
            f"{len(plan['rounds'])} round(s) after this pass; approval {plan['approval']}"
        )
        first = 1 if d["now"]["moves"] and not d["now"]["inFlight"] else 0
        for i, r in enumerate(plan["rounds"], start=first + 1):
            rows += [_row(i, m) for m in r["moves"]]
    elif not d["now"]["moves"]:
        lines.append("Plan:     nothing to move")
    if rows:
        lines += ["", table(["round", "range", "shards", "from", "to"], rows)]
    if plan:
        lines += [
            "",
            table(
                ["member", "before", "after"],
                [(s["member"], s["before"], s["after"]) for s in plan["shards"]],
            ),
        ]
    return "\n".join(lines)


def _row(label: Any, move: Mapping[str, Any]) -> tuple[Any, ...]:
    return (label, move["range"], move["shards"], move["from"] or "(unowned)", move["to"])
