"""spec.rebalance.mode manual, end to end with real runtime members (one `threadweaver serve
--cluster` process per pod, as in test_operator_real_members.py, whose Members helper this
reuses) and an operator watching only the test's namespace:

* the first shard map needs no approval;
* a scale-up is proposed in status.proposedPlan and nothing moves;
* scaled again before the approval, the plan is stale: it is replaced, and approving the stale
  id applies nothing;
* the approved plan runs round by round to a balanced map, and the plan leaves the status;
* a member killed while a scale-up awaits approval: its ranges move without approval
  (autoApproveFailover, the default) and nothing else moves (the others keep their ranges, the
  map is complete over live members); the scale-up is proposed again, of moves between live
  members only, and waits for its approval; the member's return is a new plan to approve;
* with autoApproveFailover false, a killed member's ranges are proposed (reason Failover) and
  stay its own until the plan is approved.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from operator_e2e_support import (
    apply_yaml,
    cluster_manifest,
    condition,
    dump,
    events_of,
    eventually,
    get_cluster,
    job_succeeded,
    kubectl,
    migrate_like_the_job,
    secret,
    shard_map,
)
from test_operator_real_members import Members, _converged

from threadweaver.shards import RangeSet

pytestmark = pytest.mark.e2e

APPROVE = "threadweaver.io/approve-rebalance"


async def proposal(api, ns: str, name: str) -> dict:
    twc = await get_cluster(api, ns, name)
    return ((twc or {}).get("status") or {}).get("proposedPlan") or {}


def approve(ns: str, name: str, plan_id: str) -> None:
    kubectl("annotate", "twc", name, "-n", ns, f"{APPROVE}={plan_id}", "--overwrite")


def reasons(ns: str, name: str) -> list[str]:
    return [e["reason"] for e in events_of(ns, name)]


def unapprove(ns: str, name: str) -> None:
    """No approve annotation on the cluster (what it moves from now on is not approved)."""
    kubectl("annotate", "twc", name, "-n", ns, f"{APPROVE}-")


async def approval(api, ns: str, name: str) -> str | None:
    twc = await get_cluster(api, ns, name) or {}
    return ((twc.get("metadata") or {}).get("annotations") or {}).get(APPROVE)


def assert_complete(smap, live: list[str]) -> None:
    """Every shard assigned once, to live members only, and no handoff pending."""
    assert not smap.in_handoff, smap
    assert sorted(smap.assignments) == sorted(live), smap.assignments
    covered = RangeSet()
    for ranges in smap.assignments.values():
        assert covered.isdisjoint(ranges), smap.assignments
        covered = covered.union(ranges)
    assert covered == RangeSet.full(smap.shards), smap.assignments


def moves_of(plan: dict) -> list[dict]:
    return [move for rnd in plan.get("rounds") or () for move in rnd["moves"]]


async def held_for(api, ns: str, name: str, seconds: float, smap, plan_id: str, fail) -> None:
    """For `seconds` (several operator passes), the shard map stays `smap` and the proposal
    stays `plan_id`, awaiting approval: a proposed plan is not applied until approved."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = await shard_map(api, ns, name)
        assert now.epoch == smap.epoch and now.assignments == smap.assignments, fail()
        plan = await proposal(api, ns, name)
        assert plan.get("id") == plan_id and plan.get("state") == "AwaitingApproval", plan
        await asyncio.sleep(1)


