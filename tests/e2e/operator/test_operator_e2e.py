"""The operator against a real API server: schema validation, the whole lifecycle of a cluster
(tables in dynalite, migration Job, StatefulSet, shard map, scaling 3 -> 5 -> 2 through the
scale subresource with the members' Leases played by the test), operator restarts, missing
Secrets, and both deletion policies.

KWOK runs no containers. The migration: the test runs `threadweaver migrate` itself, with the
Job's own environment, against MariaDB; KWOK's stock pod stages then complete the Job's pod
and the Job controller marks the Job Complete (the test waits for it; the operator does not
care who ran the migration, only that the Job succeeded)."""

from __future__ import annotations

import uuid

import pytest
from operator_e2e_support import (
    apply_yaml,
    cluster_manifest,
    condition,
    dump,
    dynamodb_tables,
    events_of,
    eventually,
    get_cluster,
    job_succeeded,
    kubectl,
    migrate_like_the_job,
    play_members,
    secret,
    shard_map,
)

pytestmark = pytest.mark.e2e


def _prefix() -> str:
    return f"e2e-{uuid.uuid4().hex[:8]}"


# -- schema -----------------------------------------------------------------------------------


def test_schema_rejects_invalid_clusters(crd, ns):
    base = cluster_manifest(ns, "bad", "p")
    import json

    def apply(body):
        return kubectl("apply", "-f", "-", input=json.dumps(body), check=False)

    for change, expect in [
        ({"shards": 0}, "spec.shards"),
        ({"shards": 70000}, "spec.shards"),
        ({"replicas": -1}, "spec.replicas"),
        ({"image": ""}, "spec.image"),
        ({"deletionPolicy": "Sometimes"}, "spec.deletionPolicy"),
        (
            {"journal": {"dynamodb": {"billingMode": "PROVISIONED"}}},
            "readCapacity and writeCapacity",
        ),
    ]:
        body = json.loads(json.dumps(base))
        body["spec"].update(change)
        proc = apply(body)
        assert proc.returncode != 0 and expect in proc.stderr, (change, proc.stderr)
    long_name = json.loads(json.dumps(base))
    long_name["metadata"]["name"] = "x" * 41
    proc = apply(long_name)
    assert proc.returncode != 0 and "at most 40" in proc.stderr
    # shards is immutable
    ok = json.loads(json.dumps(base))
    assert apply(ok).returncode == 0
    got = kubectl(
        "get",
        "twc",
        "bad",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.replicas}/{.spec.rebalance.maxRangesPerRound}/"
        "{.spec.deletionPolicy}/{.spec.journal.dynamodb.region}/{.spec.readModel.mysql.database}",
    ).stdout
    assert got == "3/8/Retain/us-east-1/threadweaver"  # defaults from the schema
    changed = json.loads(json.dumps(base))
    changed["spec"]["shards"] = 128
    proc = apply(changed)
    assert proc.returncode != 0 and "shards is immutable" in proc.stderr, proc.stderr


# -- lifecycle --------------------------------------------------------------------------------


async def _converge(api, ns, name, replicas, operator, timeout=150):
    """Play the members until the cluster runs `replicas` balanced members."""

    async def check():
        await play_members(api, ns, name)
        twc = await get_cluster(api, ns, name)
        status = twc.get("status") or {}
        sts = await api.get("StatefulSet", ns, name)
        smap = await shard_map(api, ns, name)
        if smap and smap.in_handoff:
            for loser in smap.handoff.losing_members():  # never removed before it handed off
                assert int(loser.rsplit("-", 1)[1]) < sts["spec"]["replicas"], (
                    loser,
                    sts["spec"]["replicas"],
                )
        return (
            status.get("phase") == "Running"
            and sts["spec"]["replicas"] == replicas
            and smap is not None
            and not smap.in_handoff
            and sorted(smap.assignments) == sorted(f"{name}-{i}" for i in range(replicas))
            and status.get("readyReplicas") == replicas
            and max(smap.counts().values()) - min(smap.counts().values()) <= 1
        )

    await eventually(
        check,
        timeout,
        1.0,
        what=f"{replicas} balanced members",
        on_fail=lambda: dump(ns, name, operator),
    )


