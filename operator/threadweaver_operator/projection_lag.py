"""The cluster's projection lag, from the members' Leases, and its threshold
(``spec.projections.maxLagSeconds``).

Every member reports, per range its read-model updater serves, the lag ``/metrics`` shows
(``threadweaver_projection_lag_seconds``: the age of the oldest journal event not yet in the read
model, 0 when caught up) in its Lease's ``threadweaver.io/rmus`` annotation. The cluster's lag is
the largest over the ranges live members serve in the shard map: ``status.projectionLagSeconds``
(the ``Lag`` column of ``kubectl get twc -o wide``); above the threshold the ProjectionsHealthy
condition is False with reason ``Lagging`` (:mod:`.status`). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from threadweaver.shards import RangeSet, ShardMap

from .spec_operations import OperationsSpecError
from .supervision import MemberView

__all__ = [
    "DEFAULT_MAX_LAG_SECONDS",
    "ClusterLag",
    "ProjectionsSpec",
    "cluster_lag",
    "projections_spec",
]

DEFAULT_MAX_LAG_SECONDS = 30


@dataclass(frozen=True)
class ProjectionsSpec:
    """``spec.projections``: the lag above which the projections are unhealthy (seconds)."""

    max_lag_seconds: int = DEFAULT_MAX_LAG_SECONDS

    def problems(self) -> list[str]:
        if self.max_lag_seconds < 1:
            return ["spec.projections.maxLagSeconds: must be at least 1"]
        return []


def projections_spec(value: Any) -> ProjectionsSpec:
    """Parse ``spec.projections``; raises OperationsSpecError (a schema bypass) naming the
    field."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise OperationsSpecError(
            f"spec.projections: expected an object, got {type(value).__name__}"
        )
    max_lag = value.get("maxLagSeconds", DEFAULT_MAX_LAG_SECONDS)
    if isinstance(max_lag, bool) or not isinstance(max_lag, int):
        raise OperationsSpecError(
            f"spec.projections.maxLagSeconds: expected an integer, got {max_lag!r}"
        )
    return ProjectionsSpec(max_lag_seconds=max_lag)


@dataclass(frozen=True)
class ClusterLag:
    """The largest lag reported for a served range, where, and how many ranges reported."""

    seconds: float = 0.0
    events: int = 0
    member: str | None = None
    range: str | None = None
    reports: int = 0  # ranges whose lag is known

    @property
    def status_seconds(self) -> int:
        """``status.projectionLagSeconds``: whole seconds, so that the status changes rarely."""
        return round(self.seconds)

    def where(self) -> str:
        if self.member is None:
            return "no range reported"
        return f"shards {self.range} on {self.member}: {self.seconds:.1f} s, {self.events} events"


def cluster_lag(shard_map: ShardMap | None, views: Mapping[str, MemberView]) -> ClusterLag:
    """The lag of the cluster: the largest over the ranges live members serve in `shard_map`
    (ranges on the move or of members not live are not counted: their members report nothing
    current)."""
    if shard_map is None:
        return ClusterLag()
    worst = ClusterLag()
    reports = 0
    for member in shard_map.assignments:
        view = views.get(member)
        if view is None or not view.live or view.status is None:
            continue
        serving = shard_map.serving_ranges(member)
        for rmu in view.status.rmus:
            if not RangeSet((rmu.range,)).issubset(serving):
                continue
            reports += 1
            if (rmu.lag_seconds, rmu.lag_events) > (worst.seconds, worst.events):
                worst = ClusterLag(rmu.lag_seconds, rmu.lag_events, member, str(rmu.range))
    return ClusterLag(worst.seconds, worst.events, worst.member, worst.range, reports)
