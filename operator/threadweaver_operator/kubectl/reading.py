"""What the plugin's commands read and write, through the API server only, and the errors a
user can act on (a missing cluster, a missing permission, an unreachable API server).

Each command needs (see docs/operator.md, "kubectl threadweaver"): ``status`` get
threadweaverclusters, get configmaps, list leases, list pods; ``shards`` get
threadweaverclusters, get configmaps; ``rebalance --dry-run`` those of ``status`` and get
statefulsets; ``approve`` and ``restart-rmu`` get and patch threadweaverclusters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import names
from ..kube import Kube, KubeError, NotFound
from ..observation import Observation, read_spec

__all__ = [
    "FIELD_MANAGER",
    "PluginError",
    "Session",
    "Snapshot",
    "connect",
    "observation",
    "read_snapshot",
]

FIELD_MANAGER = "kubectl-threadweaver"
_RESOURCES = {
    "ThreadWeaverCluster": "threadweaverclusters.threadweaver.io",
    "ConfigMap": "configmaps",
    "Lease": "leases.coordination.k8s.io",
    "Pod": "pods",
    "StatefulSet": "statefulsets.apps",
}


class PluginError(Exception):
    """A failure explained for the user (printed as ``error: <message>``, exit code 1)."""


@dataclass
class Session:
    """The user's API client and the namespace the command works in."""

    kube: Kube
    namespace: str

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.kube.get(kind, self.namespace, name)
        except KubeError as exc:
            raise self.refused(exc, "get", kind) from None

    async def list(self, kind: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        try:
            return await self.kube.list(kind, self.namespace, label_selector=label_selector)
        except KubeError as exc:
            raise self.refused(exc, "list", kind) from None

    async def cluster(self, name: str) -> dict[str, Any]:
        """The ThreadWeaverCluster ``name``; a PluginError when it does not exist."""
        try:
            return await self.kube.request("GET", Kube.path(names.KIND, self.namespace, name))
        except NotFound as exc:
            details = exc.body.get("details") if isinstance(exc.body, Mapping) else None
            if not (isinstance(details, Mapping) and details.get("name")):
                raise PluginError(
                    "the ThreadWeaverCluster resource is not served by this API server "
                    "(is the CRD installed? kubectl apply -f crds/threadweavercluster.yaml)"
                ) from None
            raise PluginError(
                f'threadweavercluster "{name}" not found in namespace "{self.namespace}"'
            ) from None
        except KubeError as exc:
            raise self.refused(exc, "get", names.KIND) from None

    async def annotate(self, name: str, annotations: Mapping[str, str]) -> None:
        """Merge-patch annotations onto the cluster object."""
        try:
            await self.kube.merge_patch(
                names.KIND, self.namespace, name, {"metadata": {"annotations": dict(annotations)}}
            )
        except KubeError as exc:
            raise self.refused(exc, "patch", names.KIND) from None

    def refused(self, exc: KubeError, verb: str, kind: str) -> PluginError:
        resource = _RESOURCES.get(kind, kind)
        message = exc.body.get("message") if isinstance(exc.body, Mapping) else None
        message = message or str(exc)
        if exc.status == 401:
            return PluginError(
                f"unauthorized: the API server rejected the credentials of the kubeconfig "
                f"({message})"
            )
        if exc.status == 403:
            return PluginError(
                f"forbidden: you cannot {verb} {resource} in namespace {self.namespace!r} "
                f"({message}); the permissions each command needs are in docs/operator.md, "
                "'kubectl threadweaver'"
            )
        return PluginError(f"{verb} {resource} in namespace {self.namespace!r}: {message}")

    async def close(self) -> None:
        await self.kube.close()


async def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Session:
    """A session with the user's kubeconfig (as kubectl resolves it); the namespace is the
    option's, else the context's, else ``default``."""
    try:
        kube, context_namespace = await Kube.from_kubeconfig(kubeconfig, context, FIELD_MANAGER)
    except Exception as exc:  # kubeconfig problems come as several exception types
        raise PluginError(f"cannot load the kubeconfig: {exc}") from None
    return Session(kube, namespace or context_namespace or "default")


@dataclass(frozen=True)
class Snapshot:
    """One read of everything a command looks at (each object one request)."""

    namespace: str
    cluster: Mapping[str, Any]
    configmap: Mapping[str, Any] | None = None
    leases: tuple[Mapping[str, Any], ...] = ()
    pods: tuple[Mapping[str, Any], ...] = ()
    statefulset: Mapping[str, Any] | None = None

    @property
    def name(self) -> str:
        return str(self.cluster["metadata"]["name"])

    @property
    def status(self) -> Mapping[str, Any]:
        return self.cluster.get("status") or {}


async def read_snapshot(
    session: Session,
    name: str,
    *,
    members: bool = True,
    statefulset: bool = False,
) -> Snapshot:
    """The cluster, its shard-map ConfigMap and, with ``members``, the namespace's Leases and
    the cluster's runtime Pods (and its StatefulSet with ``statefulset``)."""
    cluster = await session.cluster(name)
    configmap = await session.get("ConfigMap", names.shardmap_configmap(name))
    leases: tuple[dict[str, Any], ...] = ()
    pods: tuple[dict[str, Any], ...] = ()
    if members:
        leases = tuple(await session.list("Lease"))
        pods = tuple(await session.list("Pod", names.selector_string(name)))
    sts = await session.get("StatefulSet", names.statefulset(name)) if statefulset else None
    return Snapshot(session.namespace, cluster, configmap, leases, pods, sts)


def observation(snapshot: Snapshot, now: datetime) -> Observation:
    """What the operator's pass would observe of these objects (the parts that decide the
    shard map): the input of :func:`..cluster_view.review_cluster`."""
    body = snapshot.cluster
    meta = body["metadata"]
    spec, problems = read_spec(body)
    return Observation(
        name=meta["name"],
        namespace=meta["namespace"],
        generation=meta.get("generation", 0),
        raw_spec=body.get("spec") or {},
        spec=spec,
        spec_problems=problems,
        owner={},
        previous=dict(snapshot.status),
        annotations=dict(meta.get("annotations") or {}),
        now=now,
        statefulset=snapshot.statefulset,
        shardmap_configmap=snapshot.configmap,
        leases=snapshot.leases,
        pods=snapshot.pods,
    )
