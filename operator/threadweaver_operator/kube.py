"""A thin async Kubernetes client for the objects the operator manages (plain dicts in and out).

Built on kubernetes_asyncio's ``ApiClient`` (authentication, TLS, kubeconfig or in-cluster
config) but speaking raw JSON: server-side apply (``application/apply-patch+yaml`` with
``fieldManager=threadweaver-operator&force=true``), merge patches, get/list/delete, without the
generated models.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from kubernetes_asyncio import client, config

from .names import FIELD_MANAGER, GROUP, PLURAL, VERSION

__all__ = ["RESOURCES", "Kube", "KubeError", "NotFound"]

log = logging.getLogger(__name__)

_INCLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

# kind -> (api prefix, plural, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Service": ("/api/v1", "services", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Secret": ("/api/v1", "secrets", True),
    "Pod": ("/api/v1", "pods", True),
    "Event": ("/api/v1", "events", True),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "StatefulSet": ("/apis/apps/v1", "statefulsets", True),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets", True),
    "Job": ("/apis/batch/v1", "jobs", True),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases", True),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies", True),
    "EndpointSlice": ("/apis/discovery.k8s.io/v1", "endpointslices", True),
    "ThreadWeaverCluster": (f"/apis/{GROUP}/{VERSION}", PLURAL, True),
    "PodMonitor": ("/apis/monitoring.coreos.com/v1", "podmonitors", True),
}


class KubeError(Exception):
    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


class NotFound(KubeError):
    pass


class Kube:
    """One API client per operator process (create with :meth:`connect`); the kubectl plugin
    makes its own with :meth:`from_kubeconfig` and its own field manager."""

    def __init__(self, api: client.ApiClient, field_manager: str = FIELD_MANAGER) -> None:
        self.api = api
        self.field_manager = field_manager

    @classmethod
    async def connect(cls) -> Kube:
        """In-cluster service account, else ``$KUBECONFIG`` (read now, not at import time),
        else ``~/.kube/config``."""
        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
            await config.load_kube_config(
                config_file=paths[0] if paths else None, client_configuration=cfg
            )
        return cls(client.ApiClient(configuration=cfg))

    @classmethod
    async def from_kubeconfig(
        cls, path: str | None, context: str | None, field_manager: str
    ) -> tuple[Kube, str | None]:
        """A client for ``path`` (else the first of ``$KUBECONFIG``, else ``~/.kube/config``)
        and ``context`` (else the current one), and that context's namespace, as kubectl
        resolves them; the in-cluster service account when there is no kubeconfig file."""
        cfg = client.Configuration()
        path, incluster = _kubeconfig_file(path)
        if incluster:
            config.load_incluster_config(client_configuration=cfg)
            return cls(client.ApiClient(configuration=cfg), field_manager), _incluster_namespace()
        loader = await config.load_kube_config(
            config_file=path, context=context, client_configuration=cfg, persist_config=False
        )
        current = loader.current_context or {}
        namespace = (current.get("context") or {}).get("namespace")
        return cls(client.ApiClient(configuration=cfg), field_manager), namespace

    async def close(self) -> None:
        await self.api.close()

    # -- plumbing -----------------------------------------------------------------------------

    @staticmethod
    def path(
        kind: str, namespace: str | None, name: str | None = None, subresource: str | None = None
    ) -> str:
        prefix, plural, namespaced = RESOURCES[kind]
        path = prefix
        if namespaced and namespace:
            path += f"/namespaces/{quote(namespace)}"
        path += f"/{plural}"
        if name:
            path += f"/{quote(name)}"
        if subresource:
            path += f"/{subresource}"
        return path

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        resp = await self.api.call_api(
            path,
            method,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=30,
        )
        try:
            raw = await resp.read()
            status = resp.status
        finally:
            resp.release()
        data: Any = None
        if raw:
            try:
                data = json.loads(raw)
            except ValueError:
                data = raw.decode(errors="replace")
        if status == 404:
            raise NotFound(404, _message(data), data)
        if not 200 <= status < 300:
            raise KubeError(status, _message(data), data)
        return data

    # -- verbs --------------------------------------------------------------------------------

    async def serves(self, group_version: str) -> bool:
        """Whether the API server serves ``group/version`` (discovery; e.g. a CRD's API)."""
        try:
            await self.request("GET", f"/apis/{group_version}")
        except NotFound:
            return False
        return True

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", self.path(kind, namespace, name))
        except NotFound:
            return None

    async def list(
        self,
        kind: str,
        namespace: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        query = {}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        data = await self.request("GET", self.path(kind, namespace), query=query)
        return list((data or {}).get("items") or [])

    async def apply(self, obj: Mapping[str, Any], subresource: str | None = None) -> dict[str, Any]:
        """Server-side apply of the fields in ``obj`` (owned by the operator's field manager)."""
        meta = obj["metadata"]
        path = self.path(obj["kind"], meta.get("namespace"), meta["name"], subresource)
        return await self.request(
            "PATCH",
            path,
            body=dict(obj),
            content_type="application/apply-patch+yaml",
            query={"fieldManager": self.field_manager, "force": "true"},
        )

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return await self.request(
            "POST",
            self.path(obj["kind"], meta.get("namespace")),
            body=dict(obj),
            query={"fieldManager": self.field_manager},
        )

    async def merge_patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        return await self.request(
            "PATCH",
            self.path(kind, namespace, name, subresource),
            body=dict(patch),
            content_type="application/merge-patch+json",
            query={"fieldManager": self.field_manager},
        )

    async def delete(
        self, kind: str, namespace: str, name: str, propagation: str = "Background"
    ) -> bool:
        try:
            await self.request(
                "DELETE",
                self.path(kind, namespace, name),
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": propagation,
                },
            )
            return True
        except NotFound:
            return False


def _kubeconfig_file(path: str | None) -> tuple[str, bool]:
    """``path``, else the first file of ``$KUBECONFIG``, else ``~/.kube/config``; and whether
    to use the in-cluster service account instead (no such file, inside a pod)."""
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    path = path or (paths[0] if paths else os.path.expanduser("~/.kube/config"))
    return path, not os.path.exists(path) and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _incluster_namespace() -> str | None:
    try:
        with open(_INCLUSTER_NAMESPACE) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _message(data: Any) -> str:
    if isinstance(data, Mapping):
        return str(data.get("message") or data.get("reason") or data)
    return str(data)[:500]