async def test_lifecycle_scale_restart_and_retain(operator, services, ns, api):
    name, prefix = "chat", _prefix()
    apply_yaml(
        secret(ns, "chat-aws", {"access-key-id": "e2e", "secret-access-key": "e2e"}),
        secret(ns, "chat-mysql", {"password": "threadweaver"}),
        cluster_manifest(ns, name, prefix),
    )
    fail = lambda: dump(ns, name, operator)  # noqa: E731

    # every object the operator owns
    async def children():
        found = []
        for kind, obj in [
            ("ServiceAccount", "chat-runtime"),
            ("Role", "chat-runtime"),
            ("RoleBinding", "chat-runtime"),
            ("Service", "chat-headless"),
            ("Service", "chat"),
            ("PodDisruptionBudget", "chat-pdb"),
            ("ConfigMap", "chat-shardmap"),
            ("Secret", "chat-peer-token"),
        ]:
            o = await api.get(kind, ns, obj)
            assert o is not None, f"{kind} {obj} missing"
            assert o["metadata"]["ownerReferences"][0]["name"] == name
            found.append(o)
        return found

    await eventually(children, 60, what="the runtime objects", on_fail=fail)
    assert {f"{prefix}-journal", f"{prefix}-snapshot"} <= set(dynamodb_tables())
    twc = await get_cluster(api, ns, name)
    assert condition(twc, "Provisioned")["status"] == "True"

    # the migration (no StatefulSet before the Job succeeded: checked by timestamps below)
    job = await migrate_like_the_job(api, ns, name)
    await job_succeeded(api, ns, job)
    sts = await eventually(
        lambda: api.get("StatefulSet", ns, name), 30, what="the StatefulSet", on_fail=fail
    )
    assert sts["spec"]["replicas"] == 3
    finished = (await api.get("Job", ns, job))["status"]["completionTime"]
    assert finished <= sts["metadata"]["creationTimestamp"], (
        "the StatefulSet came before the migration succeeded"
    )
    await _converge(api, ns, name, 3, operator)
    out = kubectl("get", "twc", name, "-n", ns).stdout
    assert "Running" in out and " 3 " in out, out
    twc = await get_cluster(api, ns, name)
    assert (
        condition(twc, "Ready")["status"] == "True"
        and condition(twc, "Migrated")["reason"] == "JobSucceeded"
    )
    assert twc["status"]["epoch"] >= 1 and sum(twc["status"]["members"].values()) == 64
    assert twc["status"]["selector"].startswith("app.kubernetes.io/name=thread-weaver")

    # scale up through the scale subresource; the operator restarts in the middle
    kubectl("scale", "twc", name, "-n", ns, "--replicas=5")
    await eventually(
        lambda: _sts_replicas(api, ns, name, 5), 30, what="StatefulSet raised to 5", on_fail=fail
    )
    operator.restart()
    await _converge(api, ns, name, 5, operator)

    # scale down: members 2..4 are drained before the StatefulSet shrinks
    kubectl("scale", "twc", name, "-n", ns, "--replicas=2")
    await _converge(api, ns, name, 2, operator)
    twc = await get_cluster(api, ns, name)
    assert set(twc["status"]["members"]) == {"chat-0", "chat-1"}
    reasons = {e["reason"] for e in events_of(ns, name)}
    assert {
        "Provisioned",
        "MigrationStarted",
        "Migrated",
        "ShardMapInitialized",
        "StatefulSetCreated",
        "RebalancePublished",
        "HandoffCompleted",
        "Scaled",
    } <= reasons, reasons

    # an RMU that stopped on a live member is restarted through the shard map
    smap = await shard_map(api, ns, name)
    victim = str(smap.serving_ranges("chat-1").ranges[0])
    await play_members(api, ns, name, stopped_rmus={"chat-1": [victim]})

    async def restarted():
        await play_members(api, ns, name, stopped_rmus={"chat-1": [victim]})
        m = await shard_map(api, ns, name)
        return m.restart_generations("chat-1").get(victim, 0) >= 1

    await eventually(restarted, 30, 1.0, what="an RMU restart request", on_fail=fail)
    twc = await get_cluster(api, ns, name)
    assert twc["status"]["restartedRmus"] >= 1
    await play_members(api, ns, name)

    # delete with Retain: the tables stay
    kubectl("delete", "twc", name, "-n", ns, "--timeout=60s")
    assert {f"{prefix}-journal", f"{prefix}-snapshot"} <= set(dynamodb_tables())


async def _sts_replicas(api, ns, name, n):
    sts = await api.get("StatefulSet", ns, name)
    return sts is not None and sts["spec"]["replicas"] == n


async def test_missing_secret_gets_a_condition_and_an_event(operator, ns, api):
    name = "nosecret"
    apply_yaml(cluster_manifest(ns, name, _prefix()))

    async def failed():
        twc = await get_cluster(api, ns, name)
        return (twc.get("status") or {}).get("phase") == "Failed" and condition(
            twc, "Provisioned"
        ).get("reason") == "SecretNotFound"

    await eventually(
        failed, 60, what="phase Failed / SecretNotFound", on_fail=lambda: dump(ns, name, operator)
    )
    twc = await get_cluster(api, ns, name)
    assert condition(twc, "Ready")["status"] == "False"
    assert "nosecret-aws" in condition(twc, "Provisioned")["message"]
    warnings = [e for e in events_of(ns, name) if e["type"] == "Warning"]
    assert any(e["reason"] == "SecretNotFound" for e in warnings), warnings
    assert await api.get("StatefulSet", ns, name) is None
    assert operator.alive()
    # the Secret appears: provisioning proceeds without any other change
    apply_yaml(secret(ns, "nosecret-aws", {"access-key-id": "a", "secret-access-key": "b"}))

    async def provisioned():
        return condition(await get_cluster(api, ns, name), "Provisioned").get("status") == "True"

    await eventually(
        provisioned,
        60,
        what="Provisioned after the Secret appeared",
        on_fail=lambda: dump(ns, name, operator),
    )


async def test_delete_policy_delete_removes_the_tables(operator, ns, api):
    name, prefix = "ephemeral", _prefix()
    apply_yaml(
        secret(ns, f"{name}-aws", {"access-key-id": "a", "secret-access-key": "b"}),
        secret(ns, f"{name}-mysql", {"password": "threadweaver"}),
        cluster_manifest(ns, name, prefix, deletionPolicy="Delete", replicas=1),
    )

    async def provisioned():
        return condition(await get_cluster(api, ns, name), "Provisioned").get("status") == "True"

    await eventually(provisioned, 60, what="Provisioned", on_fail=lambda: dump(ns, name, operator))
    assert {f"{prefix}-journal", f"{prefix}-snapshot"} <= set(dynamodb_tables())
    kubectl("delete", "twc", name, "-n", ns, "--timeout=90s")
    assert not {f"{prefix}-journal", f"{prefix}-snapshot"} & set(dynamodb_tables())
    assert await get_cluster(api, ns, name) is None
