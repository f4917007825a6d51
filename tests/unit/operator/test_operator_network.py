"""A network that denies by default: spec.network, the internal forwarding port in the pod
template, the two NetworkPolicies (selectors, ports, peers) and the planning steps that apply or
delete them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from threadweaver_operator import builders, names, planning
from threadweaver_operator.builders import env_dict
from threadweaver_operator.network_policies import (
    ApiEndpoint,
    kubernetes_api_endpoints,
    migration_policy,
    network_policies,
    runtime_policy,
)
from threadweaver_operator.observation import Observation, read_spec
from threadweaver_operator.spec import ClusterSpec, SpecError
from threadweaver_operator.steps import Apply, Delete, Post

BASE = {
    "image": "img:1",
    "shards": 64,
    "journal": {"dynamodb": {"endpoint": "http://10.1.2.3:8000"}},
    "readModel": {"mysql": {"host": "mysql.data.svc.cluster.local", "port": 3307}},
}
API = (ApiEndpoint(("10.96.0.1",), 443), ApiEndpoint(("192.168.0.10", "192.168.0.11"), 6443))


def spec(**changes) -> ClusterSpec:
    return ClusterSpec.from_resource("chat", "team", {**BASE, **changes})


def rules_by_port(rules):
    return {tuple((p["protocol"], p["port"]) for p in r["ports"]): r for r in rules}


# -- spec.network ---------------------------------------------------------------------------


def test_network_defaults_and_problems():
    n = spec().network
    assert n.policy is True and n.internal_port == 9080
    assert n.allow_from == ({"namespaceSelector": {}},) and n.metrics_from == ()
    assert spec().problems() == []
    assert spec(network={"internalPort": 8080}).problems() == [
        "spec.network.internalPort: 8080 is the API port (spec.service.port): "
        "the forwarding endpoint needs a port of its own"
    ]
    bad_peers = spec(
        network={
            "allowFrom": [{"namespaces": {}}, {}],
            "metricsFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}],
        }
    ).problems()
    assert bad_peers == [
        "spec.network.allowFrom[0]: unknown fields ['namespaces']",
        "spec.network.allowFrom[1]: needs namespaceSelector, podSelector or ipBlock",
        "spec.network.metricsFrom[0]: ipBlock cannot be combined with selectors",
    ]
    cidrs = spec(
        network={
            "allowFrom": [
                {"ipBlock": {"cidr": "10.0.0.0/33"}},
                {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "11.0.0.0/16", "x"]}},
            ]
        }
    ).problems()
    assert cidrs == [
        "spec.network.allowFrom[0].ipBlock.cidr: '10.0.0.0/33' is not a CIDR",
        "spec.network.allowFrom[1].ipBlock.except[1]: 11.0.0.0/16 is not within 10.0.0.0/8",
        "spec.network.allowFrom[1].ipBlock.except[2]: 'x' is not a CIDR",
    ]
    with pytest.raises(SpecError, match=r"spec.network.policy: expected a boolean"):
        spec(network={"policy": "no"})
    with pytest.raises(SpecError, match=r"spec.network.allowFrom: expected a list"):
        spec(network={"allowFrom": {"namespaceSelector": {}}})


# -- the pod template -----------------------------------------------------------------------


def test_the_internal_port_has_its_own_container_port_service_port_and_peer_address():
    s = spec(network={"internalPort": 9443})
    container = builders.statefulset(s, 3)["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "internal", "containerPort": 9443, "protocol": "TCP"} in container["ports"]
    env = env_dict(container)
    assert env["THREADWEAVER_INTERNAL_PORT"] == "9443"
    assert env["THREADWEAVER_PORT"] == "8080"
    assert env["THREADWEAVER_PEER_ADDRESS"] == (
        "$(THREADWEAVER_MEMBER_NAME).chat-headless.$(THREADWEAVER_NAMESPACE).svc:9443"
    )
    assert env["THREADWEAVER_PEER_ADDRESS_TEMPLATE"] == (
        "{member}.chat-headless.$(THREADWEAVER_NAMESPACE).svc:9443"
    )
    headless = builders.headless_service(s)["spec"]["ports"]
    assert {"name": "internal", "port": 9443, "targetPort": "internal", "protocol": "TCP"} in (
        headless
    )
    client = builders.client_service(s)["spec"]["ports"]
    assert [p["name"] for p in client] == ["http"]  # the public Service: the API only


# -- the policies ---------------------------------------------------------------------------


def test_runtime_policy_selects_the_members_and_denies_what_it_does_not_allow():
    s = spec()
    policy = runtime_policy(s, API, {"uid": "u"})
    assert policy["metadata"]["name"] == "chat-runtime"
    assert policy["metadata"]["labels"]["app.kubernetes.io/component"] == "network"
    assert policy["metadata"]["ownerReferences"] == [{"uid": "u"}]
    sts = builders.statefulset(s, 3)
    assert policy["spec"]["podSelector"] == {"matchLabels": sts["spec"]["selector"]["matchLabels"]}
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    members = [{"podSelector": {"matchLabels": names.selector_labels("chat")}}]
    ingress = rules_by_port(policy["spec"]["ingress"])
    assert set(ingress) == {(("TCP", 8080),), (("TCP", 9080),)}
    assert ingress[(("TCP", 8080),)]["from"] == [{"namespaceSelector": {}}]
    assert ingress[(("TCP", 9080),)]["from"] == members
    egress = rules_by_port(policy["spec"]["egress"])
    assert "to" not in egress[(("UDP", 53), ("TCP", 53))]
    assert egress[(("TCP", 443),)]["to"] == [{"ipBlock": {"cidr": "10.96.0.1/32"}}]
    assert egress[(("TCP", 6443),)]["to"] == [
        {"ipBlock": {"cidr": "192.168.0.10/32"}},
        {"ipBlock": {"cidr": "192.168.0.11/32"}},
    ]
    assert egress[(("TCP", 8000),)]["to"] == [{"ipBlock": {"cidr": "10.1.2.3/32"}}]
    assert egress[(("TCP", 3307),)]["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "data"}}}
    ]
    assert egress[(("TCP", 9080),)]["to"] == members
    assert len(policy["spec"]["egress"]) == 6


def test_allow_from_and_metrics_from():
    team = {"namespaceSelector": {"matchLabels": {"team": "chat"}}, "podSelector": {}}
    scraper = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    policy = runtime_policy(spec(network={"allowFrom": [team], "metricsFrom": [scraper]}), API)
    api, internal, metrics = policy["spec"]["ingress"]
    assert api == {"from": [team], "ports": [{"protocol": "TCP", "port": 8080}]}
    assert internal["ports"] == [{"protocol": "TCP", "port": 9080}]
    assert metrics == {"from": [scraper], "ports": [{"protocol": "TCP", "port": 8080}]}
    # an empty allowFrom: nobody reaches the API (a rule without `from` would allow everyone)
    closed = runtime_policy(spec(network={"allowFrom": []}), API)
    assert [r["ports"][0]["port"] for r in closed["spec"]["ingress"]] == [9080]


@pytest.mark.parametrize(
    ("endpoint", "port", "to"),
    [
        ("", 443, None),  # AWS
        ("https://dynamodb.eu-west-1.amazonaws.com", 443, None),
        ("http://dynalite:8000", 8000, [{"podSelector": {}}]),
        (
            "http://dynalite.demo.svc:8000",
            8000,
            [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "demo"}}}],
        ),
        ("http://[fd00::5]:8000", 8000, [{"ipBlock": {"cidr": "fd00::5/128"}}]),
    ],
)
def test_dynamodb_egress(endpoint, port, to):
    ddb = {"dynamodb": {"endpoint": endpoint}} if endpoint else {"dynamodb": {}}
    egress = runtime_policy(spec(journal=ddb), API[1:])["spec"]["egress"]  # API on 6443 only
    (rule,) = [r for r in egress if r["ports"] == [{"protocol": "TCP", "port": port}]]
    assert rule.get("to") == to


def test_migration_policy_reaches_only_dns_and_mysql():
    s = spec()
    policy = migration_policy(s)
    assert policy["metadata"]["name"] == "chat-migration"
    job_labels = builders.migration_job(s)["spec"]["template"]["metadata"]["labels"]
    assert set(policy["spec"]["podSelector"]["matchLabels"].items()) <= set(job_labels.items())
    assert policy["spec"]["ingress"] == []
    assert [r["ports"] for r in policy["spec"]["egress"]] == [
        [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        [{"protocol": "TCP", "port": 3307}],
    ]


def test_api_endpoints_from_the_kubernetes_service_and_its_endpoint_slices():
    service = {"spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 443}]}}
    slices = [
        {
            "endpoints": [
                {"addresses": ["192.168.0.11"], "conditions": {"ready": True}},
                {"addresses": ["192.168.0.10"]},
                {"addresses": ["192.168.0.12"], "conditions": {"ready": False}},
            ],
            "ports": [{"name": "https", "port": 6443}],
        }
    ]
    assert kubernetes_api_endpoints(service, slices) == API
    assert kubernetes_api_endpoints(None, []) == ()
    fallback = runtime_policy(spec(), ())["spec"]["egress"]
    assert {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]} in (
        fallback
    )


# -- planning -------------------------------------------------------------------------------


def observation(network=None, **fields) -> Observation:
    raw = {**BASE, **({"network": network} if network is not None else {})}
    body = {"metadata": {"name": "chat", "namespace": "team", "uid": "u", "generation": 1}}
    parsed, problems = read_spec({**body, "spec": raw})
    return replace(
        Observation(
            name="chat",
            namespace="team",
            generation=1,
            raw_spec=raw,
            spec=parsed,
            spec_problems=problems,
            owner={"uid": "u"},
            previous={},
            peer_token_exists=True,
        ),
        **fields,
    )


def test_planning_applies_the_policies_and_announces_new_ones():
    p = planning.plan(observation(kubernetes_api=API))
    policies = [s for s in p.of(Apply) if s.obj["kind"] == "NetworkPolicy"]
    assert [s.obj for s in policies] == network_policies(spec(), API, {"uid": "u"})
    assert [e.reason for s in policies for e in s.events] == ["NetworkPolicyCreated"] * 4
    names = ("chat-runtime", "chat-migration", "chat-replay-check", "chat-rebuild")
    existing = tuple({"metadata": {"name": n}} for n in names)
    again = planning.plan(observation(kubernetes_api=API, network_policies=existing))
    assert [s.events for s in again.of(Apply) if s.obj["kind"] == "NetworkPolicy"] == [
        (),
        (),
        (),
        (),
    ]


def test_planning_deletes_the_policies_when_turned_off():
    existing = tuple({"metadata": {"name": n}} for n in ("chat-runtime", "chat-migration"))
    p = planning.plan(observation({"policy": False}, network_policies=existing))
    assert not [s for s in p.of(Apply) if s.obj["kind"] == "NetworkPolicy"]
    assert [(d.kind, d.name) for d in p.of(Delete)] == [
        ("NetworkPolicy", "chat-migration"),
        ("NetworkPolicy", "chat-runtime"),
    ]
    assert [e.reason for d in p.of(Delete) for e in d.events] == ["NetworkPolicyDeleted"] * 2
    assert not planning.plan(observation({"policy": False})).of(Delete)


def test_unknown_api_endpoints_are_a_warning_and_the_fallback_rule():
    p = planning.plan(observation(kubernetes_api_error="HTTP 403: forbidden"))
    (warning,) = [s.event for s in p.of(Post) if s.event.reason == "KubernetesApiUnknown"]
    assert warning.type == "Warning" and "ports 443 and 6443" in warning.message
    (runtime,) = [
        s.obj
        for s in p.of(Apply)
        if s.obj["kind"] == "NetworkPolicy" and s.obj["metadata"]["name"] == "chat-runtime"
    ]
    assert runtime == runtime_policy(spec(), (), {"uid": "u"})
