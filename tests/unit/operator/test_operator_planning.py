"""The pure planning step of a reconcile pass: Observation in, Steps out (no Kubernetes, no
fake API)."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime

from threadweaver.shards import ShardMap
from threadweaver_operator import builders, planning
from threadweaver_operator.events import warning_key
from threadweaver_operator.observation import Observation, read_spec
from threadweaver_operator.status import Condition
from threadweaver_operator.steps import (
    Apply,
    Create,
    CreatePeerToken,
    Delete,
    ForgetWarnings,
    Post,
    ScaleStatefulSet,
    WriteStatus,
)

NS = "team"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SPEC = {
    "image": "img:1",
    "replicas": 3,
    "shards": 64,
    "journal": {"dynamodb": {"endpoint": "http://ddb:8000", "credentialsSecret": {"name": "aws"}}},
    "readModel": {"mysql": {"host": "db", "passwordSecret": {"name": "mysql"}}},
}
TABLES_READY = Condition(
    "Provisioned", "True", "TablesReady", "DynamoDB tables ready: chat-journal"
)


def secret(data: dict[str, str]) -> dict:
    return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


SECRETS = {
    "aws": secret({"access-key-id": "a", "secret-access-key": "b"}),
    "mysql": secret({"password": "p"}),
}


def observation(spec: dict | None = None, generation: int = 1, **fields) -> Observation:
    raw = {**SPEC, **(spec or {})}
    body = {"metadata": {"name": "chat", "namespace": NS, "uid": "u", "generation": generation}}
    parsed, problems = read_spec({**body, "spec": raw})
    values = {
        "name": "chat",
        "namespace": NS,
        "generation": generation,
        "raw_spec": raw,
        "spec": parsed,
        "spec_problems": problems,
        "owner": {"uid": "u"},
        "previous": {},
        "now": NOW,
        "monotonic": 100.0,
        "secrets": SECRETS,
        "peer_token_exists": True,
    }
    values.update(fields)
    return Observation(**values)


def posted(plan) -> list[tuple[str, str]]:
    """(reason, message) of every Event of the plan, standalone or announcing a write."""
    out = []
    for step in plan.steps:
        if isinstance(step, Post):
            out.append((step.event.reason, step.event.message))
        out += [(e.reason, e.message) for e in getattr(step, "events", ())]
    return out


def written_status(plan) -> dict:
    (write,) = plan.of(WriteStatus)
    return dict(write.status)


def condition(status: dict, ctype: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == ctype)


def applied(plan, kind: str) -> list[dict]:
    return [s.obj for s in plan.of(Apply) if s.obj["kind"] == kind]


def test_invalid_spec_plans_a_warning_and_the_status_only():
    o = observation({"replicas": 100, "shards": 8})
    p = planning.plan(o)
    assert [type(s) for s in p.steps] == [Post, WriteStatus]
    (warning,) = p.of(Post)
    assert warning.event.type == "Warning" and warning.event.reason == "InvalidSpec"
    status = written_status(p)
    assert status["phase"] == "Failed" and condition(status, "Ready")["reason"] == "InvalidSpec"
    # the same problem again: no second Event
    again = planning.plan(replace(o, warned=frozenset({warning.warning_key})))
    assert not again.of(Post)


def test_first_pass_creates_everything_but_the_statefulset():
    p = planning.plan(observation(tables=TABLES_READY, peer_token_exists=False))
    kinds = [s.obj["kind"] for s in p.of(Apply)]
    assert kinds[:6] == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Service",
        "Service",
        "PodDisruptionBudget",
    ]
    assert "StatefulSet" not in kinds
    assert len(p.of(CreatePeerToken)) == 1
    (job,) = p.of(Create)
    assert job.obj["kind"] == "Job"
    (configmap,) = applied(p, "ConfigMap")
    reasons = [r for r, _ in posted(p)]
    assert reasons == [
        "PeerTokenCreated",
        "NetworkPolicyCreated",
        "NetworkPolicyCreated",
        "NetworkPolicyCreated",
        "NetworkPolicyCreated",
        "Provisioned",
        "MigrationStarted",
        "ShardMapInitialized",
        "Phase",
    ]
    status = written_status(p)
    assert status["phase"] == "Migrating" and status["epoch"] == 1
    assert condition(status, "Migrated")["reason"] == "JobRunning"
    assert condition(status, "Provisioned")["reason"] == "TablesReady"
    assert configmap["metadata"]["name"] == "chat-shardmap"


def test_missing_secrets_are_conditions_and_block_tables_and_migration():
    p = planning.plan(observation(secrets={}))
    warnings = [s.event for s in p.of(Post) if s.event.type == "Warning"]
    assert [(w.reason, w.message) for w in warnings] == [
        (
            "SecretNotFound",
            f"Secret {NS}/aws not found (needed by spec.journal.dynamodb.credentialsSecret)",
        ),
        (
            "SecretNotFound",
            f"Secret {NS}/mysql not found (needed by spec.readModel.mysql.passwordSecret)",
        ),
    ]
    assert not p.of(Create) and not applied(p, "StatefulSet")
    status = written_status(p)
    assert status["phase"] == "Failed"
    assert condition(status, "Provisioned")["reason"] == "SecretNotFound"
    assert condition(status, "Migrated")["reason"] == "SecretNotFound"


def test_secret_warnings_are_forgotten_once_the_secrets_exist():
    key = warning_key("SecretNotFound", "whatever")
    p = planning.plan(observation(tables=TABLES_READY, warned=frozenset({key})))
    assert ForgetWarnings("SecretNotFound") in p.steps


def test_tables_needed_once_per_generation():
    spec, _ = read_spec({"metadata": {"name": "chat", "namespace": NS}, "spec": SPEC})
    ready = {
        "conditions": [
            {
                "type": "Provisioned",
                "status": "True",
                "reason": "TablesReady",
                "observedGeneration": 2,
            }
        ]
    }
    assert planning.tables_needed(spec, SECRETS, {}, 1)
    assert not planning.tables_needed(spec, SECRETS, ready, 2)
    assert planning.tables_needed(spec, SECRETS, ready, 3)  # a new generation: checked again
    assert not planning.tables_needed(spec, {}, {}, 1)  # the credentials are missing
    external, _ = read_spec(
        {
            "metadata": {"name": "chat", "namespace": NS},
            "spec": {**SPEC, "journal": {"dynamodb": {"createTables": False}}},
        }
    )
    assert not planning.tables_needed(external, SECRETS, {}, 1)
    p = planning.plan(observation({"journal": {"dynamodb": {"createTables": False}}}))
    assert condition(written_status(p), "Provisioned")["reason"] == "External"


def test_failed_provisioning_waits_for_the_tables_with_a_warning():
    failed = Condition("Provisioned", "False", "ProvisioningFailed", "ClientError: boom")
    p = planning.plan(observation(tables=failed))
    assert ("ProvisioningFailed", "ClientError: boom") in posted(p)
    assert not p.of(Create)
    status = written_status(p)
    assert status["phase"] == "Provisioning"
    assert condition(status, "Migrated")["reason"] == "WaitingForTables"


def _migrated_observation(**fields) -> Observation:
    """Tables ready, the shard map published, this revision's migration Job succeeded."""
    o = observation(tables=TABLES_READY)
    revision = o.spec.migration_revision()
    job = {
        **builders.migration_job(o.spec),
        "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    }
    old = builders.migration_job(replace(o.spec, image="img:0"))
    old_done = {**old, "status": {"succeeded": 1}}
    running = builders.migration_job(replace(o.spec, image="img:00"))
    running = {**running, "status": {"active": 1}}
    smap = ShardMap.initial(64, ["chat-0", "chat-1", "chat-2"])
    configmap = builders.shardmap_configmap(o.spec, smap)
    values = {
        "migration_job": job,
        "migration_jobs": (job, old_done, running),
        "shardmap_configmap": configmap,
    }
    values.update(fields)
    assert job["metadata"]["name"].endswith(revision)
    return replace(o, **values)


def test_a_succeeded_migration_rolls_out_and_deletes_superseded_jobs():
    o = _migrated_observation()
    p = planning.plan(o)
    old_name = builders.migration_job(replace(o.spec, image="img:0"))["metadata"]["name"]
    assert [(d.kind, d.name) for d in p.of(Delete)] == [("Job", old_name)]
    (sts,) = applied(p, "StatefulSet")
    assert sts["spec"]["replicas"] == 3
    reasons = [r for r, _ in posted(p)]
    assert reasons.index("Migrated") < reasons.index("MigrationJobDeleted")
    assert "StatefulSetCreated" in reasons
    status = written_status(p)
    assert status["migratedRevision"] == o.spec.migration_revision()


def test_scaling_does_not_wait_for_a_new_templates_migration():
    o = _migrated_observation()
    sts = builders.statefulset(o.spec, 3)
    sts["status"] = {"replicas": 3, "readyReplicas": 3}
    # the replay check of the new image is test_operator_replay_gate.py's: off here
    upgraded = observation(
        {"image": "img:2", "replicas": 4, "upgrade": {"replayCheck": "off"}}, tables=TABLES_READY
    )
    o = replace(
        upgraded,
        statefulset=sts,
        shardmap_configmap=o.shardmap_configmap,
        migration_job=None,  # the new revision's Job does not exist yet
    )
    p = planning.plan(o)
    assert not applied(p, "StatefulSet")
    (scale,) = p.of(ScaleStatefulSet)
    assert scale.replicas == 4
    assert [e.reason for e in scale.events] == ["Scaled"]
    assert [s.obj["kind"] for s in p.of(Create)] == ["Job"]


def test_supervise_runs_once_per_pass(monkeypatch):
    calls = []
    real = planning.supervise

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(planning, "supervise", counting)
    planning.plan(_migrated_observation())
    assert len(calls) == 1
    planning.plan(observation(tables=TABLES_READY))  # no map yet: initialized, then supervised
    assert len(calls) == 2


def test_an_unchanged_status_is_not_written():
    o = observation(tables=TABLES_READY)
    first = written_status(planning.plan(o))
    (write,) = planning.plan(replace(o, previous=first)).of(WriteStatus)
    assert write.patch is None and dict(write.status) == first
    (write,) = planning.plan(o).of(WriteStatus)
    assert write.patch is not None
    assert [e.reason for e in write.events] == ["Phase"]
