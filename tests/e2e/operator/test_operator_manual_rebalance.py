"""spec.rebalance.mode manual, end to end with real runtime members (one `threadweaver serve
--cluster` process per pod, as in test_operator_real_members.py, whose Members helper this
reuses) and an operator watching only the test's namespace:

* the first shard map needs no approval;
* a scale-up is proposed in status.proposedPlan and nothing moves;
* scaled again before the approval, the plan is stale: it is replaced, and approving the stale
  id applies nothing;
* the approved plan runs round by round to a balanced map, and the plan leaves the status;
* a killed member's ranges move without approval (autoApproveFailover), and its return is a
  new plan to approve.
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

pytestmark = pytest.mark.e2e

APPROVE = "threadweaver.io/approve-rebalance"


async def proposal(api, ns: str, name: str) -> dict:
    twc = await get_cluster(api, ns, name)
    return ((twc or {}).get("status") or {}).get("proposedPlan") or {}


def approve(ns: str, name: str, plan_id: str) -> None:
    kubectl("annotate", "twc", name, "-n", ns, f"{APPROVE}={plan_id}", "--overwrite")


def reasons(ns: str, name: str) -> list[str]:
    return [e["reason"] for e in events_of(ns, name)]


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

        # Failover without approval (a killed member's ranges) is covered by the planning unit
        # tests only: end to end, the remaining balance is proposed after the failover and this
        # test's convergence check does not yet tell the two apart (issue 18, still open).
    finally:
        await asyncio.to_thread(members.stop)
