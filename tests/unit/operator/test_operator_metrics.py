"""The operator's metrics: from what a pass observed and the plan it carried out (pure planning,
no API), the timing and error counting of passes, and the /metrics endpoint on its own port."""

from __future__ import annotations

import socket
import urllib.request
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from tests.support.operator_observations import NS, C, lease, observation
from threadweaver.shards import MemberStatus, ShardMap
from threadweaver_operator import names, planning
from threadweaver_operator.kube import KubeError
from threadweaver_operator.metrics import OPERATOR_METRICS, OperatorMetrics, serve_metrics


@pytest.fixture
def m() -> OperatorMetrics:
    return OperatorMetrics(CollectorRegistry(), process=False)


def value(m: OperatorMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, {"namespace": NS, "cluster": C, **labels})


def test_a_first_pass_publishes_epoch_one_and_every_counter_from_zero(m):
    o = observation()
    m.pass_done(o, planning.plan(o), now=0.0)
    assert value(m, "threadweaver_operator_shard_map_epoch") == 1
    assert value(m, "threadweaver_operator_rebalance_rounds_total") == 0
    assert value(m, "threadweaver_operator_handoff_in_progress") == 0
    assert value(m, "threadweaver_operator_cluster_phase", phase="Migrating") == 1
    assert value(m, "threadweaver_operator_cluster_phase", phase="Running") == 0
    assert value(m, "threadweaver_operator_cluster_ready") == 0
    assert value(m, "threadweaver_operator_members", state="live") == 0


def test_a_rebalance_round_its_moves_the_handoff_age_and_its_completion(m):
    three = ShardMap.initial(64, [names.member(C, i) for i in range(3)])
    leases = tuple(lease(names.member(C, i), 1, acked=three.epoch) for i in range(4))
    o = observation(4, three, leases=leases)
    p = planning.plan(o)
    m.pass_done(o, p, now=10.0)
    published = next(
        ShardMap.from_json(s.obj["data"]["shardmap.json"])
        for s in p.of(planning.Apply)
        if s.obj["kind"] == "ConfigMap"
    )
    assert published.in_handoff
    assert value(m, "threadweaver_operator_rebalance_rounds_total") == 1
    moved = len(published.handoff.moves)
    assert moved > 0 and value(m, "threadweaver_operator_ranges_moved_total") == moved
    assert value(m, "threadweaver_operator_handoff_in_progress") == 1
    assert value(m, "threadweaver_operator_handoff_age_seconds") == 0
    assert value(m, "threadweaver_operator_members", state="live") == 4

    # the losing members have not acknowledged yet: the handoff waits and ages
    waiting = observation(4, published, leases=leases)
    m.pass_done(waiting, planning.plan(waiting), now=70.0)
    assert value(m, "threadweaver_operator_handoff_age_seconds") == 60
    assert value(m, "threadweaver_operator_rebalance_rounds_total") == 1

    acked = tuple(lease(names.member(C, i), 1, acked=published.epoch) for i in range(4))
    done = observation(4, published, leases=acked)
    m.pass_done(done, planning.plan(done), now=80.0)
    assert value(m, "threadweaver_operator_handoffs_completed_total") == 1
    assert value(m, "threadweaver_operator_handoff_in_progress") == 0
    assert value(m, "threadweaver_operator_handoff_age_seconds") == 0


def test_members_by_lease_state_and_dead_members_holding_shards(m):
    smap = ShardMap.initial(64, [names.member(C, i) for i in range(3)])
    leases = (
        lease(names.member(C, 0), 1),
        lease(names.member(C, 1), 25),  # expired 10 s ago
        lease(names.member(C, 2), 120),  # expired long ago: dead
        lease("someone-else", 1),  # not a member of this cluster
    )
    pods = tuple({"metadata": {"name": names.member(C, i)}, "status": {}} for i in range(3))
    o = observation(3, smap, leases=leases, pods=pods)
    m.pass_done(o, planning.plan(o), now=0.0)
    assert value(m, "threadweaver_operator_members", state="live") == 1
    assert value(m, "threadweaver_operator_members", state="expired") == 2
    assert value(m, "threadweaver_operator_members_dead") == 1


def test_orphaned_rmus_and_restart_requests(m):
    smap = ShardMap.initial(64, [names.member(C, 0)])
    (rng,) = smap.serving_ranges(names.member(C, 0))
    from threadweaver.shards import RmuState

    stopped = MemberStatus(
        names.member(C, 0),
        acked_epoch=smap.epoch,
        owned=smap.serving_ranges(names.member(C, 0)),
        rmus=(RmuState(range=rng, running=False, offset=0, lag_events=0, restarts=9),),
    )
    stale = lease(names.member(C, 0), 1)
    stale["metadata"]["annotations"] = stopped.to_annotations()
    o = observation(1, smap, leases=(stale,))
    m.pass_done(o, planning.plan(o), now=0.0)
    assert value(m, "threadweaver_operator_orphaned_rmus") == 1
    assert value(m, "threadweaver_operator_rmu_restarts_requested_total") == 1


def test_a_pass_is_timed_and_a_failure_counted_by_reason(m):
    with m.reconcile(NS, C):
        pass
    with pytest.raises(KubeError), m.reconcile(NS, C):
        raise KubeError(409, "conflict")
    with pytest.raises(TimeoutError), m.reconcile(NS, C):
        raise TimeoutError
    assert value(m, "threadweaver_operator_reconcile_duration_seconds_count") == 3
    assert value(m, "threadweaver_operator_reconcile_errors_total", reason="KubeApi409") == 1
    assert value(m, "threadweaver_operator_reconcile_errors_total", reason="Timeout") == 1


def test_a_deleted_cluster_loses_its_series(m):
    o = observation()
    m.pass_done(o, planning.plan(o), now=0.0)
    with m.reconcile(NS, C):
        pass
    m.forget(NS, C)
    names_left = [s.name for metric in m.registry.collect() for s in metric.samples]
    assert names_left == []


def test_the_catalogue_follows_the_prometheus_conventions(m):
    exposed = set()
    o = observation()
    m.pass_done(o, planning.plan(o), now=0.0)
    with pytest.raises(OSError), m.reconcile(NS, C):
        raise OSError
    for metric in m.registry.collect():
        exposed.add(metric.name + ("_total" if metric.type == "counter" else ""))
    assert exposed == {s.name for s in OPERATOR_METRICS}
    for s in OPERATOR_METRICS:
        assert s.name.startswith("threadweaver_operator_")
        assert (s.type == "counter") == s.name.endswith("_total")
        assert s.labels[:2] == ("namespace", "cluster")


def test_metrics_are_served_on_their_own_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert serve_metrics("127.0.0.1", port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert "# TYPE threadweaver_operator_reconcile_duration_seconds histogram" in text
    assert "process_cpu_seconds_total" in text
    assert not serve_metrics("127.0.0.1", port)  # taken: logged, the operator goes on


def test_a_replace_keeps_the_fixture_honest():
    # the helpers build what planning expects (a guard for the tests above)
    o = observation()
    assert replace(o, leases=()).spec is not None and not o.spec_problems
