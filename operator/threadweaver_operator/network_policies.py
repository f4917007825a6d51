"""NetworkPolicies that deny by default: pure builders from a :class:`ClusterSpec` and the
Kubernetes API's endpoints (``spec.network``; ``policy: false`` turns them off).

Four policies per cluster, each with policy types Ingress and Egress, so that whatever they do
not allow is denied:

``<name>-runtime`` (the runtime pods)
  ingress: the API port (``spec.service.port``) from ``spec.network.allowFrom`` (default:
  every pod of every namespace; an empty list: nobody); the internal forwarding port
  (``spec.network.internalPort``) from the cluster's runtime pods only; the metrics port from
  ``spec.network.metricsFrom`` (``/metrics`` is served on the API port).
  egress: DNS (port 53, UDP and TCP), the Kubernetes API (the addresses of the ``kubernetes``
  Service's EndpointSlices and its ClusterIP), the DynamoDB endpoint, the MySQL host, and the
  internal port of the cluster's runtime pods.

``<name>-migration`` (the migration Job's pods)
  no ingress; egress: DNS and the MySQL host.

``<name>-replay-check`` (the pods of the replay-check Jobs of new images, replay_gate.py)
  no ingress; egress: DNS and the DynamoDB endpoint.

``<name>-rebuild`` (the pods of a read-model rebuild's project Job, rebuild.py)
  no ingress; egress: DNS, the DynamoDB endpoint (it reads the journal) and the MySQL host (it
  fills the new database).

A destination host becomes a peer as precisely as a NetworkPolicy can name it: an IP address
is an ``ipBlock`` of that address; a one-label name (``mariadb``) is the pods of the cluster's
namespace; a Service name ``<svc>.<ns>.svc[.<domain>]`` is the pods of namespace ``<ns>``;
any other name (AWS, a managed MySQL) is its port to any address. No DynamoDB endpoint means
AWS: port 443 to any address. When the API server's endpoints are unknown, ports 443 and 6443
to any address.

Kubelet probes come from the node, which NetworkPolicy implementations allow.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import names
from .spec import ClusterSpec

__all__ = [
    "API_FALLBACK_PORTS",
    "COMPONENT",
    "ApiEndpoint",
    "kubernetes_api_endpoints",
    "migration_policy",
    "network_policies",
    "policy_names",
    "replay_check_policy",
    "runtime_policy",
]

COMPONENT = "network"  # app.kubernetes.io/component of the policies
API_FALLBACK_PORTS = (443, 6443)
DNS_PORT = 53
_METADATA_NAME = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class ApiEndpoint:
    """Addresses of the Kubernetes API and the port they serve it on."""

    addresses: tuple[str, ...]
    port: int


def policy_names(cluster: str) -> tuple[str, str, str, str]:
    return (
        f"{cluster}-runtime",
        f"{cluster}-migration",
        f"{cluster}-replay-check",
        f"{cluster}-rebuild",
    )


def kubernetes_api_endpoints(
    service: Mapping[str, Any] | None, endpoint_slices: Iterable[Mapping[str, Any]]
) -> tuple[ApiEndpoint, ...]:
    """The API server's addresses from Service ``default/kubernetes`` (its ClusterIP and port:
    for implementations that match before the Service is translated) and its EndpointSlices
    (the servers themselves: for those that match after)."""
    out: list[ApiEndpoint] = []
    spec = (service or {}).get("spec") or {}
    cluster_ip = spec.get("clusterIP")
    if cluster_ip and cluster_ip != "None":
        for port in spec.get("ports") or []:
            if isinstance(port.get("port"), int):
                out.append(ApiEndpoint((cluster_ip,), port["port"]))
    for eps in endpoint_slices:
        addresses = tuple(
            sorted(
                {
                    a
                    for e in eps.get("endpoints") or []
                    if (e.get("conditions") or {}).get("ready", True) is not False
                    for a in e.get("addresses") or []
                }
            )
        )
        for port in eps.get("ports") or []:
            if addresses and isinstance(port.get("port"), int):
                out.append(ApiEndpoint(addresses, port["port"]))
    return tuple(dict.fromkeys(out))  # in order, without repeats


def network_policies(
    spec: ClusterSpec, api: Sequence[ApiEndpoint], owner: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    return [
        runtime_policy(spec, api, owner),
        migration_policy(spec, owner),
        replay_check_policy(spec, owner),
        rebuild_policy(spec, owner),
    ]


def _policy(
    spec: ClusterSpec,
    name: str,
    selected: str,
    ingress: list[dict[str, Any]],
    egress: list[dict[str, Any]],
    owner: Mapping[str, Any] | None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": spec.namespace,
        "labels": names.labels(spec.name, COMPONENT),
    }
    if owner:
        meta["ownerReferences"] = [dict(owner)]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta,
        "spec": {
            "podSelector": {"matchLabels": names.selector_labels(spec.name, selected)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def _tcp(port: int) -> dict[str, Any]:
    return {"protocol": "TCP", "port": port}


def _rule(peers: list[dict[str, Any]] | None, ports: list[dict[str, Any]]) -> dict[str, Any]:
    """An egress rule; ``peers`` None: to any address."""
    return {"ports": ports} if peers is None else {"to": peers, "ports": ports}


def runtime_policy(
    spec: ClusterSpec, api: Sequence[ApiEndpoint], owner: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    net = spec.network
    members = [{"podSelector": {"matchLabels": names.selector_labels(spec.name)}}]
    ingress: list[dict[str, Any]] = []
    if net.allow_from:
        ingress.append({"from": [dict(p) for p in net.allow_from], "ports": [_tcp(spec.port)]})
    ingress.append({"from": members, "ports": [_tcp(net.internal_port)]})
    if net.metrics_from:
        ingress.append({"from": [dict(p) for p in net.metrics_from], "ports": [_tcp(spec.port)]})
    egress = [_dns()]
    egress += _api_rules(api)
    egress.append(_rule(*_dynamodb(spec)))
    egress.append(_rule(*_mysql(spec)))
    egress.append(_rule(members, [_tcp(net.internal_port)]))
    return _policy(spec, policy_names(spec.name)[0], "runtime", ingress, egress, owner)


def migration_policy(spec: ClusterSpec, owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    egress = [_dns(), _rule(*_mysql(spec))]
    return _policy(spec, policy_names(spec.name)[1], "migration", [], egress, owner)


def replay_check_policy(
    spec: ClusterSpec, owner: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    egress = [_dns(), _rule(*_dynamodb(spec))]
    return _policy(spec, policy_names(spec.name)[2], "replay-check", [], egress, owner)


def rebuild_policy(spec: ClusterSpec, owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    egress = [_dns(), _rule(*_dynamodb(spec)), _rule(*_mysql(spec))]
    return _policy(spec, policy_names(spec.name)[3], "rebuild", [], egress, owner)


def _dns() -> dict[str, Any]:
    return {"ports": [{"protocol": "UDP", "port": DNS_PORT}, _tcp(DNS_PORT)]}


def _api_rules(api: Sequence[ApiEndpoint]) -> list[dict[str, Any]]:
    if not api:
        return [{"ports": [_tcp(p) for p in API_FALLBACK_PORTS]}]
    return [_rule([_ip_block(a) for a in e.addresses], [_tcp(e.port)]) for e in api]


def _dynamodb(spec: ClusterSpec) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]]]:
    endpoint = spec.dynamodb.endpoint
    if not endpoint:
        return None, [_tcp(443)]  # AWS
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return _destination(parts.hostname or ""), [_tcp(port)]


def _mysql(spec: ClusterSpec) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]]]:
    return _destination(spec.mysql.host), [_tcp(spec.mysql.port)]


def _destination(host: str) -> list[dict[str, Any]] | None:
    """The peers of a host name or address (None: any address); see the module docstring."""
    host = host.strip().strip("[]").rstrip(".")
    try:
        return [_ip_block(str(ipaddress.ip_address(host)))]
    except ValueError:
        pass
    labels = host.split(".")
    if len(labels) == 1 and labels[0]:
        return [{"podSelector": {}}]  # a Service of the cluster's own namespace
    if len(labels) >= 3 and labels[2] == "svc":
        return [{"namespaceSelector": {"matchLabels": {_METADATA_NAME: labels[1]}}}]
    return None


def _ip_block(address: str) -> dict[str, Any]:
    ip = ipaddress.ip_address(address)
    return {"ipBlock": {"cidr": f"{ip}/{ip.max_prefixlen}"}}