async def failover_without_approval(api, ns, name, members, victim, assigned, live, fail) -> dict:
    """Kill `victim` (its pod stays) while a scale-up to `live` awaits approval: its ranges go
    to the other `assigned` members without any approval, and they keep what they had (only the
    dead member's ranges moved); the map is complete over live members; what else must move (the
    pending scale-up, recomputed) is a new proposal of moves between live members only, never
    from the dead one, held until approved. Returns that proposal."""
    unapprove(ns, name)
    before = await shard_map(api, ns, name)
    assert_complete(before, [*assigned, victim])
    pending = await proposal(api, ns, name)
    assert pending.get("state") == "AwaitingApproval" and victim in pending["members"], pending
    members.procs[victim].kill()  # the process is gone, the pod stays

    async def failed_over() -> bool:  # no members.sync(): it would restart the victim
        smap = await shard_map(api, ns, name)
        if not smap or smap.epoch <= before.epoch or victim in smap.assignments:
            return False
        return await _converged(api, ns, name, members, assigned)

    await eventually(failed_over, 180, 1.0, what="failover without approval", on_fail=fail)
    assert await approval(api, ns, name) is None  # nobody approved anything
    smap = await shard_map(api, ns, name)
    assert smap.epoch == before.epoch + 1, (before, smap)  # one round: the failover's
    assert_complete(smap, assigned)
    for m in assigned:  # only the dead member's ranges moved, to live members
        assert before.assignments[m].issubset(smap.assignments[m]), (m, before, smap)
    messages = [e["message"] for e in events_of(ns, name)]
    assert any("without approval" in m and victim in m for m in messages), messages

    async def replanned() -> dict:
        plan = await proposal(api, ns, name)
        return plan if plan.get("id") not in (None, pending["id"]) else {}

    plan = await eventually(replanned, 60, 1.0, what="the rest proposed again", on_fail=fail)
    assert plan["state"] == "AwaitingApproval" and plan["reason"] == "ScaleUp", plan
    assert plan["fromEpoch"] == smap.epoch and plan["members"] == sorted(live), plan
    assert moves_of(plan), plan
    for move in moves_of(plan):
        assert move["from"] in assigned and move["to"] in live, plan
    await held_for(api, ns, name, 12, smap, plan["id"], fail)
    return plan


async def failover_awaiting_approval(api, ns, name, members, victim, survivors, fail) -> None:
    """With autoApproveFailover false: kill `victim`; the dead member's ranges are proposed
    (reason Failover, every range it owns moving to a survivor) and stay its own, unserved,
    until the plan is approved; approved, they move and the map is complete over the survivors."""
    unapprove(ns, name)
    before = await shard_map(api, ns, name)
    assert_complete(before, [*survivors, victim])
    lost = before.assignments[victim]
    members.procs[victim].kill()

    async def failover_proposed() -> dict:
        plan = await proposal(api, ns, name)
        ok = plan.get("reason") == "Failover" and plan.get("state") == "AwaitingApproval"
        return plan if ok else {}

    plan = await eventually(failover_proposed, 180, 1.0, what="failover plan", on_fail=fail)
    assert victim not in plan["members"], plan
    moved = RangeSet()
    for move in moves_of(plan):
        assert move["to"] in survivors, plan
        if move["from"] == victim:
            moved = moved.union(RangeSet.parse(move["range"]))
    assert moved == lost, (plan, lost)
    await held_for(api, ns, name, 12, before, plan["id"], fail)
    assert (await shard_map(api, ns, name)).assignments[victim] == lost
    approve(ns, name, plan["id"])

    async def failed_over() -> bool:
        return await _converged(api, ns, name, members, survivors) and not await proposal(
            api, ns, name
        )

    await eventually(failed_over, 180, 1.0, what="the approved failover ran", on_fail=fail)
    assert_complete(await shard_map(api, ns, name), survivors)


