"""Manual rebalancing and restart-rmu requests through the planning step of a pass: the
annotations in, the shard map and status.proposedPlan out (Observation in, steps out)."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime

from threadweaver.shards import SHARDMAP_KEY, MemberStatus, ShardMap
from threadweaver_operator import builders, planning
from threadweaver_operator.observation import Observation, read_spec
from threadweaver_operator.status import Condition, status_patch
from threadweaver_operator.steps import Apply, WriteStatus

NS = "team"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SPEC = {
    "image": "img:1",
    "replicas": 4,
    "shards": 64,
    "journal": {"dynamodb": {"endpoint": "http://ddb:8000", "credentialsSecret": {"name": "aws"}}},
    "readModel": {"mysql": {"host": "db", "passwordSecret": {"name": "mysql"}}},
    "rebalance": {"mode": "manual"},
}
TABLES_READY = Condition("Provisioned", "True", "TablesReady", "tables ready")


def _secret(data: dict[str, str]) -> dict:
    return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def lease(member: str, acked: int) -> dict:
    return {
        "metadata": {"name": member, "annotations": MemberStatus(member, acked).to_annotations()},
        "spec": {"renewTime": "2024-05-01T11:59:58Z", "leaseDurationSeconds": 15},
    }


def pod(member: str) -> dict:
    return {
        "metadata": {"name": member},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def observation(
    shard_map: ShardMap, members: int = 4, annotations=None, previous=None, spec=None
) -> Observation:
    raw = {**SPEC, **(spec or {})}
    body = {"metadata": {"name": "chat", "namespace": NS, "uid": "u", "generation": 1}}
    parsed, problems = read_spec({**body, "spec": raw})
    assert not problems, problems
    job = {
        **builders.migration_job(parsed),
        "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    }
    sts = builders.statefulset(parsed, members)
    sts["status"] = {"replicas": members, "readyReplicas": members}
    names = [f"chat-{i}" for i in range(members)]
    return Observation(
        name="chat",
        namespace=NS,
        generation=1,
        raw_spec=raw,
        spec=parsed,
        spec_problems=problems,
        owner={"uid": "u"},
        previous=previous or {"migratedRevision": parsed.migration_revision()},
        annotations=annotations or {},
        now=NOW,
        monotonic=100.0,
        secrets={
            "aws": _secret({"access-key-id": "a", "secret-access-key": "b"}),
            "mysql": _secret({"password": "p"}),
        },
        tables=TABLES_READY,
        peer_token_exists=True,
        statefulset=sts,
        shardmap_configmap=builders.shardmap_configmap(parsed, shard_map),
        migration_job=job,
        leases=tuple(lease(n, shard_map.epoch) for n in names),
        pods=tuple(pod(n) for n in names),
    )


def published(plan) -> ShardMap | None:
    maps = [s.obj for s in plan.of(Apply) if s.obj["kind"] == "ConfigMap"]
    return ShardMap.from_json(maps[0]["data"][SHARDMAP_KEY]) if maps else None


def status_write(plan) -> WriteStatus:
    (write,) = plan.of(WriteStatus)
    return write


def condition(status, ctype: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == ctype)


THREE = ShardMap.initial(64, ["chat-0", "chat-1", "chat-2"])


def test_a_scale_up_is_proposed_in_the_status_and_nothing_moves():
    p = planning.plan(observation(THREE))
    assert published(p) is None  # the map is not touched
    write = status_write(p)
    plan = write.status["proposedPlan"]
    assert plan["state"] == "AwaitingApproval" and plan["reason"] == "ScaleUp"
    assert write.patch["proposedPlan"] == plan
    assert [e.reason for e in write.events][:1] == ["RebalanceProposed"]
    assert condition(write.status, "Rebalancing")["reason"] == "AwaitingApproval"
    assert plan["id"] in condition(write.status, "Rebalancing")["message"]
    assert write.status["phase"] == "Rebalancing"


def test_the_approve_annotation_starts_the_plan():
    proposed = status_write(planning.plan(observation(THREE))).status
    plan_id = proposed["proposedPlan"]["id"]
    p = planning.plan(
        observation(
            THREE, annotations={"threadweaver.io/approve-rebalance": plan_id}, previous=proposed
        )
    )
    new = published(p)
    assert new is not None and new.epoch == THREE.epoch + 1 and new.in_handoff
    assert "chat-3" in new.assignments
    (apply,) = [s for s in p.of(Apply) if s.obj["kind"] == "ConfigMap"]
    assert [e.reason for e in apply.events] == ["RebalancePublished"]
    assert f"plan {plan_id}, round 1/" in apply.events[0].message
    write = status_write(p)
    assert write.status["proposedPlan"]["state"] == "Approved"
    assert write.status["proposedPlan"]["approvedAt"] == "2024-05-01T12:00:00Z"
    assert "RebalanceApproved" in [e.reason for e in write.events]


def test_auto_mode_publishes_at_once_and_has_no_plan_in_the_status():
    p = planning.plan(observation(THREE, spec={"rebalance": {"mode": "auto"}}))
    assert published(p).epoch == THREE.epoch + 1
    assert "proposedPlan" not in status_write(p).status


def test_restart_rmu_annotation_is_handled_once():
    balanced = ShardMap.initial(64, [f"chat-{i}" for i in range(4)])
    value = "0-16@20240501T120000.000001Z"
    o = observation(balanced, annotations={"threadweaver.io/restart-rmu": value})
    p = planning.plan(o)
    new = published(p)
    assert new.restart_generations("chat-0") == {"0-16": 1}
    (apply,) = [s for s in p.of(Apply) if s.obj["kind"] == "ConfigMap"]
    assert [e.reason for e in apply.events] == ["RmuRestartRequested"]
    status = status_write(p).status
    assert status["rmuRestartRequest"] == value and status["restartedRmus"] == 1
    again = planning.plan(replace(o, previous=status, shardmap_configmap=apply.obj))
    assert published(again) is None
    assert status_write(again).status["restartedRmus"] == 1


def test_an_invalid_restart_request_is_a_warning_and_handled():
    balanced = ShardMap.initial(64, [f"chat-{i}" for i in range(4)])
    p = planning.plan(observation(balanced, annotations={"threadweaver.io/restart-rmu": "70-80@x"}))
    warnings = [s.event for s in p.steps if getattr(s, "event", None)]
    assert [w.reason for w in warnings if w.type == "Warning"] == ["RmuRestartRefused"]
    assert status_write(p).status["rmuRestartRequest"] == "70-80@x"


def test_status_patch_removes_a_finished_plan_and_the_keys_a_new_plan_lacks():
    old = {"id": "e1-a", "state": "Approved", "approvedAt": "2024-05-01T12:00:00Z"}
    previous = {"members": {}, "conditions": [], "proposedPlan": old}
    assert status_patch({"members": {}, "conditions": []}, previous)["proposedPlan"] is None
    new = {"id": "e2-b", "state": "AwaitingApproval"}
    patch = status_patch({"members": {}, "conditions": [], "proposedPlan": new}, previous)
    assert patch["proposedPlan"] == {**new, "approvedAt": None}
