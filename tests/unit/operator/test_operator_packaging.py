"""Packaging: one CRD source, RBAC consistent across config/ and the chart, valid samples."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema_rs
import pytest
import yaml

from threadweaver_operator import builders
from threadweaver_operator.spec import ClusterSpec

ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "crds" / "threadweavercluster.yaml"
CHART = ROOT / "charts" / "thread-weaver-operator"


def crd() -> dict:
    return yaml.safe_load(CRD.read_text())


def test_chart_crd_is_a_byte_identical_copy():
    assert (CHART / "crds" / "threadweavercluster.yaml").read_bytes() == CRD.read_bytes(), (
        "run: cp crds/threadweavercluster.yaml charts/thread-weaver-operator/crds/"
    )


def test_crd_shape():
    c = crd()
    assert c["metadata"]["name"] == "threadweaverclusters.threadweaver.io"
    assert c["spec"]["group"] == "threadweaver.io" and c["spec"]["scope"] == "Namespaced"
    assert c["spec"]["names"]["kind"] == "ThreadWeaverCluster" and c["spec"]["names"][
        "shortNames"
    ] == ["twc"]
    (v,) = c["spec"]["versions"]
    assert v["name"] == "v1alpha1" and v["served"] and v["storage"]
    assert v["subresources"]["status"] == {}
    assert v["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    cols = [col["name"] for col in v["additionalPrinterColumns"] if not col.get("priority")]
    assert cols == ["Replicas", "Ready", "Epoch", "Phase", "Age"]
    spec = v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["shards"]["x-kubernetes-validations"] == [
        {"rule": "self == oldSelf", "message": "shards is immutable"}
    ]
    assert spec["replicas"]["default"] == 3 and spec["replicas"]["minimum"] == 0
    assert spec["shards"]["default"] == 1024 and (
        spec["shards"]["minimum"],
        spec["shards"]["maximum"],
    ) == (1, 65536)
    status = v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert set(status["phase"]["enum"]) == {
        "Pending",
        "Provisioning",
        "Migrating",
        "Running",
        "Rebalancing",
        "Degraded",
        "Failed",
        "Deleting",
    }
    for key in (
        "observedGeneration",
        "conditions",
        "replicas",
        "readyReplicas",
        "selector",
        "epoch",
        "members",
        "orphanedRmus",
        "restartedRmus",
    ):
        assert key in status


def _structural(schema):
    """Drop Kubernetes extensions so that a JSON-Schema validator reads the OpenAPI schema."""
    if isinstance(schema, dict):
        return {k: _structural(v) for k, v in schema.items() if not k.startswith("x-kubernetes")}
    if isinstance(schema, list):
        return [_structural(v) for v in schema]
    return schema


def validator():
    (v,) = crd()["spec"]["versions"]
    return jsonschema_rs.validator_for(_structural(v["schema"]["openAPIV3Schema"]))


def samples():
    for path in sorted((ROOT / "config" / "samples").glob("threadweavercluster*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "ThreadWeaverCluster":
                yield path.name, doc


@pytest.mark.parametrize("name,doc", list(samples()), ids=lambda x: x if isinstance(x, str) else "")
def test_samples_validate_and_are_runnable(name, doc):
    validator().validate(doc)
    s = ClusterSpec.from_resource(doc["metadata"]["name"], "default", doc["spec"])
    assert s.problems() == []


@pytest.mark.parametrize(
    "bad",
    [
        {"replicas": -1},
        {"shards": 0},
        {"shards": 70000},
        {"image": ""},
        {"deletionPolicy": "Maybe"},
        {"service": {"type": "ExternalName"}},
        {"journal": {"dynamodb": {"billingMode": "ON_DEMAND"}}},
        {"journal": {"dynamodb": {"endpoint": "not a url"}}},
        {"readModel": {"mysql": {}}},
    ],
)
def test_schema_rejects(bad):
    doc = {
        "apiVersion": "threadweaver.io/v1alpha1",
        "kind": "ThreadWeaverCluster",
        "metadata": {"name": "x"},
        "spec": {"image": "i", "readModel": {"mysql": {"host": "h"}}, **bad},
    }
    assert not validator().is_valid(doc)


def _rules_of_template(text: str) -> list[dict]:
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("{{"))
    text = re.sub(r"\{\{[^}]*\}\}", "x", text)
    return yaml.safe_load(text)["rules"]


def test_chart_cluster_role_equals_config_rbac():
    config_rules = yaml.safe_load((ROOT / "config" / "rbac" / "cluster_role.yaml").read_text())[
        "rules"
    ]
    chart_rules = _rules_of_template((CHART / "templates" / "clusterrole.yaml").read_text())
    assert chart_rules == config_rules


def _allowed(rules, group, resource, verb):
    return any(
        group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules
    )


def test_operator_holds_every_permission_it_grants_and_uses():
    rules = yaml.safe_load((ROOT / "config" / "rbac" / "cluster_role.yaml").read_text())["rules"]
    s = ClusterSpec.from_resource("c", "ns", {"image": "i", "readModel": {"mysql": {"host": "h"}}})
    # escalation check: a Role can grant only what its creator holds
    for rule in builders.role(s, 3)["rules"]:
        for g in rule["apiGroups"]:
            for res in rule["resources"]:
                for verb in rule["verbs"]:
                    assert _allowed(rules, g, res, verb), (g, res, verb)
    # server-side apply needs patch (and create for new objects)
    plural = {
        "ServiceAccount": ("", "serviceaccounts"),
        "Role": ("rbac.authorization.k8s.io", "roles"),
        "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings"),
        "Service": ("", "services"),
        "PodDisruptionBudget": ("policy", "poddisruptionbudgets"),
        "StatefulSet": ("apps", "statefulsets"),
        "ConfigMap": ("", "configmaps"),
    }
    for kind, (g, res) in plural.items():
        for verb in ("get", "create", "patch"):
            assert _allowed(rules, g, res, verb), (kind, verb)
    for g, res, verb in [
        ("batch", "jobs", "create"),
        ("batch", "jobs", "delete"),
        ("", "secrets", "get"),
        ("", "secrets", "create"),
        ("", "pods", "list"),
        ("coordination.k8s.io", "leases", "list"),
        ("", "events", "create"),
        ("threadweaver.io", "threadweaverclusters/status", "patch"),
        ("threadweaver.io", "threadweaverclusters/finalizers", "update"),
    ]:
        assert _allowed(rules, g, res, verb), (res, verb)
    for r in rules:
        assert "*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"]


def test_operator_deployment_is_hardened():
    dep = yaml.safe_load((ROOT / "config" / "operator" / "deployment.yaml").read_text())
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["command"] == ["threadweaver-operator"]


def test_values_are_documented():
    lines = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*[a-zA-Z]+:\s*\S", line) and not line.strip().startswith("#"):
            # a leaf value: a comment right above it, or it belongs to a documented block
            above = [lines[j].strip() for j in range(max(0, i - 3), i)]
            indent = len(line) - len(line.lstrip())
            assert (
                any(a.startswith("#") for a in above) or indent >= 4 or _parent_documented(lines, i)
            ), line


def _parent_documented(lines, i):
    indent = len(lines[i]) - len(lines[i].lstrip())
    for j in range(i - 1, -1, -1):
        ind = len(lines[j]) - len(lines[j].lstrip())
        if lines[j].strip() and not lines[j].strip().startswith("#") and ind < indent:
            return j > 0 and lines[j - 1].strip().startswith("#")
    return False


def test_dockerfile_serves_both_entrypoints_as_non_root():
    text = (ROOT / "Dockerfile").read_text()
    assert (
        # python:3.11-slim unless a build passes another base (make image: one from Debian)
        "ARG BASE_IMAGE=python:3.11-slim" in text
        and text.count("FROM ${BASE_IMAGE}") == 2
        and "USER 10001" in text
        and 'pip install ".[operator]"' in text
    )
    assert str(builders.RUNTIME_UID) in text
