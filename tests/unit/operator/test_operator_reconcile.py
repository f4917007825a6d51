"""The reconcile loop against an in-memory API (no cluster): the order of operations, the
migration gate, scaling through Leases, idempotency and recovery from any state."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime

import kopf
import pytest

from threadweaver.shards import SHARDMAP_KEY, MemberStatus, ShardMap
from threadweaver_operator import events, provisioning, reconciler
from threadweaver_operator.kube import KubeError
from threadweaver_operator.state import cluster_state
from threadweaver_operator.status import Condition

NS = "team"


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.calls: list[tuple[str, str, str]] = []

    def _key(self, kind, ns, name):
        return (kind, ns, name)

    async def get(self, kind, ns, name):
        self.calls.append(("get", kind, name))
        obj = self.objects.get(self._key(kind, ns, name))
        return copy.deepcopy(obj) if obj else None

    async def list(self, kind, ns, label_selector=None, field_selector=None):
        want = dict(kv.split("=", 1) for kv in label_selector.split(",")) if label_selector else {}
        out = []
        for (k, n, _), obj in self.objects.items():
            labels = obj["metadata"].get("labels") or {}
            if k == kind and n == ns and all(labels.get(a) == b for a, b in want.items()):
                out.append(copy.deepcopy(obj))
        return out

    async def apply(self, obj, subresource=None):
        meta = obj["metadata"]
        key = self._key(obj["kind"], meta["namespace"], meta["name"])
        self.calls.append(("apply", obj["kind"], meta["name"]))
        old = self.objects.get(key)
        new = copy.deepcopy(dict(obj))
        new["metadata"].setdefault("generation", 1)
        if old:
            new["status"] = old.get("status", {})
            gen = old["metadata"].get("generation", 1)
            new["metadata"]["generation"] = gen + (1 if old.get("spec") != new.get("spec") else 0)
        self.objects[key] = new
        return copy.deepcopy(new)

    async def create(self, obj):
        meta = obj["metadata"]
        key = self._key(obj["kind"], meta["namespace"], meta["name"])
        if key in self.objects:
            raise KubeError(409, "exists")
        self.calls.append(("create", obj["kind"], meta["name"]))
        self.objects[key] = copy.deepcopy(dict(obj))
        return copy.deepcopy(dict(obj))

    async def merge_patch(self, kind, ns, name, patch, subresource=None):
        obj = self.objects[self._key(kind, ns, name)]
        self.calls.append(("patch", kind, name))
        _merge(obj, copy.deepcopy(dict(patch)))
        return copy.deepcopy(obj)

    async def delete(self, kind, ns, name, propagation="Background"):
        return self.objects.pop(self._key(kind, ns, name), None) is not None

    async def close(self):
        pass


def _merge(target, patch):
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        else:
            target[k] = v


SECRETS = {"aws": {"access-key-id": "a", "secret-access-key": "b"}, "mysql": {"password": "p"}}


@pytest.fixture
def env(monkeypatch):
    kube = FakeKube()
    kube.memo = kopf.Memo()  # the cluster's Kopf memo (its ClusterState)
    provisioned = []

    async def fake_provision(spec, secrets):
        provisioned.append(spec.table_prefix)
        return Condition(
            "Provisioned",
            "True",
            "TablesReady",
            f"DynamoDB tables ready: {spec.table_prefix}-journal",
        )

    monkeypatch.setattr(provisioning, "provision_tables", fake_provision)
    kube.provisioned = provisioned
    yield kube


async def reconcile(kube, obj):
    """One pass, as the Kopf handlers run it."""
    await reconciler.reconcile(kube, obj, kube.memo)


def add_secret(kube, name, data):
    import base64

    kube.objects[("Secret", NS, name)] = {
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def cluster(kube, **spec):
    body = {
        "apiVersion": "threadweaver.io/v1alpha1",
        "kind": "ThreadWeaverCluster",
        "metadata": {"name": "chat", "namespace": NS, "uid": "uid-1", "generation": 1},
        "spec": {
            "image": "img:1",
            "replicas": 3,
            "shards": 64,
            "journal": {
                "dynamodb": {"endpoint": "http://ddb:8000", "credentialsSecret": {"name": "aws"}}
            },
            "readModel": {"mysql": {"host": "db", "passwordSecret": {"name": "mysql"}}},
            **spec,
        },
        "status": {},
    }
    kube.objects[("ThreadWeaverCluster", NS, "chat")] = body
    return body


def body(kube):
    return copy.deepcopy(kube.objects[("ThreadWeaverCluster", NS, "chat")])


def status(kube):
    return kube.objects[("ThreadWeaverCluster", NS, "chat")]["status"]


def cond(kube, ctype):
    return next(c for c in status(kube)["conditions"] if c["type"] == ctype)


def shardmap(kube) -> ShardMap:
    return ShardMap.from_json(
        kube.objects[("ConfigMap", NS, "chat-shardmap")]["data"][SHARDMAP_KEY]
    )


def finish_job(kube, ok=True):
    (key,) = [k for k in kube.objects if k[0] == "Job"]
    kube.objects[key]["status"] = (
        {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        if ok
        else {
            "failed": 4,
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
        }
    )
    return key[2]


def run_pods(kube, ready=True):
    """Play the StatefulSet controller + kubelet: pods 0..replicas-1 exist (and are Ready)."""
    sts = kube.objects[("StatefulSet", NS, "chat")]
    n = sts["spec"]["replicas"]
    for key in [k for k in kube.objects if k[0] == "Pod"]:
        if int(key[2].rsplit("-", 1)[1]) >= n:
            del kube.objects[key]
    for i in range(n):
        kube.objects[("Pod", NS, f"chat-{i}")] = {
            "kind": "Pod",
            "metadata": {
                "name": f"chat-{i}",
                "namespace": NS,
                "labels": sts["spec"]["template"]["metadata"]["labels"],
            },
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
        }
    sts["status"] = {
        "observedGeneration": sts["metadata"]["generation"],
        "replicas": n,
        "readyReplicas": n if ready else 0,
        "currentRevision": "r1",
        "updateRevision": "r1",
    }


def ack_all(kube):
    """Play the members: each pod renews its Lease and acknowledges the published epoch."""
    epoch = shardmap(kube).epoch
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for key in [k for k in kube.objects if k[0] == "Pod"]:
        name = key[2]
        kube.objects[("Lease", NS, name)] = {
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": NS,
                "annotations": MemberStatus(name, epoch).to_annotations(),
            },
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 15, "renewTime": now},
        }
    for key in [
        k for k in kube.objects if k[0] == "Lease" and ("Pod",) + k[1:] not in kube.objects
    ]:
        del kube.objects[key]  # a deleted pod released its lease


async def test_full_lifecycle(env):
    kube = env
    add_secret(kube, "aws", SECRETS["aws"])
    add_secret(kube, "mysql", SECRETS["mysql"])
    cluster(kube)
    await reconcile(kube, body(kube))
    # runtime objects, tables, the Job, the map; no StatefulSet before the migration
    for kind, name in [
        ("ServiceAccount", "chat-runtime"),
        ("Role", "chat-runtime"),
        ("RoleBinding", "chat-runtime"),
        ("Service", "chat-headless"),
        ("Service", "chat"),
        ("PodDisruptionBudget", "chat-pdb"),
        ("Secret", "chat-peer-token"),
        ("ConfigMap", "chat-shardmap"),
    ]:
        assert (kind, NS, name) in kube.objects, (kind, name)
    assert kube.provisioned == ["chat"]
    assert ("StatefulSet", NS, "chat") not in kube.objects
    assert status(kube)["phase"] == "Migrating" and cond(kube, "Migrated")["reason"] == "JobRunning"
    assert shardmap(kube).epoch == 1 and set(shardmap(kube).assignments) == {
        "chat-0",
        "chat-1",
        "chat-2",
    }

    job = finish_job(kube)
    await reconcile(kube, body(kube))
    assert ("StatefulSet", NS, "chat") in kube.objects
    assert kube.objects[("StatefulSet", NS, "chat")]["spec"]["replicas"] == 3
    assert status(kube)["migratedRevision"] in job
    run_pods(kube)
    ack_all(kube)
    await reconcile(kube, body(kube))
    s = status(kube)
    assert s["phase"] == "Running" and cond(kube, "Ready")["status"] == "True", s
    assert s["readyReplicas"] == 3 and s["epoch"] == 1 and sum(s["members"].values()) == 64
    assert kube.provisioned == ["chat"]  # not provisioned again

    # idempotent: a second pass writes nothing new
    before = json.dumps(
        {"/".join(k): v for k, v in kube.objects.items()}, sort_keys=True, default=str
    )
    await reconcile(kube, body(kube))
    assert (
        json.dumps({"/".join(k): v for k, v in kube.objects.items()}, sort_keys=True, default=str)
        == before
    )

    # scale 3 -> 5 -> 2, playing the members
    for replicas in (5, 2):
        kube.objects[("ThreadWeaverCluster", NS, "chat")]["spec"]["replicas"] = replicas
        kube.objects[("ThreadWeaverCluster", NS, "chat")]["metadata"]["generation"] += 1
        for _ in range(30):
            await reconcile(kube, body(kube))
            m = shardmap(kube)
            if m.in_handoff:
                # the StatefulSet never drops a member that must still hand off
                for loser in m.handoff.losing_members():
                    assert (
                        int(loser.rsplit("-", 1)[1])
                        < kube.objects[("StatefulSet", NS, "chat")]["spec"]["replicas"]
                    )
            run_pods(kube)
            ack_all(kube)
            if (
                status(kube)["phase"] == "Running"
                and set(status(kube)["members"]) == {f"chat-{i}" for i in range(replicas)}
                and kube.objects[("StatefulSet", NS, "chat")]["spec"]["replicas"] == replicas
            ):
                break
        assert status(kube)["phase"] == "Running", json.dumps(status(kube), indent=1)
        assert set(shardmap(kube).assignments) == {f"chat-{i}" for i in range(replicas)}
        counts = shardmap(kube).counts().values()
        assert max(counts) - min(counts) <= 1
    assert "chat-4" not in status(kube)["members"]


async def test_missing_secret_is_a_condition_not_a_crash(env):
    kube = env
    cluster(kube)
    await reconcile(kube, body(kube))
    assert status(kube)["phase"] == "Failed"
    assert cond(kube, "Provisioned")["reason"] == "SecretNotFound"
    assert cond(kube, "Migrated")["reason"] == "SecretNotFound"
    assert cond(kube, "Ready")["status"] == "False"
    assert ("StatefulSet", NS, "chat") not in kube.objects and not [
        k for k in kube.objects if k[0] == "Job"
    ]
    # the Secrets appear: it recovers by itself
    add_secret(kube, "aws", SECRETS["aws"])
    add_secret(kube, "mysql", SECRETS["mysql"])
    await reconcile(kube, body(kube))
    assert cond(kube, "Provisioned")["status"] == "True" and status(kube)["phase"] == "Migrating"


async def test_failed_migration_blocks_rollout(env):
    kube = env
    add_secret(kube, "aws", SECRETS["aws"])
    add_secret(kube, "mysql", SECRETS["mysql"])
    cluster(kube)
    await reconcile(kube, body(kube))
    finish_job(kube, ok=False)
    await reconcile(kube, body(kube))
    assert cond(kube, "Migrated")["reason"] == "JobFailed" and status(kube)["phase"] == "Failed"
    assert ("StatefulSet", NS, "chat") not in kube.objects


async def test_image_upgrade_waits_for_its_migration(env):
    kube = env
    add_secret(kube, "aws", SECRETS["aws"])
    add_secret(kube, "mysql", SECRETS["mysql"])
    cluster(kube)
    await reconcile(kube, body(kube))
    finish_job(kube)
    await reconcile(kube, body(kube))
    run_pods(kube)
    ack_all(kube)
    await reconcile(kube, body(kube))
    obj = kube.objects[("ThreadWeaverCluster", NS, "chat")]
    obj["spec"]["image"] = "img:2"
    obj["spec"]["upgrade"] = {"replayCheck": "off"}  # the gate: test_operator_replay_gate.py
    obj["metadata"]["generation"] += 1
    await reconcile(kube, body(kube))
    sts = kube.objects[("StatefulSet", NS, "chat")]
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "img:1"
    jobs = [k for k in kube.objects if k[0] == "Job"]
    assert len(jobs) == 2
    new_job = next(
        k for k in jobs if kube.objects[k].get("status") is None or not kube.objects[k]["status"]
    )
    kube.objects[new_job]["status"] = {
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    await reconcile(kube, body(kube))
    assert (
        kube.objects[("StatefulSet", NS, "chat")]["spec"]["template"]["spec"]["containers"][0][
            "image"
        ]
        == "img:2"
    )
    assert [k for k in kube.objects if k[0] == "Job"] == [new_job]  # the superseded Job is gone


async def test_invalid_spec_reports_and_creates_nothing(env):
    kube = env
    cluster(kube, replicas=100, shards=8)
    await reconcile(kube, body(kube))
    assert status(kube)["phase"] == "Failed" and cond(kube, "Ready")["reason"] == "InvalidSpec"
    assert "spec.replicas" in cond(kube, "Ready")["message"]
    assert [k for k in kube.objects if k[0] != "ThreadWeaverCluster"] == []


async def test_operator_restart_resumes_from_observed_state(env):
    kube = env
    add_secret(kube, "aws", SECRETS["aws"])
    add_secret(kube, "mysql", SECRETS["mysql"])
    cluster(kube)
    await reconcile(kube, body(kube))
    finish_job(kube)
    await reconcile(kube, body(kube))
    run_pods(kube)
    ack_all(kube)
    await reconcile(kube, body(kube))
    # scale up, publish a handoff, then "restart" the operator (forget everything in memory)
    kube.objects[("ThreadWeaverCluster", NS, "chat")]["spec"]["replicas"] = 4
    await reconcile(kube, body(kube))
    run_pods(kube)
    ack_all(kube)  # chat-3 up with a lease
    kube.objects[("Lease", NS, "chat-3")]["metadata"]["annotations"] = MemberStatus(
        "chat-3", 0
    ).to_annotations()
    await reconcile(kube, body(kube))
    assert shardmap(kube).in_handoff
    epoch = shardmap(kube).epoch
    kube.memo = kopf.Memo()
    await reconcile(kube, body(kube))
    assert shardmap(kube).epoch == epoch and shardmap(kube).in_handoff  # waits for the same acks
    ack_all(kube)
    await reconcile(kube, body(kube))
    assert not shardmap(kube).in_handoff and shardmap(kube).epoch == epoch
    assert kube.provisioned == ["chat"]  # the status remembered the tables


async def test_each_secret_is_read_once_per_pass(env):
    kube = env
    add_secret(kube, "aws", SECRETS["aws"])
    add_secret(kube, "mysql", SECRETS["mysql"])
    cluster(kube)
    for _ in range(2):  # the first pass creates the tables, the second does not
        kube.calls.clear()
        await reconcile(kube, body(kube))
        reads = [name for verb, kind, name in kube.calls if (verb, kind) == ("get", "Secret")]
        assert sorted(reads) == ["aws", "chat-peer-token", "mysql"], reads


async def test_table_creation_runs_outside_the_lock_and_is_shared(env, monkeypatch):
    """A pass waiting for create_tables does not hold the cluster's lock; a concurrent pass of
    the same generation waits for the same run instead of starting another one."""
    kube = env
    add_secret(kube, "aws", SECRETS["aws"])
    add_secret(kube, "mysql", SECRETS["mysql"])
    cluster(kube)
    started, release = asyncio.Event(), asyncio.Event()
    calls = []

    async def slow_provision(spec, secrets):
        calls.append(spec.table_prefix)
        started.set()
        await release.wait()
        return Condition("Provisioned", "True", "TablesReady", "DynamoDB tables ready: chat")

    monkeypatch.setattr(provisioning, "provision_tables", slow_provision)
    posted = []
    monkeypatch.setattr(events, "post", lambda body, type_, reason, message: posted.append(reason))
    first = asyncio.create_task(reconcile(kube, body(kube)))
    await started.wait()
    state = cluster_state(kube.memo)
    assert not state.lock.locked()
    second = asyncio.create_task(reconcile(kube, body(kube)))
    for _ in range(10):  # the fake API never suspends: the second pass runs up to its wait
        await asyncio.sleep(0)
    assert not second.done() and calls == ["chat"]
    release.set()
    await asyncio.gather(first, second)
    assert calls == ["chat"]
    assert posted.count("Provisioned") == 1 and posted.count("ShardMapInitialized") == 1
    assert status(kube)["phase"] == "Migrating"
