"""Plays the operator's part of the shard-map protocol against a real API server, for runtime
tests that must not depend on the operator: publish the map, read the members' Leases, complete
a handoff once every losing member acknowledged or is gone."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from threadweaver.adapters.kube.lease import CLUSTER_LABEL
from threadweaver.shards import (
    SHARDMAP_KEY,
    MemberStatus,
    ShardMap,
    is_lease_expired,
    shardmap_configmap_name,
)


class ClusterDriver:
    def __init__(self, api: client.ApiClient, namespace: str, cluster: str) -> None:
        self.core = client.CoreV1Api(api)
        self.coord = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.cluster = cluster
        self.map: ShardMap | None = None

    async def publish(self, shard_map: ShardMap) -> None:
        name = shardmap_configmap_name(self.cluster)
        body = {"metadata": {"name": name}, "data": {SHARDMAP_KEY: shard_map.dumps()}}
        try:
            await self.core.replace_namespaced_config_map(name, self.namespace, body)
        except ApiException as exc:
            if exc.status != 404:
                raise
            await self.core.create_namespaced_config_map(self.namespace, body)
        self.map = shard_map

    async def members(self) -> dict[str, tuple[MemberStatus, bool]]:
        """member -> (status, alive) from the Leases of this cluster."""
        leases = await self.coord.list_namespaced_lease(
            self.namespace, label_selector=f"{CLUSTER_LABEL}={self.cluster}"
        )
        now = dt.datetime.now(dt.UTC)
        out = {}
        for lease in leases.items:
            member = lease.spec.holder_identity or lease.metadata.name
            status = MemberStatus.from_annotations(member, lease.metadata.annotations or {})
            alive = not is_lease_expired(
                lease.spec.renew_time, lease.spec.lease_duration_seconds or 15, now
            )
            out[member] = (status, alive)
        return out

    async def wait_acks_and_complete(self, timeout: float = 60.0) -> ShardMap:
        """Wait until no losing member of the current handoff is pending, then complete it."""
        assert self.map is not None
        deadline = time.monotonic() + timeout
        while self.map.in_handoff:
            members = await self.members()
            acked = {m: s.acked_epoch for m, (s, alive) in members.items() if alive}
            if not self.map.pending_acks(acked):
                await self.publish(self.map.complete_handoff())
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"handoff of epoch {self.map.epoch} not acknowledged by "
                    f"{sorted(self.map.pending_acks(acked))}: {members}"
                )
            await asyncio.sleep(0.2)
        return self.map

    async def rebalance(
        self,
        members: list[str],
        addresses: dict[str, str],
        *,
        max_ranges_per_round: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        """Rebalance to `members` in rounds, each completed after its acknowledgements."""
        assert self.map is not None, "publish an initial map first"
        while True:
            nxt = self.map.with_addresses(addresses).rebalance(members, max_ranges_per_round)
            if nxt == self.map:
                return
            await self.publish(nxt)
            if nxt.in_handoff:
                await self.wait_acks_and_complete(timeout)

    async def wait_members_acked(
        self, epoch: int, members: list[str], timeout: float = 60.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            statuses = await self.members()
            if all(m in statuses and statuses[m][0].acked_epoch >= epoch for m in members):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"members {members} did not acknowledge epoch {epoch}: {statuses}"
                )
            await asyncio.sleep(0.2)
