"""The cluster's projection lag in the operator: the largest over the ranges live members serve
(from their Leases), status.projectionLagSeconds, ProjectionsHealthy=False/Lagging above
spec.projections.maxLagSeconds, and an Event when it turns Lagging (and when it ends)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.operator.test_operator_planning import (
    _migrated_observation,
    condition,
    posted,
    written_status,
)
from threadweaver.shards import MemberStatus, RmuState, ShardMap, ShardRange
from threadweaver_operator import names, planning
from threadweaver_operator.projection_lag import (
    ClusterLag,
    ProjectionsSpec,
    cluster_lag,
    projections_spec,
)
from threadweaver_operator.spec import ClusterSpec, SpecError
from threadweaver_operator.status import Condition, Observed, build_status, conditions, phase
from threadweaver_operator.supervision import MemberView

C = "tw"


def m(i: int) -> str:
    return names.member(C, i)


def view(member: str, *rmus: RmuState, live: bool = True) -> MemberView:
    return MemberView(
        name=member,
        ordinal=names.ordinal(C, member),
        has_lease=True,
        lease_valid=live,
        status=MemberStatus(member, 1, rmus=rmus),
        pod_exists=True,
        pod_ready=True,
    )


def rmu(r: ShardRange, seconds: float, events: int = 0) -> RmuState:
    return RmuState(r, running=True, lag_seconds=seconds, lag_events=events)


def test_the_cluster_lag_is_the_largest_of_the_ranges_live_members_serve():
    smap = ShardMap.initial(90, [m(0), m(1), m(2)])
    r0, r1, r2 = (smap.assignments[m(i)].ranges[0] for i in range(3))
    views = {
        m(0): view(m(0), rmu(r0, 2.5, 10)),
        m(1): view(m(1), rmu(r1, 40.0, 700), rmu(ShardRange(0, 5), 900.0)),  # not its range
        m(2): view(m(2), rmu(r2, 500.0), live=False),  # its Lease expired: not current
    }
    lag = cluster_lag(smap, views)
    assert (lag.seconds, lag.events, lag.member, lag.range) == (40.0, 700, m(1), str(r1))
    assert lag.reports == 2 and lag.status_seconds == 40
    assert "40.0 s, 700 events" in lag.where() and m(1) in lag.where()
    assert cluster_lag(None, views) == ClusterLag()
    caught_up = cluster_lag(smap, {m(0): view(m(0), rmu(r0, 0.0))})
    assert caught_up.seconds == 0.0 and caught_up.reports == 1


def observed(**kw) -> Observed:
    base = dict(
        generation=2,
        replicas=3,
        provisioned=Condition("Provisioned", "True", "TablesReady"),
        migrated=Condition("Migrated", "True", "Migrated"),
        statefulset_exists=True,
        pods=3,
        ready_pods=3,
        epoch=4,
        rmu_reports=3,
    )
    base.update(kw)
    return Observed(**base)


def projections(o: Observed):
    return next(c for c in conditions(o) if c.type == "ProjectionsHealthy")


@pytest.mark.parametrize(
    "seconds,max_lag,status,reason",
    [
        (0.0, 30, "True", "AllRunning"),
        (30.0, 30, "True", "AllRunning"),  # at the limit: healthy
        (30.6, 30, "False", "Lagging"),
        (6.0, 5, "False", "Lagging"),
    ],
)
def test_projections_are_lagging_above_the_limit(seconds, max_lag, status, reason):
    lag = ClusterLag(seconds, 12, m(1), "30-60", 3)
    c = projections(observed(lag=lag, max_lag_seconds=max_lag))
    assert (c.status, c.reason) == (status, reason)
    if reason == "Lagging":
        assert f"above spec.projections.maxLagSeconds ({max_lag} s)" in c.message
        assert m(1) in c.message and "30-60" in c.message


def test_orphaned_updaters_come_before_the_lag_and_the_phase_is_not_changed_by_it():
    lag = ClusterLag(100.0, 1, m(0), "0-30", 3)
    assert projections(observed(lag=lag, orphaned=1)).reason == "OrphanedRmus"
    o = observed(lag=lag)
    assert phase(o, conditions(o)) == "Running"


def test_the_status_carries_the_lag_in_whole_seconds():
    status = build_status(observed(lag=ClusterLag(12.6, 3, m(0), "0-30", 3)), None)
    assert status["projectionLagSeconds"] == 13
    assert "projectionLagSeconds" not in build_status(observed(), None)


def test_the_spec_defaults_and_checks_max_lag_seconds():
    base = {"image": "i", "readModel": {"mysql": {"host": "db"}}}
    assert ClusterSpec.from_resource("c", "n", base).projections == ProjectionsSpec(30)
    spec = ClusterSpec.from_resource("c", "n", {**base, "projections": {"maxLagSeconds": 5}})
    assert spec.projections.max_lag_seconds == 5 and spec.problems() == []
    zero = ClusterSpec.from_resource("c", "n", {**base, "projections": {"maxLagSeconds": 0}})
    assert "spec.projections.maxLagSeconds: must be at least 1" in zero.problems()
    with pytest.raises(SpecError, match="maxLagSeconds: expected an integer"):
        ClusterSpec.from_resource("c", "n", {**base, "projections": {"maxLagSeconds": "5"}})
    assert projections_spec(None) == ProjectionsSpec()


# -- a reconcile pass ---------------------------------------------------------------------------

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def lease(member: str, status: MemberStatus) -> dict:
    renew = (NOW - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "metadata": {"name": member, "annotations": status.to_annotations()},
        "spec": {"holderIdentity": member, "leaseDurationSeconds": 15, "renewTime": renew},
    }


def with_lag(seconds: float, previous: dict | None = None):
    """The cluster of test_operator_planning, its members reporting `seconds` of lag on chat-1."""
    o = _migrated_observation(now=NOW)
    smap = ShardMap.initial(64, ["chat-0", "chat-1", "chat-2"])
    leases = tuple(
        lease(
            member,
            MemberStatus(
                member,
                smap.epoch,
                owned=smap.serving_ranges(member),
                rmus=tuple(
                    rmu(r, seconds if member == "chat-1" else 0.0, 5)
                    for r in smap.serving_ranges(member)
                ),
            ),
        )
        for member in smap.assignments
    )
    return replace(o, leases=leases, previous=previous or {})


def test_a_pass_reports_the_lag_and_warns_once_when_it_turns_lagging():
    healthy = written_status(planning.plan(with_lag(1.2)))
    assert healthy["projectionLagSeconds"] == 1
    assert condition(healthy, "ProjectionsHealthy")["reason"] == "AllRunning"

    turning = planning.plan(with_lag(45.0, healthy))
    lagging = written_status(turning)
    assert lagging["projectionLagSeconds"] == 45
    c = condition(lagging, "ProjectionsHealthy")
    assert (c["status"], c["reason"]) == ("False", "Lagging")
    warnings = [msg for reason, msg in posted(turning) if reason == "ProjectionsLagging"]
    assert len(warnings) == 1 and "chat-1" in warnings[0]

    still = planning.plan(with_lag(50.0, lagging))
    assert not [r for r, _ in posted(still) if r == "ProjectionsLagging"]

    back = planning.plan(with_lag(0.0, written_status(still)))
    assert condition(written_status(back), "ProjectionsHealthy")["reason"] == "AllRunning"
    assert [r for r, _ in posted(back) if r == "ProjectionsCaughtUp"] == ["ProjectionsCaughtUp"]
