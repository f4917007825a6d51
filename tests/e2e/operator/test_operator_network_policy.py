"""A network that denies by default, against the real API server: the operator's two
NetworkPolicies are accepted (validated) by the API server, select the cluster's runtime and
migration pods, open the API port to spec.network.allowFrom, the internal port to the members
only and the metrics to spec.network.metricsFrom, and let out only DNS, the Kubernetes API (as
this API server publishes it), dynalite and MariaDB. `policy: false` deletes them; the schema
refuses malformed peers. (The control plane enforces no NetworkPolicy: KWOK runs no pods.)"""

from __future__ import annotations

import json
import uuid

import pytest
from operator_e2e_support import (
    apply_yaml,
    cluster_manifest,
    dump,
    events_of,
    eventually,
    kubectl,
    secret,
)

pytestmark = pytest.mark.e2e

TEAM = {
    "namespaceSelector": {"matchLabels": {"team": "chat"}},
    "podSelector": {"matchLabels": {"role": "frontend"}},
}
SCRAPER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}


def tcp(port: int) -> list[dict]:
    return [{"protocol": "TCP", "port": port}]


def api_server_rules() -> list[dict]:
    """The egress rules the API server's own Service and EndpointSlices call for."""
    svc = json.loads(kubectl("get", "svc", "kubernetes", "-n", "default", "-o", "json").stdout)
    rules = [
        {"to": [{"ipBlock": {"cidr": f"{svc['spec']['clusterIP']}/32"}}], "ports": tcp(p["port"])}
        for p in svc["spec"]["ports"]
    ]
    slices = json.loads(
        kubectl(
            "get",
            "endpointslices",
            "-n",
            "default",
            "-l",
            "kubernetes.io/service-name=kubernetes",
            "-o",
            "json",
        ).stdout
    )["items"]
    for eps in slices:
        addresses = sorted({a for e in eps.get("endpoints") or [] for a in e["addresses"]})
        rules += [
            {"to": [{"ipBlock": {"cidr": f"{a}/32"}} for a in addresses], "ports": tcp(p["port"])}
            for p in eps.get("ports") or []
            if addresses
        ]
    return rules


async def test_network_policies(ns_operator, ns, api):
    name = "net"
    apply_yaml(
        secret(ns, f"{name}-aws", {"access-key-id": "e2e", "secret-access-key": "e2e"}),
        secret(ns, f"{name}-mysql", {"password": "threadweaver"}),
        cluster_manifest(
            ns,
            name,
            f"e2e-{uuid.uuid4().hex[:8]}",
            deletionPolicy="Delete",
            network={"allowFrom": [TEAM], "metricsFrom": [SCRAPER], "internalPort": 9443},
        ),
    )
    fail = lambda: dump(ns, name, ns_operator)  # noqa: E731

    async def both():
        policies = [
            await api.get("NetworkPolicy", ns, f"{name}-{p}") for p in ("runtime", "migration")
        ]
        return policies if all(policies) else None

    runtime, migration = await eventually(both, 60, what="the NetworkPolicies", on_fail=fail)
    for policy in (runtime, migration):
        assert policy["metadata"]["ownerReferences"][0]["kind"] == "ThreadWeaverCluster"
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]

    # the runtime policy selects what the cluster's Services select: the runtime pods
    headless = await api.get("Service", ns, f"{name}-headless")
    members = {"matchLabels": headless["spec"]["selector"]}
    assert runtime["spec"]["podSelector"] == members
    assert {"name": "internal", "port": 9443, "protocol": "TCP", "targetPort": "internal"} in (
        headless["spec"]["ports"]
    )
    assert runtime["spec"]["ingress"] == [
        {"from": [TEAM], "ports": tcp(8080)},
        {"from": [{"podSelector": members}], "ports": tcp(9443)},
        {"from": [SCRAPER], "ports": tcp(8080)},
    ]
    dns = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    loopback = [{"ipBlock": {"cidr": "127.0.0.1/32"}}]
    assert runtime["spec"]["egress"] == [
        dns,
        *api_server_rules(),
        {"to": loopback, "ports": tcp(8000)},  # dynalite
        {"to": loopback, "ports": tcp(3306)},  # MariaDB
        {"to": [{"podSelector": members}], "ports": tcp(9443)},
    ]

    # the migration policy selects the migration Job's pods: no ingress, DNS and MySQL out
    async def job():
        jobs = await api.list("Job", ns, label_selector=f"app.kubernetes.io/instance={name}")
        return jobs[0] if jobs else None

    labels = (await eventually(job, 90, what="the migration Job", on_fail=fail))["spec"][
        "template"
    ]["metadata"]["labels"]
    assert set(migration["spec"]["podSelector"]["matchLabels"].items()) <= set(labels.items())
    assert not migration["spec"].get("ingress")
    assert migration["spec"]["egress"] == [dns, {"to": loopback, "ports": tcp(3306)}]

    # the Jobs' pods of a replay check (DynamoDB) and of a rebuild (DynamoDB and MySQL)
    for kind, egress in (
        ("replay-check", [dns, {"to": loopback, "ports": tcp(8000)}]),
        (
            "rebuild",
            [dns, {"to": loopback, "ports": tcp(8000)}, {"to": loopback, "ports": tcp(3306)}],
        ),
    ):
        policy = await api.get("NetworkPolicy", ns, f"{name}-{kind}")
        assert policy is not None, kind
        assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == kind
        assert not policy["spec"].get("ingress") and policy["spec"]["egress"] == egress, kind
    assert "NetworkPolicyCreated" in [e["reason"] for e in events_of(ns, name)]

    # the schema refuses malformed peers
    for peer, message in (
        ({}, "a peer needs namespaceSelector, podSelector or ipBlock"),
        ({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}, "cannot be combined"),
        ({"podSelector": {"matchLabels": {"role": "not a label value"}}}, "should match"),
    ):
        bad = cluster_manifest(ns, "bad", "p", network={"allowFrom": [peer]})
        proc = kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
        assert proc.returncode != 0 and message in proc.stderr, (peer, proc.stderr)

    # policy: false deletes them
    kubectl(
        "patch",
        "twc",
        name,
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"spec":{"network":{"policy":false}}}',
    )

    async def gone():
        return not await api.list(
            "NetworkPolicy", ns, label_selector=f"app.kubernetes.io/instance={name}"
        )

    await eventually(gone, 60, what="the NetworkPolicies deleted", on_fail=fail)
    assert "NetworkPolicyDeleted" in [e["reason"] for e in events_of(ns, name)]
