"""Watch the cluster's shard-map ConfigMap and hand every valid map to a callback, and the
read-model directive beside it (key ``readmodel.json``, shards/readmodel.py) to another, first.

A malformed map or directive is logged and ignored (the member keeps the last good one); the
watch resumes from the last resourceVersion after disconnects and re-lists when that version
has expired.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from ...shards import (
    READ_MODEL_KEY,
    SHARDMAP_KEY,
    ReadModelDirective,
    ReadModelError,
    ShardMap,
    ShardMapError,
    shardmap_configmap_name,
)

log = logging.getLogger(__name__)


class ShardMapWatch:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        cluster: str,
        on_map: Callable[[ShardMap], Awaitable[None]],
        on_read_model: Callable[[ReadModelDirective], Awaitable[None]] | None = None,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.name = shardmap_configmap_name(cluster)
        self.on_map = on_map
        self.on_read_model = on_read_model
        self.last_error: str | None = None
        self._task: asyncio.Task | None = None
        self._seen: str | None = None
        self._seen_read_model: str | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="shardmap-watch")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _deliver(self, configmap: client.V1ConfigMap | None) -> None:
        data = (configmap.data or {}) if configmap is not None else {}
        await self._deliver_read_model(data.get(READ_MODEL_KEY))
        raw = data.get(SHARDMAP_KEY)
        if raw is None or raw == self._seen:
            return
        try:
            shard_map = ShardMap.from_json(raw)
        except ShardMapError as exc:
            self.last_error = f"invalid shard map in {self.namespace}/{self.name}: {exc}"
            log.error("%s; keeping the previous map", self.last_error)
            return
        self._seen = raw
        self.last_error = None
        await self.on_map(shard_map)

    async def _deliver_read_model(self, raw: str | None) -> None:
        """The directive before the map: a member starts its RMUs on the right database."""
        if self.on_read_model is None or raw is None or raw == self._seen_read_model:
            return
        try:
            directive = ReadModelDirective.from_json(raw)
        except ReadModelError as exc:
            self.last_error = f"invalid read-model directive in {self.namespace}/{self.name}: {exc}"
            log.error("%s; keeping the previous one", self.last_error)
            return
        self._seen_read_model = raw
        await self.on_read_model(directive)

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                listing = await self.core.list_namespaced_config_map(
                    self.namespace, field_selector=f"metadata.name={self.name}"
                )
                for cm in listing.items:
                    await self._deliver(cm)
                if not listing.items:
                    log.info("waiting for shard map %s/%s", self.namespace, self.name)
                version = listing.metadata.resource_version
                async with watch.Watch() as w:
                    async for event in w.stream(
                        self.core.list_namespaced_config_map,
                        self.namespace,
                        field_selector=f"metadata.name={self.name}",
                        resource_version=version,
                        timeout_seconds=300,
                        allow_watch_bookmarks=True,
                    ):
                        if event["type"] in ("ADDED", "MODIFIED"):
                            await self._deliver(event["object"])
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: the version expired; re-list at once
                    self.last_error = f"shard map watch: {exc.status} {exc.reason}"
                    log.warning("%s; retrying in %.1fs", self.last_error, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 15)
            except Exception as exc:
                self.last_error = f"shard map watch: {type(exc).__name__}: {exc}"
                log.warning("%s; retrying in %.1fs", self.last_error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 15)
