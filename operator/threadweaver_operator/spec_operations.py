"""The operations blocks of the ThreadWeaverCluster spec, parsed and checked like
:mod:`.spec`: how rebalances are approved (``spec.rebalance.mode``,
``spec.rebalance.autoApproveFailover``) and the cluster's network (``spec.network``: the
members' internal forwarding port and the NetworkPolicies that deny by default), and the gate
of an image upgrade (``spec.upgrade``: the replay check, :mod:`.replay_gate`).

Kept apart from :mod:`.spec` so that these features stay one block each; :class:`.spec.ClusterSpec`
holds one :class:`RebalancePolicy`, one :class:`NetworkSpec` and one :class:`UpgradeSpec`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALL_NAMESPACES",
    "DEFAULT_INTERNAL_PORT",
    "REBALANCE_MODES",
    "REPLAY_CHECK_MODES",
    "NetworkSpec",
    "OperationsSpecError",
    "RebalancePolicy",
    "UpgradeSpec",
    "network_spec",
    "rebalance_policy",
    "upgrade_spec",
]

REBALANCE_MODES = ("auto", "manual")
REPLAY_CHECK_MODES = ("sample", "all", "off")
DEFAULT_REPLAY_SAMPLE = 100  # the runtime's `threadweaver replay-check --sample` default
DEFAULT_INTERNAL_PORT = 9080
ALL_NAMESPACES: tuple[Mapping[str, Any], ...] = ({"namespaceSelector": {}},)
"""The default of ``spec.network.allowFrom``: every pod of every namespace."""
_PEER_KEYS = frozenset({"namespaceSelector", "podSelector", "ipBlock"})


class OperationsSpecError(ValueError):
    """A value of the wrong type (the schema was bypassed); the message names the field."""


@dataclass(frozen=True)
class RebalancePolicy:
    """``spec.rebalance.mode`` and ``autoApproveFailover``.

    ``auto`` publishes each rebalancing round as soon as it is due. ``manual`` publishes the
    plan in ``status.proposedPlan`` and waits for the annotation
    ``threadweaver.io/approve-rebalance: <plan id>``; with ``auto_approve_failover`` the moves
    off dead members run at once (waiting would keep their shards unserved)."""

    mode: str = "auto"
    auto_approve_failover: bool = True

    @property
    def manual(self) -> bool:
        return self.mode == "manual"

    def problems(self) -> list[str]:
        if self.mode not in REBALANCE_MODES:
            return [f"spec.rebalance.mode: one of {', '.join(REBALANCE_MODES)}, got {self.mode!r}"]
        return []


@dataclass(frozen=True)
class NetworkSpec:
    """``spec.network``: the internal forwarding port and the NetworkPolicies.

    ``allow_from``, ``metrics_from``: NetworkPolicyPeer objects (``namespaceSelector``,
    ``podSelector``, ``ipBlock``), as written in the spec."""

    policy: bool = True
    internal_port: int = DEFAULT_INTERNAL_PORT
    allow_from: tuple[Mapping[str, Any], ...] = ALL_NAMESPACES
    metrics_from: tuple[Mapping[str, Any], ...] = ()

    def problems(self, api_port: int) -> list[str]:
        out: list[str] = []
        if not 0 < self.internal_port < 65536:
            out.append("spec.network.internalPort: must be a TCP port")
        elif self.internal_port == api_port:
            out.append(
                f"spec.network.internalPort: {self.internal_port} is the API port "
                "(spec.service.port): the forwarding endpoint needs a port of its own"
            )
        for path, peers in (
            ("spec.network.allowFrom", self.allow_from),
            ("spec.network.metricsFrom", self.metrics_from),
        ):
            for i, peer in enumerate(peers):
                unknown = sorted(set(peer) - _PEER_KEYS)
                if unknown:
                    out.append(f"{path}[{i}]: unknown fields {unknown}")
                elif not peer:
                    out.append(f"{path}[{i}]: needs namespaceSelector, podSelector or ipBlock")
                elif "ipBlock" in peer and set(peer) != {"ipBlock"}:
                    out.append(f"{path}[{i}]: ipBlock cannot be combined with selectors")
                elif "ipBlock" in peer:
                    out += _ip_block_problems(peer["ipBlock"], f"{path}[{i}].ipBlock")
        return out


@dataclass(frozen=True)
class UpgradeSpec:
    """``spec.upgrade``: ``replayCheck`` (sample, all or off) runs ``threadweaver replay-check``
    with a new image before it rolls out, on ``sampleSize`` entities or all of them."""

    replay_check: str = "sample"
    sample_size: int = DEFAULT_REPLAY_SAMPLE

    def problems(self) -> list[str]:
        out = []
        if self.replay_check not in REPLAY_CHECK_MODES:
            out.append(
                f"spec.upgrade.replayCheck: one of {', '.join(REPLAY_CHECK_MODES)}, "
                f"got {self.replay_check!r}"
            )
        if self.sample_size < 1:
            out.append("spec.upgrade.sampleSize: must be >= 1")
        return out


def upgrade_spec(value: Any) -> UpgradeSpec:
    """``spec.upgrade`` (absent: the defaults)."""
    upgrade = _obj(value, "spec.upgrade")
    return UpgradeSpec(
        replay_check=_str(upgrade.get("replayCheck", "sample"), "spec.upgrade.replayCheck"),
        sample_size=_int(
            upgrade.get("sampleSize", DEFAULT_REPLAY_SAMPLE), "spec.upgrade.sampleSize"
        ),
    )


def _ip_block_problems(block: Any, path: str) -> list[str]:
    """What the API server would refuse in the NetworkPolicy (a pass must not fail on it)."""
    if not isinstance(block, Mapping):
        return [f"{path}: expected an object"]
    try:
        network = ipaddress.ip_network(str(block.get("cidr")), strict=False)
    except ValueError:
        return [f"{path}.cidr: {block.get('cidr')!r} is not a CIDR"]
    out = []
    for j, text in enumerate(block.get("except") or []):
        try:
            inner = ipaddress.ip_network(str(text), strict=False)
        except ValueError:
            out.append(f"{path}.except[{j}]: {text!r} is not a CIDR")
            continue
        if inner.version != network.version or not inner.subnet_of(network):  # type: ignore[arg-type]
            out.append(f"{path}.except[{j}]: {text} is not within {network}")
    return out


def rebalance_policy(rebalance: Mapping[str, Any]) -> RebalancePolicy:
    """The policy from ``spec.rebalance`` (an object already)."""
    return RebalancePolicy(
        mode=_str(rebalance.get("mode") or "auto", "spec.rebalance.mode"),
        auto_approve_failover=_bool(
            rebalance.get("autoApproveFailover", True), "spec.rebalance.autoApproveFailover"
        ),
    )


def network_spec(value: Any) -> NetworkSpec:
    """``spec.network`` (absent: the defaults)."""
    network = _obj(value, "spec.network")
    allow_from = network.get("allowFrom")
    return NetworkSpec(
        policy=_bool(network.get("policy", True), "spec.network.policy"),
        internal_port=_int(
            network.get("internalPort", DEFAULT_INTERNAL_PORT), "spec.network.internalPort"
        ),
        allow_from=ALL_NAMESPACES
        if allow_from is None
        else _peers(allow_from, "spec.network.allowFrom"),
        metrics_from=_peers(network.get("metricsFrom"), "spec.network.metricsFrom"),
    )


def _peers(value: Any, path: str) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise OperationsSpecError(f"{path}: expected a list, got {type(value).__name__}")
    return tuple(_obj(peer, f"{path}[{i}]") for i, peer in enumerate(value))


def _obj(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise OperationsSpecError(f"{path}: expected an object, got {type(value).__name__}")
    return dict(value)


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise OperationsSpecError(f"{path}: expected a string, got {value!r}")
    return value


def _int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OperationsSpecError(f"{path}: expected an integer, got {value!r}")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise OperationsSpecError(f"{path}: expected a boolean, got {value!r}")
    return value
