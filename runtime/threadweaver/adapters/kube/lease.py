"""The member Lease (coordination.k8s.io/v1): liveness plus status for the operator.

Named after the member (the pod), labelled `threadweaver.io/cluster=<cluster>`, renewed every
`renew_every` seconds with `leaseDurationSeconds` = `duration`; its annotations carry the
MemberStatus (acknowledged epoch, owned ranges, per-range RMU state, address). The operator
treats a member whose lease was not renewed within its duration as gone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from ...shards import MemberStatus, lease_name

log = logging.getLogger(__name__)

CLUSTER_LABEL = "threadweaver.io/cluster"
MEMBER_LABEL = "threadweaver.io/member"


def _micro_time(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class MemberLease:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        cluster: str,
        member: str,
        status: Callable[[], MemberStatus],
        *,
        duration: int = 15,
        renew_every: float = 5.0,
    ) -> None:
        self.coord = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.cluster = cluster
        self.member = member
        self.name = lease_name(cluster, member)
        self.status = status
        self.duration = duration
        self.renew_every = renew_every
        self.last_error: str | None = None
        self.renewed_at: float = 0.0
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="member-lease")

    async def stop(self, release: bool = True) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if release:  # a clean shutdown gives the shards up at once instead of by expiry
            try:
                await self.coord.delete_namespaced_lease(self.name, self.namespace)
            except Exception as exc:
                log.info("lease %s not released: %s", self.name, exc)

    def is_held(self) -> bool:
        """Renewed within its duration (before the first renewal: not held)."""
        if not self.renewed_at:
            return False
        return asyncio.get_running_loop().time() - self.renewed_at < self.duration

    async def publish(self, status: MemberStatus | None = None) -> None:
        """Write the lease now (renewal plus status)."""
        status = status or self.status()
        body: dict[str, Any] = {
            "metadata": {
                "name": self.name,
                "labels": {CLUSTER_LABEL: self.cluster, MEMBER_LABEL: self.member},
                "annotations": status.to_annotations(),
            },
            "spec": {
                "holderIdentity": self.member,
                "leaseDurationSeconds": self.duration,
                "renewTime": _micro_time(dt.datetime.now(dt.UTC)),
            },
        }
        async with self._lock:
            try:
                await self.coord.patch_namespaced_lease(self.name, self.namespace, body)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                body["spec"]["acquireTime"] = body["spec"]["renewTime"]
                # The client serialises a dict body as it would a V1Lease.
                await self.coord.create_namespaced_lease(self.namespace, body)  # type: ignore[arg-type]
        self.renewed_at = asyncio.get_running_loop().time()
        self.last_error = None

    async def _run(self) -> None:
        while True:
            try:
                await self.publish()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"lease renewal: {type(exc).__name__}: {exc}"
                log.warning(self.last_error)
            await asyncio.sleep(self.renew_every)