async def test_manual_rebalancing_with_real_members(ns_operator, services, ns, api, tmp_path):
    name, prefix = "manual", f"e2e-{uuid.uuid4().hex[:8]}"
    apply_yaml(
        secret(ns, f"{name}-aws", {"access-key-id": "e2e", "secret-access-key": "e2e"}),
        secret(ns, f"{name}-mysql", {"password": "threadweaver"}),
        cluster_manifest(
            ns,
            name,
            prefix,
            deletionPolicy="Delete",
            rebalance={"mode": "manual", "maxRangesPerRound": 2},
        ),
    )
    twc = await get_cluster(api, ns, name)
    assert twc["spec"]["rebalance"] == {
        "mode": "manual",
        "maxRangesPerRound": 2,
        "autoApproveFailover": True,
    }, "the CRD of this worktree is not the one installed"
    members = Members(api, ns, name, prefix, tmp_path)
    fail = lambda: dump(ns, name, ns_operator) + members.logs()  # noqa: E731
    member = lambda i: f"{name}-{i}"  # noqa: E731
    three, four, five = ([member(i) for i in range(n)] for n in (3, 4, 5))
    try:
        job = await migrate_like_the_job(api, ns, name)
        await job_succeeded(api, ns, job)

        async def converged(expected: list[str], sync: bool = True) -> bool:
            if sync:
                await members.sync()
            return await _converged(api, ns, name, members, expected) and not await proposal(
                api, ns, name
            )

        await eventually(lambda: converged(three), 240, 1.0, what="3 members", on_fail=fail)
        epoch = (await shard_map(api, ns, name)).epoch

        # a scale-up is proposed; nothing moves
        kubectl("scale", "twc", name, "-n", ns, "--replicas=5")

        async def proposed(expected: list[str]) -> dict:
            await members.sync()
            plan = await proposal(api, ns, name)
            ok = plan.get("members") == expected and plan.get("state") == "AwaitingApproval"
            return plan if ok else {}

        plan5 = await eventually(lambda: proposed(five), 120, 1.0, what="plan for 5", on_fail=fail)
        assert plan5["reason"] == "ScaleUp" and plan5["fromEpoch"] == epoch
        assert {"member": member(4), "before": 0, "after": 12} in plan5["shards"]
        assert len(plan5["rounds"]) >= 2  # maxRangesPerRound 2
        smap = await shard_map(api, ns, name)
        assert smap.epoch == epoch and sorted(smap.assignments) == three
        rebalancing = condition(await get_cluster(api, ns, name), "Rebalancing")
        assert rebalancing["reason"] == "AwaitingApproval" and plan5["id"] in rebalancing["message"]

        # scaled again before the approval: the plan is stale and replaced
        kubectl("scale", "twc", name, "-n", ns, "--replicas=4")
        plan4 = await eventually(lambda: proposed(four), 120, 1.0, what="plan for 4", on_fail=fail)
        assert plan4["id"] != plan5["id"]

        # approving the stale plan applies nothing (two timer ticks and more)
        approve(ns, name, plan5["id"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            await members.sync()
            smap = await shard_map(api, ns, name)
            assert smap.epoch == epoch and sorted(smap.assignments) == three, fail()
            assert (await proposal(api, ns, name)).get("id") == plan4["id"]
            await asyncio.sleep(1)

        # approving the current plan runs it to the end
        approve(ns, name, plan4["id"])
        await eventually(lambda: converged(four), 240, 1.0, what="plan for 4 ran", on_fail=fail)
        smap = await shard_map(api, ns, name)
        assert smap.epoch == epoch + len(plan4["rounds"])
        seen = reasons(ns, name)
        for reason in (
            "RebalanceProposed",
            "RebalancePlanReplaced",
            "RebalanceApproved",
            "RebalancePlanCompleted",
        ):
            assert reason in seen, (reason, seen)

        # a killed member's ranges move without approval (autoApproveFailover, the default),
        # while a scale-up to 5 awaits approval: that is proposed again, without the dead member
        kubectl("scale", "twc", name, "-n", ns, "--replicas=5")
        await eventually(lambda: proposed(five), 120, 1.0, what="plan for 5", on_fail=fail)
        victim = member(3)
        live = [m for m in five if m != victim]
        rest = await failover_without_approval(
            api, ns, name, members, victim, [m for m in four if m != victim], live, fail
        )
        approve(ns, name, rest["id"])

        async def balanced_without_victim() -> bool:  # no sync: the victim stays dead
            ok = await _converged(api, ns, name, members, live)
            return ok and not await proposal(api, ns, name)

        await eventually(balanced_without_victim, 240, 1.0, what="the rest ran", on_fail=fail)

        # its return is a new plan to approve
        members.procs[victim] = members._start(victim)  # the kubelet restarts the container
        rejoin = await eventually(
            lambda: proposed(five), 180, 1.0, what="plan for the rejoin", on_fail=fail
        )
        assert rejoin["reason"] == "ScaleUp" and rejoin["id"] not in (plan4["id"], plan5["id"])
        approve(ns, name, rejoin["id"])
        await eventually(lambda: converged(five), 240, 1.0, what="rejoined", on_fail=fail)

        # autoApproveFailover false: a dead member keeps its ranges until the plan is approved
        kubectl(
            "patch",
            "twc",
            name,
            "-n",
            ns,
            "--type=merge",
            "-p",
            '{"spec": {"rebalance": {"autoApproveFailover": false}}}',
        )
        await failover_awaiting_approval(api, ns, name, members, victim, live, fail)
    finally:
        await asyncio.to_thread(members.stop)
