"""Names and labels of everything the operator creates for a ThreadWeaverCluster ``<name>``.

One place so that the builders, the handlers, the tests and the docs agree:

=====================================  ==========================================
object                                 name
=====================================  ==========================================
StatefulSet (members ``<name>-<i>``)   ``<name>``
headless Service (pod DNS, peers)      ``<name>-headless``
client Service (the HTTP API)          ``<name>``
ServiceAccount / Role / RoleBinding    ``<name>-runtime``
migration Job                          ``<name>-migrate-<hash>``
read-model rebuild Job                 ``<name>-project-<hash>``
PodDisruptionBudget                    ``<name>-pdb``
peer-token Secret (forwarding auth)    ``<name>-peer-token`` (key ``token``)
shard-map ConfigMap                    ``<name>-shardmap`` (key ``shardmap.json``)
member Lease (written by each pod)     ``<pod name>``
=====================================  ==========================================
"""

from __future__ import annotations

import re

from threadweaver.shards import SHARDMAP_KEY, lease_name, shardmap_configmap_name

__all__ = [
    "API_VERSION",
    "FIELD_MANAGER",
    "FINALIZER",
    "GROUP",
    "KIND",
    "MAX_NAME_LENGTH",
    "PLURAL",
    "SHARDMAP_KEY",
    "VERSION",
    "client_service",
    "headless_service",
    "labels",
    "lease",
    "member",
    "members",
    "migration_job",
    "name_problem",
    "ordinal",
    "pdb",
    "peer_token_secret",
    "project_job",
    "runtime_account",
    "selector_labels",
    "selector_string",
    "shardmap_configmap",
    "statefulset",
]

GROUP = "threadweaver.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ThreadWeaverCluster"
PLURAL = "threadweaverclusters"
FIELD_MANAGER = "threadweaver-operator"
FINALIZER = "threadweaver.io/finalizer"

MAX_NAME_LENGTH = 40
"""Longest cluster name: ``<name>-migrate-<10 hex>`` and the pods' controller-revision-hash
label (``<name>-<10 chars>``) must stay within 63 characters. The CRD enforces it too."""

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_VERSION = "app.kubernetes.io/version"
APP_NAME = "thread-weaver"
MANAGED_BY = "threadweaver-operator"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a cluster (None when fine)."""
    if len(name) > MAX_NAME_LENGTH:
        return f"name {name!r} is longer than {MAX_NAME_LENGTH} characters"
    if not _DNS1035.match(name):
        return f"name {name!r} is not a DNS-1035 label"
    return None


def statefulset(name: str) -> str:
    return name


def headless_service(name: str) -> str:
    return f"{name}-headless"


def client_service(name: str) -> str:
    return name


def runtime_account(name: str) -> str:
    """ServiceAccount, Role and RoleBinding of the runtime pods."""
    return f"{name}-runtime"


def migration_job(name: str, revision: str) -> str:
    return f"{name}-migrate-{revision}"


def replay_check_job(name: str, image_hash: str) -> str:
    """The replay check of one image before it rolls out (replay_gate.py)."""
    return f"{name}-replay-{image_hash}"


def project_job(name: str, revision: str) -> str:
    """The Job filling a rebuild's database from the journal (``threadweaver project``)."""
    return f"{name}-project-{revision}"


def peer_token_secret(name: str) -> str:
    """Secret with the shared token of the members' internal forwarding endpoint."""
    return f"{name}-peer-token"


def pdb(name: str) -> str:
    return f"{name}-pdb"


def shardmap_configmap(name: str) -> str:
    return shardmap_configmap_name(name)


def member(name: str, index: int) -> str:
    """Pod name of ordinal ``index`` (the member name in the shard map and its Lease name)."""
    return f"{name}-{index}"


def members(name: str, replicas: int) -> list[str]:
    return [member(name, i) for i in range(replicas)]


def ordinal(name: str, member_name: str) -> int | None:
    """The ordinal of ``<name>-<i>``, or None for a name that is not one of this cluster's pods."""
    prefix = f"{name}-"
    if not member_name.startswith(prefix):
        return None
    rest = member_name[len(prefix) :]
    if not rest.isdigit() or (len(rest) > 1 and rest.startswith("0")):
        return None
    return int(rest)


def lease(name: str, member_name: str) -> str:
    return lease_name(name, member_name)


def selector_labels(name: str, component: str = "runtime") -> dict[str, str]:
    """Labels that select the runtime pods (stable: never change them on a live cluster)."""
    return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: name, LABEL_COMPONENT: component}


def labels(name: str, component: str = "runtime", version: str | None = None) -> dict[str, str]:
    out = {
        **selector_labels(name, component),
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PART_OF: APP_NAME,
    }
    if version:
        out[LABEL_VERSION] = _label_value(version)
    return out


def selector_string(name: str, component: str = "runtime") -> str:
    """``status.selector`` for the scale subresource (label-selector text form)."""
    return ",".join(f"{k}={v}" for k, v in selector_labels(name, component).items())


def _label_value(text: str) -> str:
    """An image tag as a label value (<= 63 chars of [-A-Za-z0-9_.], alphanumeric ends)."""
    value = re.sub(r"[^-A-Za-z0-9_.]", "_", text)[-63:]
    return value.strip("-_.") or "unknown"
