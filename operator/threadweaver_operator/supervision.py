"""Pure supervision: who is alive, who is dead, which read-model updaters are orphaned.

The operator never calls pods. It reads, per member (pod ``<cluster>-<i>``):

* the member's Lease (``coordination.k8s.io/v1``, named after the pod): valid while
  ``renewTime + leaseDurationSeconds > now``; its annotations are a
  :class:`~threadweaver.shards.MemberStatus` (acknowledged epoch, RMU states);
* the member's Pod: present or not, terminating or not, Ready or not.

A member is

* **live** when its Lease is valid: it may be serving, so it must acknowledge handoffs;
* **up** when live or its Pod is Ready (a scale-up includes it in the next rebalance);
* **dead** when its Lease expired more than ``dead_after`` seconds ago, or its Pod is gone or
  terminating and its Lease is not valid ("pod deleted"), or it has neither Pod nor Lease and
  its ordinal is at or above the StatefulSet's replicas (it will not come back). A dead member
  acknowledges by absence and its ranges are reassigned by the next rebalance.

An RMU is **orphaned** when a range a live member serves reports ``running: false`` (it crashed
past its backoff) or when its member is dead. The first kind gets a restart request in the shard
map (:meth:`ShardMap.request_restart`), at most once per ``cooldown`` seconds per range; the
second kind is healed by reassigning the range.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from threadweaver.shards import MembershipError, MemberStatus, RangeSet, ShardMap, ShardRange

from . import names

__all__ = [
    "DEAD_AFTER_SECONDS",
    "RESTART_COOLDOWN_SECONDS",
    "MemberView",
    "Supervision",
    "dead_members",
    "member_view",
    "member_views",
    "supervise",
]

DEAD_AFTER_SECONDS = 30.0
RESTART_COOLDOWN_SECONDS = 30.0


@dataclass(frozen=True)
class MemberView:
    """What the operator knows about one member at one instant."""

    name: str
    ordinal: int | None = None
    has_lease: bool = False
    lease_valid: bool = False
    expired_for: float = 0.0  # seconds since the lease expired (0 when valid or absent)
    status: MemberStatus | None = None
    status_error: str | None = None  # malformed annotations
    pod_exists: bool = False
    pod_ready: bool = False
    pod_terminating: bool = False

    @property
    def live(self) -> bool:
        return self.lease_valid

    @property
    def up(self) -> bool:
        return self.lease_valid or (self.pod_exists and self.pod_ready and not self.pod_terminating)

    @property
    def acked_epoch(self) -> int:
        return self.status.acked_epoch if self.status else 0

    def is_dead(
        self, statefulset_replicas: int | None, dead_after: float = DEAD_AFTER_SECONDS
    ) -> bool:
        if self.lease_valid:
            return False
        if self.has_lease and self.expired_for > dead_after:
            return True
        pod_gone = not self.pod_exists or self.pod_terminating
        if pod_gone and self.has_lease:
            return True  # pod deleted and its lease lapsed
        if not self.pod_exists and not self.has_lease:
            # Never started (or long gone): dead only if the StatefulSet will not (re)create it.
            if self.ordinal is None:
                return True
            return statefulset_replicas is not None and self.ordinal >= statefulset_replicas
        return False


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def member_view(
    cluster: str,
    member: str,
    lease: Mapping[str, Any] | None,
    pod: Mapping[str, Any] | None,
    now: datetime,
) -> MemberView:
    """Build a :class:`MemberView` from raw Lease and Pod objects (dicts as the API returns)."""
    has_lease = lease is not None
    valid = False
    expired_for = 0.0
    status: MemberStatus | None = None
    status_error: str | None = None
    if lease is not None:
        spec = lease.get("spec") or {}
        renew = _parse_time(spec.get("renewTime") or spec.get("acquireTime"))
        duration = spec.get("leaseDurationSeconds") or 0
        if renew is not None:
            expiry = renew + timedelta(seconds=int(duration))
            valid = expiry > now
            expired_for = 0.0 if valid else (now - expiry).total_seconds()
        else:
            expired_for = float("inf")
        try:
            status = MemberStatus.from_annotations(
                member, (lease.get("metadata") or {}).get("annotations")
            )
        except MembershipError as exc:
            status_error = str(exc)
    pod_exists = pod is not None
    ready = terminating = False
    if pod is not None:
        terminating = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                ready = True
    return MemberView(
        name=member,
        ordinal=names.ordinal(cluster, member),
        has_lease=has_lease,
        lease_valid=valid,
        expired_for=expired_for,
        status=status,
        status_error=status_error,
        pod_exists=pod_exists,
        pod_ready=ready,
        pod_terminating=terminating,
    )


def member_views(
    cluster: str,
    candidates: Iterable[str],
    leases: Mapping[str, Mapping[str, Any]],
    pods: Mapping[str, Mapping[str, Any]],
    now: datetime,
) -> dict[str, MemberView]:
    return {
        m: member_view(cluster, m, leases.get(m), pods.get(m), now) for m in sorted(set(candidates))
    }


@dataclass(frozen=True)
class Supervision:
    """The outcome of one supervision pass."""

    shard_map: ShardMap  # with restart requests added (or unchanged)
    dead: frozenset[str] = frozenset()
    stopped: tuple[tuple[str, ShardRange], ...] = ()  # orphaned RMUs on live members
    restarted: tuple[tuple[str, ShardRange], ...] = ()  # restart requests added now
    unowned: tuple[tuple[str, ShardRange], ...] = ()  # ranges held by dead members
    errors: tuple[str, ...] = ()  # malformed lease annotations
    reports: int = 0  # live members that report RMUs
    restart_times: Mapping[str, float] = field(default_factory=dict)

    @property
    def orphaned(self) -> int:
        return len(self.stopped) + len(self.unowned)


def restart_key(member: str, r: ShardRange) -> str:
    return f"{member}/{r}"


def dead_members(
    views: Mapping[str, MemberView],
    statefulset_replicas: int | None,
    dead_after: float = DEAD_AFTER_SECONDS,
) -> frozenset[str]:
    """The members judged dead (see the module docstring)."""
    return frozenset(m for m, v in views.items() if v.is_dead(statefulset_replicas, dead_after))


def supervise(
    shard_map: ShardMap,
    views: Mapping[str, MemberView],
    statefulset_replicas: int | None,
    now: float,
    last_restarts: Mapping[str, float] | None = None,
    cooldown: float = RESTART_COOLDOWN_SECONDS,
    dead_after: float = DEAD_AFTER_SECONDS,
) -> Supervision:
    """Find dead members and orphaned RMUs; add restart requests for stopped RMUs of live
    members (``now`` and ``last_restarts`` are monotonic seconds, for the cooldown)."""
    last = dict(last_restarts or {})
    dead = dead_members(views, statefulset_replicas, dead_after)
    stopped: list[tuple[str, ShardRange]] = []
    restarted: list[tuple[str, ShardRange]] = []
    unowned: list[tuple[str, ShardRange]] = []
    errors: list[str] = []
    reports = 0
    new_map = shard_map
    for member, ranges in shard_map.assignments.items():
        view = views.get(member)
        if view is None:
            continue
        if member in dead:
            unowned.extend((member, r) for r in ranges)
            continue
        if view.status_error:
            errors.append(view.status_error)
        if not view.live or view.status is None:
            continue
        if view.status.rmus:
            reports += 1
        serving = shard_map.serving_ranges(member)
        for rmu in view.status.stopped_rmus():
            if not RangeSet((rmu.range,)).issubset(serving):
                continue  # moving or stale: the handoff takes care of it
            stopped.append((member, rmu.range))
            key = restart_key(member, rmu.range)
            if now - last.get(key, float("-inf")) >= cooldown:
                new_map = new_map.request_restart(member, rmu.range)
                restarted.append((member, rmu.range))
                last[key] = now
    return Supervision(
        shard_map=new_map,
        dead=dead,
        stopped=tuple(stopped),
        restarted=tuple(restarted),
        unowned=tuple(unowned),
        errors=tuple(errors),
        reports=reports,
        restart_times=last,
    )
