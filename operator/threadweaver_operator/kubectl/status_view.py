"""``kubectl threadweaver status CLUSTER``: the cluster at a glance.

Phase, conditions, epoch and replicas from the cluster's status; members with their ranges and
shard counts from the shard map; each member's Pod, Lease age, acknowledged epoch and RMUs (with
their lag) from its Lease; the rebalancing plan awaiting approval, if any; the read model served
and its rebuild, if one ran (status.readModel).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from threadweaver.shards import RangeSet

from .. import names
from ..cluster_view import members_from_map, published_map
from ..supervision import member_views
from .reading import Snapshot, observation
from .tables import table

__all__ = ["cluster_status", "render_status"]


def cluster_status(snapshot: Snapshot, now: datetime) -> dict[str, Any]:
    """The status as a JSON-ready dict (``-o json``)."""
    o = observation(snapshot, now)
    status = snapshot.status
    shard_map, map_error = published_map(o)
    mapped = members_from_map(shard_map)
    leases = {
        lease["metadata"]["name"]: lease
        for lease in snapshot.leases
        if names.ordinal(o.name, lease["metadata"]["name"]) is not None
        or lease["metadata"]["name"] in mapped
    }
    pods = {p["metadata"]["name"]: p for p in snapshot.pods}
    views = member_views(o.name, mapped | set(leases) | set(pods), leases, pods, now)
    members = []
    for member, view in views.items():
        assigned = shard_map.assignments.get(member, RangeSet()) if shard_map else RangeSet()
        lease = leases.get(member)
        rmus = [r.to_json() for r in view.status.rmus] if view.status else []
        members.append(
            {
                "member": member,
                "shards": assigned.count(),
                "ranges": str(assigned),
                "serving": str(shard_map.serving_ranges(member)) if shard_map else "",
                "pod": _pod_state(view.pod_exists, view.pod_ready, view.pod_terminating),
                "lease": {
                    "valid": view.lease_valid,
                    "ageSeconds": _lease_age(lease, now),
                    "ackedEpoch": view.acked_epoch,
                    "address": view.status.address if view.status else None,
                    "error": view.status_error,
                }
                if lease is not None
                else None,
                "rmus": rmus,
            }
        )
    spec = o.spec
    return {
        "cluster": o.name,
        "namespace": o.namespace,
        "phase": status.get("phase"),
        "epoch": shard_map.epoch if shard_map else status.get("epoch"),
        "shards": shard_map.shards if shard_map else (spec.shards if spec else None),
        "replicas": (snapshot.cluster.get("spec") or {}).get("replicas"),
        "readyReplicas": status.get("readyReplicas"),
        "rebalanceMode": spec.rebalance_policy.mode if spec else None,
        "handoff": _handoff(shard_map),
        "shardMapError": map_error,
        "conditions": [
            {k: c.get(k) for k in ("type", "status", "reason", "message")}
            for c in status.get("conditions") or []
            if isinstance(c, Mapping)
        ],
        "orphanedRmus": status.get("orphanedRmus"),
        "restartedRmus": status.get("restartedRmus"),
        "proposedPlan": _plan_summary(status.get("proposedPlan")),
        "readModel": status.get("readModel"),
        "members": members,
    }


def _pod_state(exists: bool, ready: bool, terminating: bool) -> str:
    if not exists:
        return "Absent"
    if terminating:
        return "Terminating"
    return "Ready" if ready else "NotReady"


def _lease_age(lease: Mapping[str, Any] | None, now: datetime) -> float | None:
    """Seconds since the Lease was last renewed (None: never, or unreadable)."""
    spec = (lease or {}).get("spec") or {}
    value = spec.get("renewTime") or spec.get("acquireTime")
    try:
        renewed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if renewed.tzinfo is None:
        renewed = renewed.replace(tzinfo=UTC)
    return round((now - renewed).total_seconds(), 1)


def _handoff(shard_map: Any) -> dict[str, Any] | None:
    if shard_map is None or shard_map.handoff is None:
        return None
    h = shard_map.handoff
    return {"epoch": h.epoch, "complete": h.complete, "moves": len(h.moves)}


def _read_model_line(read_model: Mapping[str, Any]) -> str:
    """``db (previous: old); rebuild into new: phase, caught-up shards, lag``."""
    line = str(read_model["database"])
    if read_model.get("previousDatabase"):
        line += f" (previous: {read_model['previousDatabase']})"
    rebuild = read_model.get("rebuild")
    if isinstance(rebuild, Mapping) and rebuild.get("phase") not in (None, "Complete"):
        line += f"; rebuild into {rebuild.get('database')}: {rebuild.get('phase')}"
        progress = rebuild.get("progress") or {}
        if progress.get("shards"):
            line += f", {progress.get('caughtUp', 0)}/{progress['shards']} shards within 1 s"
        if progress.get("lagSeconds") is not None:
            line += f", lag {progress['lagSeconds']} s"
    return line


def _plan_summary(plan: Any) -> dict[str, Any] | None:
    if not isinstance(plan, Mapping):
        return None
    rounds = plan.get("rounds") or []
    return {
        "id": plan.get("id"),
        "state": plan.get("state"),
        "reason": plan.get("reason"),
        "rounds": len(rounds),
        "moves": sum(len(r.get("moves") or []) for r in rounds if isinstance(r, Mapping)),
    }


def render_status(s: Mapping[str, Any]) -> str:
    """The table form."""
    ready = f"{s.get('readyReplicas') or 0}/{s.get('replicas')}"
    lines = [
        f"Cluster:    {s['namespace']}/{s['cluster']}",
        f"Phase:      {s.get('phase') or '-'}   Epoch: {s.get('epoch') or '-'}   "
        f"Shards: {s.get('shards') or '-'}   Ready: {ready}   "
        f"Rebalance: {s.get('rebalanceMode') or '-'}",
    ]
    if s.get("handoff"):
        h = s["handoff"]
        state = "complete" if h["complete"] else "in progress"
        lines.append(f"Handoff:    epoch {h['epoch']} {state} ({h['moves']} move(s))")
    if s.get("shardMapError"):
        lines.append(f"Shard map:  {s['shardMapError']}")
    read_model = s.get("readModel")
    if isinstance(read_model, Mapping) and read_model.get("database"):
        lines.append(f"Read model: {_read_model_line(read_model)}")
    plan = s.get("proposedPlan")
    if plan:
        lines.append(
            f"Plan:       {plan['id']} {plan['state']} ({plan['reason']}: {plan['rounds']} "
            f"round(s), {plan['moves']} move(s))"
            + (
                f"; approve: kubectl threadweaver approve {s['cluster']} {plan['id']}"
                if plan["state"] == "AwaitingApproval"
                else ""
            )
        )
    lines += ["", "Conditions:"]
    lines.append(
        _indent(
            table(
                ["type", "status", "reason", "message"],
                [(c["type"], c["status"], c["reason"], c["message"]) for c in s["conditions"]],
            )
        )
    )
    lines += ["", "Members:"]
    rows = []
    for m in s["members"]:
        lease = m["lease"] or {}
        rmus = m["rmus"]
        running = sum(1 for r in rmus if r.get("running"))
        lag = max((r.get("lagSeconds") or 0.0 for r in rmus), default=None)
        rows.append(
            (
                m["member"],
                m["pod"],
                _age(lease.get("ageSeconds")) + ("" if lease.get("valid", True) else " (expired)")
                if m["lease"]
                else "none",
                lease.get("ackedEpoch"),
                m["shards"],
                m["ranges"],
                f"{running}/{len(rmus)}" if rmus else None,
                f"{lag:.1f}s" if lag is not None else None,
            )
        )
    lines.append(
        _indent(
            table(
                ["member", "pod", "lease age", "acked", "shards", "ranges", "rmus", "max lag"],
                rows,
            )
        )
    )
    rmu_rows = [
        (
            m["member"],
            r.get("range"),
            "yes" if r.get("running") else "NO",
            r.get("lagEvents"),
            f"{r.get('lagSeconds') or 0.0:.1f}s",
            r.get("restarts"),
            r.get("lastError"),
        )
        for m in s["members"]
        for r in m["rmus"]
    ]
    if rmu_rows:
        lines += ["", "Read-model updaters:"]
        lines.append(
            _indent(
                table(
                    ["member", "range", "running", "lag events", "lag", "restarts", "last error"],
                    rmu_rows,
                )
            )
        )
    return "\n".join(lines)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
