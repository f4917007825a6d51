"""Rebalances you can review: the plan (every round, its id), the manual gate (propose, approve,
run round by round, replace a stale plan, fail over without approval) and restart-rmu requests.
Pure table tests; a simulated cluster drives a manual plan to the end."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from threadweaver.shards import MemberStatus, RangeSet, ShardMap, ShardRange
from threadweaver_operator import names
from threadweaver_operator.proposal import failover_map, plan_id, plan_rebalance
from threadweaver_operator.rebalancing import decide
from threadweaver_operator.review import APPROVED, AWAITING_APPROVAL, review
from threadweaver_operator.rmu_requests import handle_restart_request, parse_request
from threadweaver_operator.spec_operations import RebalancePolicy
from threadweaver_operator.supervision import MemberView

C = "tw"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MANUAL = RebalancePolicy(mode="manual")
AUTO = RebalancePolicy()


def m(i: int) -> str:
    return names.member(C, i)


def live(*members: str, acked: int = 0) -> dict[str, MemberView]:
    return {
        n: MemberView(
            name=n,
            ordinal=names.ordinal(C, n),
            has_lease=True,
            lease_valid=True,
            status=MemberStatus(n, acked),
            pod_exists=True,
            pod_ready=True,
        )
        for n in members
    }


def run(
    current,
    replicas,
    views,
    policy=MANUAL,
    approval=None,
    previous=None,
    dead=(),
    max_ranges=8,
    shards=64,
):
    return review(
        C,
        shards,
        replicas,
        current,
        views,
        dead,
        False,
        max_ranges,
        policy,
        approval,
        previous,
        NOW,
    )


# -- the plan -------------------------------------------------------------------------------


def test_plan_rounds_are_the_rounds_the_operator_publishes():
    cur = ShardMap.initial(1024, [m(0), m(1), m(2)])
    target = [m(i) for i in range(6)]
    plan = plan_rebalance(cur, target, 2)
    assert plan is not None and plan.reason == "ScaleUp" and plan.from_epoch == cur.epoch
    # replaying ShardMap.rebalance round by round yields the same moves
    shard_map = cur
    for moves in plan.rounds:
        nxt = shard_map.rebalance(target, 2)
        assert nxt.handoff.moves == moves
        assert sum(1 for mv in moves if mv.source in target) <= 2
        shard_map = nxt.complete_handoff()
    assert shard_map.rebalance(target, 2) is shard_map  # balanced after the last round
    assert plan.before == cur.counts()
    assert plan.after == {n: c for n, c in shard_map.counts().items() if c}
    assert max(plan.after.values()) - min(plan.after.values()) <= 1
    rows = plan.shards_json()
    assert [r["member"] for r in rows] == target
    assert rows[0] == {"member": m(0), "before": 342, "after": 171}
    assert plan.rounds_json()[0]["moves"][0].keys() == {"range", "from", "to", "shards"}


def test_plan_id_names_the_starting_point_and_the_members():
    cur = ShardMap.initial(64, [m(0), m(1)])
    a = plan_rebalance(cur, [m(0), m(1), m(2)], 8)
    again = plan_rebalance(cur, [m(2), m(1), m(0)], 8)
    other = plan_rebalance(cur, [m(0), m(1), m(2), m(3)], 8)
    smaller_rounds = plan_rebalance(cur, [m(0), m(1), m(2)], 1)
    assert a.id == again.id == plan_id(cur, [m(0), m(1), m(2)], 8)
    assert a.id.startswith(f"e{cur.epoch}-")
    assert len({a.id, other.id, smaller_rounds.id}) == 3
    # restart requests and addresses move nothing: same plan
    noted = cur.request_restart(m(0), "0-8").with_addresses({m(0): "10.0.0.1:9080"})
    assert plan_rebalance(noted, [m(0), m(1), m(2)], 8).id == a.id


def test_no_plan_when_balanced_and_a_pending_handoff_counts_as_completed():
    cur = ShardMap.initial(64, [m(0), m(1)])
    assert plan_rebalance(cur, [m(0), m(1)], 8) is None
    moving = cur.rebalance([m(0), m(1), m(2)], 8)
    assert moving.in_handoff
    assert plan_rebalance(moving, [m(0), m(1), m(2)], 8) is None


def test_plan_reasons():
    cur = ShardMap.initial(60, [m(0), m(1), m(2)])
    assert plan_rebalance(cur, [m(0), m(1)], 8).reason == "ScaleDown"
    assert plan_rebalance(cur, [m(0), m(1)], 8, dead={m(2)}).reason == "Failover"


def test_failover_map_moves_only_the_ranges_of_dead_members():
    cur = ShardMap.initial(64, [m(0), m(1), m(2)])
    # half-way through a scale-up: m(3) got one range, m(4) nothing yet (both in the map)
    mid = cur.rebalance([m(i) for i in range(5)], 1).complete_handoff()
    assert mid.counts()[m(4)] == 0 and mid.counts()[m(3)] > 0
    moved = failover_map(mid, {m(0)})
    assert moved.epoch == mid.epoch + 1 and moved.in_handoff
    assert {mv.source for mv in moved.handoff.moves} == {m(0)}
    assert m(0) not in moved.assignments
    for n in (m(1), m(2)):  # the live members above their share keep everything
        assert moved.assignments[n] == mid.assignments[n]
    gained = RangeSet(tuple(mv.range for mv in moved.handoff.moves))
    assert gained == mid.assignments[m(0)]
    assert failover_map(cur, {"someone-else"}) is cur


# -- the gate -------------------------------------------------------------------------------


def test_auto_mode_is_the_decision_unchanged():
    cur = ShardMap.initial(64, [m(0), m(1), m(2)])
    views = live(*[m(i) for i in range(5)], acked=1)
    r = run(cur, 5, views, policy=AUTO, max_ranges=1)
    assert r.decision == decide(C, 64, 5, cur, views, (), False, 1)
    assert r.plan_status is None and not r.events
    # the dry-run's plan: the rounds after the one published now
    full = plan_rebalance(cur, [m(i) for i in range(5)], 1)
    assert r.plan.rounds == full.rounds[1:]


def test_manual_scale_up_is_proposed_and_held():
    cur = ShardMap.initial(64, [m(0), m(1), m(2)]).with_addresses({m(0): "10.0.0.1:9080"})
    views = live(*[m(i) for i in range(4)], acked=1)
    r = run(cur, 4, views)
    assert r.decision.action == "wait" and r.decision.reason == AWAITING_APPROVAL
    assert r.decision.rebalancing and not r.decision.shard_map.in_handoff
    assert r.decision.shard_map.assignments == cur.assignments
    assert r.decision.shard_map.epoch == cur.epoch
    plan = r.plan_status
    assert plan["state"] == AWAITING_APPROVAL and plan["reason"] == "ScaleUp"
    assert plan["id"] == plan_rebalance(cur, [m(i) for i in range(4)], 8).id
    assert plan["members"] == [m(i) for i in range(4)] and plan["fromEpoch"] == cur.epoch
    assert plan["proposedAt"] == "2024-05-01T12:00:00Z" and "approvedAt" not in plan
    assert {"member": m(3), "before": 0, "after": 16} in plan["shards"]
    assert plan["rounds"] and all(mv["to"] == m(3) for mv in plan["rounds"][0]["moves"])
    assert plan["id"] in r.decision.message and f"approve {C} {plan['id']}" in r.decision.message
    assert [e.reason for e in r.events] == ["RebalanceProposed"]
    # the same plan next pass: no new Event, the same proposal time
    later = review(C, 64, 4, cur, views, (), False, 8, MANUAL, None, plan, NOW.replace(hour=13))
    assert later.plan_status == plan and not later.events
    # a wrong id approves nothing
    assert run(cur, 4, views, approval="e1-00000000", previous=plan).decision.reason == (
        AWAITING_APPROVAL
    )


def test_manual_scale_down_keeps_the_leaving_pods_until_approved():
    cur = ShardMap.initial(64, [m(0), m(1), m(2)])
    r = run(cur, 2, live(m(0), m(1), m(2), acked=1))
    assert r.decision.reason == AWAITING_APPROVAL and r.decision.statefulset_replicas == 3
    assert r.plan_status["reason"] == "ScaleDown"


def test_approved_plan_runs_round_by_round_to_the_end():
    cur = ShardMap.initial(256, [m(0), m(1)])
    members = [m(i) for i in range(5)]
    views = live(*members)
    proposed = run(cur, 5, views, max_ranges=1, shards=256).plan_status
    rounds = len(proposed["rounds"])
    assert rounds > 1
    previous, shard_map, published = proposed, cur, 0
    events = []
    for _ in range(3 * rounds + 2):
        r = run(
            shard_map,
            5,
            live(*members, acked=shard_map.epoch),
            approval=proposed["id"],
            previous=previous,
            max_ranges=1,
            shards=256,
        )
        events += [e.reason for e in r.events]
        if r.decision.action == "rebalance":
            published += 1
            assert f"round {published}/{rounds}" in r.decision.message
            assert r.decision.shard_map.handoff.moves == tuple(
                _move(mv) for mv in proposed["rounds"][published - 1]["moves"]
            )
        previous = r.plan_status
        shard_map = r.decision.shard_map
        if r.decision.reason == "Balanced":
            break
    assert published == rounds
    assert r.decision.reason == "Balanced" and r.plan_status is None
    assert events == ["RebalanceApproved", "RebalancePlanCompleted"]


def _move(mv: dict):
    from threadweaver.shards import Move

    return Move(ShardRange.parse(mv["range"]), mv["from"], mv["to"])


def test_a_stale_plan_is_replaced_and_its_approval_applies_nothing():
    cur = ShardMap.initial(64, [m(0), m(1), m(2)])
    old = run(cur, 4, live(*[m(i) for i in range(4)])).plan_status
    # the cluster is scaled to 5 before anyone approves: the old id is stale
    r = run(cur, 5, live(*[m(i) for i in range(5)]), approval=old["id"], previous=old)
    assert r.decision.reason == AWAITING_APPROVAL
    assert r.decision.shard_map.assignments == cur.assignments
    new = r.plan_status
    assert new["id"] != old["id"] and new["members"] == [m(i) for i in range(5)]
    assert [e.reason for e in r.events] == ["RebalancePlanReplaced"]
    assert old["id"] in r.events[0].message and new["id"] in r.events[0].message


def test_an_approved_plan_that_became_stale_stops_and_is_replaced():
    cur = ShardMap.initial(256, [m(0), m(1)])
    members = [m(i) for i in range(4)]
    proposed = run(cur, 4, live(*members), max_ranges=1, shards=256).plan_status
    first = run(
        cur,
        4,
        live(*members),
        approval=proposed["id"],
        previous=proposed,
        max_ranges=1,
        shards=256,
    )
    assert first.decision.action == "rebalance" and first.plan_status["state"] == APPROVED
    done = first.decision.shard_map.complete_handoff()
    # a fifth member comes up before the second round: the rest of the plan no longer applies
    more = [m(i) for i in range(5)]
    r = run(
        done,
        5,
        live(*more, acked=done.epoch),
        approval=proposed["id"],
        previous=first.plan_status,
        max_ranges=1,
        shards=256,
    )
    assert r.decision.reason == AWAITING_APPROVAL
    assert r.decision.shard_map.assignments == done.assignments
    assert r.plan_status["state"] == AWAITING_APPROVAL and "approvedAt" not in r.plan_status
    assert r.plan_status["members"] == more
    assert [e.reason for e in r.events] == ["RebalancePlanReplaced"]


def test_failover_runs_without_approval_and_the_rest_is_proposed():
    cur = ShardMap.initial(64, [m(0), m(1), m(2)])
    views = live(m(0), m(1), acked=1)
    r = run(cur, 3, views, dead={m(2)})
    assert r.decision.action == "rebalance" and r.decision.reason == "Failover"
    assert {mv.source for mv in r.decision.shard_map.handoff.moves} == {m(2)}
    assert "without approval" in r.decision.message
    # m(2) is dead, not scaled away: nothing else moves, so nothing is proposed
    assert r.plan_status is None and r.plan is None


def test_failover_with_a_pending_scale_up_proposes_the_rest():
    cur = ShardMap.initial(64, [m(0), m(1), m(2)])
    views = live(m(0), m(1), m(3), acked=1)
    r = run(cur, 4, views, dead={m(2)})
    assert r.decision.reason == "Failover"
    assert {mv.source for mv in r.decision.shard_map.handoff.moves} == {m(2)}
    assert m(3) not in r.decision.shard_map.assignments  # joins through the approved plan
    assert r.plan_status["state"] == AWAITING_APPROVAL and r.plan_status["reason"] == "ScaleUp"
    assert r.plan_status["fromEpoch"] == r.decision.shard_map.epoch
    assert [e.reason for e in r.events] == ["RebalanceProposed"]


def _dead_but_ready(member: str) -> MemberView:
    """A member whose Lease expired long ago while its Pod still reports Ready (a hung process;
    on a fake node, a killed one)."""
    return MemberView(
        name=member,
        ordinal=names.ordinal(C, member),
        has_lease=True,
        lease_valid=False,
        status=MemberStatus(member, 1),
        pod_exists=True,
        pod_ready=True,
    )


@pytest.mark.parametrize("policy", [MANUAL, AUTO], ids=["manual", "auto"])
def test_a_dead_member_whose_pod_stays_ready_gets_no_ranges_back(policy):
    cur = ShardMap.initial(64, [m(0), m(1), m(2), m(3)])
    views = {**live(m(0), m(1), m(2), acked=1), m(3): _dead_but_ready(m(3))}
    r = run(cur, 4, views, policy=policy, dead={m(3)})
    assert r.decision.action == "rebalance"
    assert {mv.source for mv in r.decision.shard_map.handoff.moves} == {m(3)}
    assert m(3) not in r.decision.shard_map.assignments
    # the failover done, the dead member (pod still Ready) is no target of any plan
    after = r.decision.shard_map.complete_handoff()
    again = run(after, 4, views, policy=policy, dead={m(3)}, previous=r.plan_status)
    assert again.decision.action != "rebalance", again.decision
    assert again.decision.shard_map.assignments == after.assignments
    assert again.plan is None and again.plan_status is None
    # its Lease valid again: it is a target once more (in manual mode, of a plan to approve)
    back = {**views, **live(m(3), acked=after.epoch)}
    rejoin = run(after, 4, back, policy=policy)
    if policy is MANUAL:
        assert rejoin.plan_status["reason"] == "ScaleUp" and m(3) in rejoin.plan_status["members"]
    else:
        assert m(3) in rejoin.decision.shard_map.assignments


def test_failover_waits_for_approval_when_not_auto_approved():
    cur = ShardMap.initial(64, [m(0), m(1), m(2)])
    policy = RebalancePolicy(mode="manual", auto_approve_failover=False)
    r = run(cur, 3, live(m(0), m(1), acked=1), policy=policy, dead={m(2)})
    assert r.decision.reason == AWAITING_APPROVAL
    assert r.plan_status["reason"] == "Failover"
    approved = run(
        cur,
        3,
        live(m(0), m(1), acked=1),
        policy=policy,
        dead={m(2)},
        approval=r.plan_status["id"],
        previous=r.plan_status,
    )
    assert approved.decision.action == "rebalance"
    assert {mv.source for mv in approved.decision.shard_map.handoff.moves} == {m(2)}


def test_handoffs_in_flight_keep_the_plan_and_a_plan_no_longer_needed_is_withdrawn():
    cur = ShardMap.initial(64, [m(0), m(1), m(2)])
    proposed = run(cur, 4, live(*[m(i) for i in range(4)])).plan_status
    moving = cur.rebalance([m(0), m(1)], 8)  # e.g. a failover round in flight
    waiting = run(moving, 4, live(*[m(i) for i in range(4)]), previous=proposed)
    assert waiting.decision.reason == "AwaitingAcks" and waiting.plan_status == proposed
    # scaled back to 3 before the approval: the map is balanced, the plan goes
    back = run(cur, 3, live(m(0), m(1), m(2), acked=1), previous=proposed)
    assert back.decision.reason == "Balanced" and back.plan_status is None
    assert [e.reason for e in back.events] == ["RebalancePlanWithdrawn"]


def test_the_first_map_needs_no_approval():
    r = run(None, 3, {})
    assert r.decision.action == "initialize" and r.plan_status is None


# -- restart-rmu requests -------------------------------------------------------------------


def test_restart_request_reaches_every_member_serving_a_part_of_the_range():
    cur = ShardMap.initial(64, [m(0), m(1), m(2)])  # 0-22, 22-43, 43-64
    out = handle_restart_request(cur, "10-30@20240501T120000Z")
    assert out.problem is None
    assert out.requested == ((m(0), ShardRange(10, 30)), (m(1), ShardRange(10, 30)))
    assert out.shard_map.restart_generations(m(0)) == {"10-30": 1}
    assert out.shard_map.restart_generations(m(2)) == {}


@pytest.mark.parametrize(
    ("value", "why"),
    [("nonsense", "invalid shard range"), ("60-70", "exceeds"), ("5-5", "invalid shard range")],
)
def test_invalid_restart_requests_are_refused(value, why):
    cur = ShardMap.initial(64, [m(0)])
    out = handle_restart_request(cur, value)
    assert out.shard_map is cur and not out.requested and why in out.problem


def test_restart_request_for_moving_shards_is_refused():
    moving = ShardMap.initial(64, [m(0)]).rebalance([m(0), m(1)], 8)
    out = handle_restart_request(moving, "40-50")  # moving to m(1): nobody serves it
    assert out.shard_map is moving and "no member serves" in out.problem
    assert parse_request("1-2@x", 64) == ShardRange(1, 2)


# -- spec.rebalance -------------------------------------------------------------------------


def _spec(rebalance):
    from threadweaver_operator.spec import ClusterSpec

    return ClusterSpec.from_resource(
        "chat", "team", {"image": "i", "readModel": {"mysql": {"host": "db"}}, **rebalance}
    )


def test_rebalance_policy_defaults_and_problems():
    from threadweaver_operator.spec import SpecError

    assert _spec({}).rebalance_policy == RebalancePolicy("auto", True)
    manual = _spec({"rebalance": {"mode": "manual", "autoApproveFailover": False}})
    assert manual.rebalance_policy == RebalancePolicy("manual", False) and not manual.problems()
    assert _spec({"rebalance": {"mode": "sometimes"}}).problems() == [
        "spec.rebalance.mode: one of auto, manual, got 'sometimes'"
    ]
    with pytest.raises(SpecError, match="autoApproveFailover: expected a boolean"):
        _spec({"rebalance": {"autoApproveFailover": "yes"}})
