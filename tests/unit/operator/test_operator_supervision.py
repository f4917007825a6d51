"""Supervision (dead members, orphaned RMUs, restart requests) and status decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threadweaver.shards import MemberStatus, RmuState, ShardMap, ShardRange
from threadweaver_operator import names
from threadweaver_operator.status import (
    Condition,
    Observed,
    build_status,
    conditions,
    merge_conditions,
    phase,
)
from threadweaver_operator.supervision import MemberView, member_view, supervise

C = "tw"
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def m(i: int) -> str:
    return names.member(C, i)


def lease(
    member: str, renewed_ago: float, duration: int = 15, status: MemberStatus | None = None
) -> dict:
    renew = (NOW - timedelta(seconds=renewed_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "metadata": {
            "name": member,
            "annotations": (status or MemberStatus(member)).to_annotations(),
        },
        "spec": {"holderIdentity": member, "leaseDurationSeconds": duration, "renewTime": renew},
    }


def pod(member: str, ready: bool = True, terminating: bool = False) -> dict:
    meta = {"name": member}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T11:59:00Z"
    return {
        "metadata": meta,
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


@pytest.mark.parametrize(
    "lease_ago,pod_state,sts,dead",
    [
        (1, "ready", 3, False),  # healthy
        (20, "ready", 3, False),  # lease just expired (5 s): not dead yet
        (50, "ready", 3, True),  # expired 35 s ago > 30 s
        (20, "gone", 3, True),  # pod deleted and lease lapsed
        (20, "terminating", 3, True),
        (1, "gone", 3, False),  # lease still valid: the process may still serve
        (None, "gone", 3, False),  # never started: the StatefulSet will create it
        (None, "gone", 2, True),  # never started and never will (ordinal 2 >= 2 replicas)
        (None, "ready", 3, False),  # pod up, no lease yet
    ],
)
def test_dead_classification(lease_ago, pod_state, sts, dead):
    member = m(2)
    le = lease(member, lease_ago) if lease_ago is not None else None
    po = None if pod_state == "gone" else pod(member, terminating=pod_state == "terminating")
    v = member_view(C, member, le, po, NOW)
    assert v.is_dead(sts) is dead


def test_member_view_reads_status_and_liveness():
    st = MemberStatus(m(0), acked_epoch=7)
    v = member_view(C, m(0), lease(m(0), 3, status=st), pod(m(0)), NOW)
    assert v.live and v.up and v.acked_epoch == 7 and v.ordinal == 0
    bad = lease(m(1), 1)
    bad["metadata"]["annotations"]["threadweaver.io/acked-epoch"] = "seven"
    v = member_view(C, m(1), bad, pod(m(1)), NOW)
    assert v.status is None and "acked-epoch" in v.status_error


def _live(member: str, *rmus: RmuState, acked: int = 1) -> MemberView:
    return MemberView(
        name=member,
        ordinal=names.ordinal(C, member),
        has_lease=True,
        lease_valid=True,
        status=MemberStatus(member, acked, rmus=rmus),
        pod_exists=True,
        pod_ready=True,
    )


def test_stopped_rmu_on_live_member_gets_one_restart_per_cooldown():
    smap = ShardMap.initial(100, [m(0), m(1)])
    r = smap.assignments[m(0)].ranges[0]
    views = {
        m(0): _live(m(0), RmuState(r, running=False, last_error="boom")),
        m(1): _live(m(1), RmuState(ShardRange(50, 100), True)),
    }
    s1 = supervise(smap, views, 2, now=100.0)
    assert s1.stopped == ((m(0), r),) and s1.restarted == ((m(0), r),) and s1.orphaned == 1
    assert s1.shard_map.restart_generations(m(0)) == {str(r): 1}
    assert s1.shard_map.epoch == smap.epoch  # restarts do not bump the epoch
    s2 = supervise(s1.shard_map, views, 2, now=110.0, last_restarts=s1.restart_times)
    assert s2.restarted == () and s2.orphaned == 1
    s3 = supervise(s1.shard_map, views, 2, now=140.0, last_restarts=s1.restart_times)
    assert s3.shard_map.restart_generations(m(0)) == {str(r): 2}


def test_moving_ranges_are_not_restarted():
    smap = ShardMap.initial(100, [m(0), m(1)]).rebalance([m(0), m(1), m(2)])
    losing = smap.losing(m(0)).ranges[0]
    views = {
        m(0): _live(m(0), RmuState(losing, running=False)),
        m(1): _live(m(1)),
        m(2): _live(m(2)),
    }
    assert supervise(smap, views, 3, now=0.0).stopped == ()


def test_dead_member_ranges_are_unowned_orphans():
    smap = ShardMap.initial(90, [m(0), m(1), m(2)])
    views = {
        m(0): _live(m(0)),
        m(1): _live(m(1)),
        m(2): MemberView(name=m(2), ordinal=2, has_lease=True, lease_valid=False, expired_for=60.0),
    }
    s = supervise(smap, views, 3, now=0.0)
    assert s.dead == {m(2)} and s.unowned == ((m(2), ShardRange(60, 90)),) and s.orphaned == 1


# -- status ---------------------------------------------------------------------------------

OK_P = Condition("Provisioned", "True", "TablesReady", "ok")
OK_M = Condition("Migrated", "True", "JobSucceeded", "ok")


def observed(**kw) -> Observed:
    base = dict(
        generation=2,
        replicas=3,
        provisioned=OK_P,
        migrated=OK_M,
        statefulset_exists=True,
        pods=3,
        ready_pods=3,
        epoch=4,
        members={m(0): 342, m(1): 341, m(2): 341},
        rmu_reports=3,
        rebalance_reason="Balanced",
    )
    base.update(kw)
    return Observed(**base)


@pytest.mark.parametrize(
    "kw,expected_phase,ready",
    [
        ({}, "Running", "True"),
        ({"deleting": True}, "Deleting", "False"),
        ({"spec_problems": ["spec.image: must not be empty"]}, "Failed", "False"),
        (
            {"provisioned": Condition("Provisioned", "False", "SecretNotFound", "x")},
            "Failed",
            "False",
        ),
        (
            {"provisioned": Condition("Provisioned", "False", "ProvisioningFailed", "x")},
            "Provisioning",
            "False",
        ),
        ({"migrated": Condition("Migrated", "False", "JobRunning", "x")}, "Migrating", "False"),
        ({"migrated": Condition("Migrated", "False", "JobFailed", "x")}, "Failed", "False"),
        ({"statefulset_exists": False, "pods": 0, "ready_pods": 0}, "Pending", "False"),
        ({"ready_pods": 0}, "Pending", "False"),
        ({"rebalancing": True, "rebalance_reason": "AwaitingAcks"}, "Rebalancing", "True"),
        ({"ready_pods": 2}, "Degraded", "False"),
        ({"orphaned": 2}, "Degraded", "True"),
        ({"epoch": None}, "Running", "False"),
    ],
)
def test_phase_and_ready(kw, expected_phase, ready):
    o = observed(**kw)
    conds = conditions(o)
    assert [c.type for c in conds] == [
        "Ready",
        "Provisioned",
        "Migrated",
        "Rebalancing",
        "ProjectionsHealthy",
    ]
    assert phase(o, conds) == expected_phase
    assert conds[0].status == ready


def test_projections_condition():
    by = {c.type: c for c in conditions(observed(orphaned=1, dead=[m(2)]))}
    assert by["ProjectionsHealthy"].status == "False" and m(2) in by["ProjectionsHealthy"].message
    by = {c.type: c for c in conditions(observed(rmu_reports=0))}
    assert by["ProjectionsHealthy"].status == "Unknown"


def test_transition_time_moves_only_on_status_change():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    first = merge_conditions(None, [Condition("Ready", "False", "Pending")], 1, t0)
    same = merge_conditions(
        first, [Condition("Ready", "False", "PodsNotReady")], 2, t0 + timedelta(minutes=1)
    )
    assert (
        same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
        and same[0]["observedGeneration"] == 2
    )
    flipped = merge_conditions(
        same, [Condition("Ready", "True", "ClusterReady")], 2, t0 + timedelta(minutes=2)
    )
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T00:02:00Z"


def test_build_status_fields():
    s = build_status(
        observed(selector="a=b", table_prefix="tw", restarted_total=4, migrated_revision="abc"),
        None,
    )
    assert (
        s["phase"] == "Running"
        and s["replicas"] == 3
        and s["readyReplicas"] == 3
        and s["epoch"] == 4
    )
    assert s["selector"] == "a=b" and s["orphanedRmus"] == 0 and s["restartedRmus"] == 4
    assert (
        s["members"][m(0)] == 342
        and s["observedGeneration"] == 2
        and s["migratedRevision"] == "abc"
    )
