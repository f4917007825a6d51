"""``approve`` and ``restart-rmu``: annotations on the ThreadWeaverCluster that the operator
acts on (the plugin never calls pods)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..review import APPROVE_ANNOTATION, APPROVED, AWAITING_APPROVAL
from ..rmu_requests import RESTART_ANNOTATION, parse_request
from .reading import PluginError, Session

__all__ = ["approve", "restart_rmu"]


async def approve(session: Session, name: str, plan_id: str) -> str:
    """Approve the plan awaiting approval, if ``plan_id`` is its id; the message to print."""
    cluster = await session.cluster(name)
    mode = ((cluster.get("spec") or {}).get("rebalance") or {}).get("mode") or "auto"
    plan: Mapping[str, Any] = (cluster.get("status") or {}).get("proposedPlan") or {}
    if mode != "manual" and not plan:
        raise PluginError(
            f"{name} rebalances by itself (spec.rebalance.mode {mode}): there is nothing to approve"
        )
    if not plan:
        raise PluginError(
            f"no rebalancing plan awaits approval on {name} (see kubectl threadweaver "
            f"rebalance {name} --dry-run)"
        )
    if plan.get("id") != plan_id:
        raise PluginError(
            f"plan {plan_id} is not the proposed plan of {name}: the proposal is {plan.get('id')} "
            "(the members changed since; review it with "
            f"kubectl threadweaver rebalance {name} --dry-run)"
        )
    if plan.get("state") == APPROVED:
        return f"plan {plan_id} of {name} is approved already"
    if plan.get("state") != AWAITING_APPROVAL:  # pragma: no cover - the CRD's enum
        raise PluginError(f"plan {plan_id} is in state {plan.get('state')!r}")
    await session.annotate(name, {APPROVE_ANNOTATION: plan_id})
    rounds = len(plan.get("rounds") or ())
    return (
        f"plan {plan_id} of {name} approved: the operator starts round 1 of {rounds} "
        "within a few seconds (kubectl threadweaver status shows the progress)"
    )


async def restart_rmu(session: Session, name: str, range_text: str, now: datetime) -> str:
    """Ask the operator to restart the RMUs of ``range_text``; the message to print."""
    cluster = await session.cluster(name)
    shards = (cluster.get("spec") or {}).get("shards") or 1024
    try:
        r = parse_request(range_text, int(shards))
    except ValueError as exc:
        raise PluginError(f"RANGE: {exc}") from None
    nonce = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    await session.annotate(name, {RESTART_ANNOTATION: f"{r}@{nonce}"})
    return (
        f"restart of the read-model updaters of shards {r} on {name} requested: the operator "
        "asks the members serving them within a few seconds (Event RmuRestartRequested)"
    )
