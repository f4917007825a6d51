"""Manual rebalancing and restart-rmu through the reconcile loop against the in-memory API of
test_operator_reconcile.py (its fixture and helpers): the status round trip of the plan, the
approval annotation, the plan leaving the status."""

from __future__ import annotations

from test_operator_reconcile import (  # noqa: F401  (env is a fixture)
    NS,
    SECRETS,
    ack_all,
    add_secret,
    body,
    cluster,
    cond,
    env,
    finish_job,
    reconcile,
    run_pods,
    shardmap,
    status,
)

APPROVE = "threadweaver.io/approve-rebalance"


def cr(kube) -> dict:
    return kube.objects[("ThreadWeaverCluster", NS, "chat")]


async def settle(kube, passes: int = 12) -> None:
    for _ in range(passes):
        await reconcile(kube, body(kube))
        run_pods(kube)
        ack_all(kube)


async def test_manual_scale_up_waits_for_the_approval_then_runs(env):  # noqa: F811
    kube = env
    add_secret(kube, "aws", SECRETS["aws"])
    add_secret(kube, "mysql", SECRETS["mysql"])
    cluster(kube, rebalance={"mode": "manual", "maxRangesPerRound": 1})
    await reconcile(kube, body(kube))
    finish_job(kube)
    await settle(kube, 3)
    assert status(kube)["phase"] == "Running" and shardmap(kube).epoch == 1  # no approval

    cr(kube)["spec"]["replicas"] = 5
    cr(kube)["metadata"]["generation"] += 1
    await settle(kube)
    plan = status(kube)["proposedPlan"]
    assert plan["state"] == "AwaitingApproval" and len(plan["members"]) == 5
    assert shardmap(kube).epoch == 1 and len(shardmap(kube).assignments) == 3
    assert kube.objects[("StatefulSet", NS, "chat")]["spec"]["replicas"] == 5  # pods come up
    assert cond(kube, "Rebalancing")["reason"] == "AwaitingApproval"

    cr(kube)["metadata"]["annotations"] = {APPROVE: plan["id"]}
    await reconcile(kube, body(kube))
    assert status(kube)["proposedPlan"]["state"] == "Approved"
    await settle(kube, 4 * len(plan["rounds"]) + 4)
    s = status(kube)
    assert "proposedPlan" not in s, s.get("proposedPlan")
    assert s["phase"] == "Running" and len(s["members"]) == 5
    assert shardmap(kube).epoch == 1 + len(plan["rounds"])


async def test_restart_rmu_annotation_through_the_loop(env):  # noqa: F811
    kube = env
    add_secret(kube, "aws", SECRETS["aws"])
    add_secret(kube, "mysql", SECRETS["mysql"])
    cluster(kube)
    await reconcile(kube, body(kube))
    finish_job(kube)
    await settle(kube, 3)
    cr(kube)["metadata"]["annotations"] = {"threadweaver.io/restart-rmu": "0-8@1"}
    await settle(kube, 2)
    assert shardmap(kube).restart_generations("chat-0") == {"0-8": 1}
    assert status(kube)["rmuRestartRequest"] == "0-8@1" and status(kube)["restartedRmus"] == 1
