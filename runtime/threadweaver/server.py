"""The composition root: builds the journal, read model, entities, read-model updaters and the
HTTP API from Settings, and runs them until a signal stops the process."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web

from .adapters.readmodel import ReadModelSettings, SqlReadModel
from .adapters.readmodel.sql import redact_url
from .application.entities import EntityManager, EntitySettings
from .application.ports import Journal
from .application.projector import ProjectorSettings
from .application.sharding import Member, ShardingSettings
from .config import Settings
from .gc_tuning import tune_for_serving
from .shards import ShardMap

log = logging.getLogger(__name__)


def build_journal(settings: Settings) -> Journal:
    if settings.journal.startswith("dynamodb:"):
        from .adapters.journal.dynamodb import DynamoDBJournal, DynamoDBSettings

        return DynamoDBJournal(DynamoDBSettings.from_url(settings.journal), shards=settings.shards)
    from .adapters.journal.sqlite import SqliteJournal

    return SqliteJournal(
        settings.sqlite_journal_path, shards=settings.shards, synchronous=settings.sync_mode
    )


def build_read_model(settings: Settings) -> SqlReadModel:
    return SqlReadModel(ReadModelSettings(url=settings.read_model))


class Runtime:
    """Everything one runtime process runs.

    Embedded (no --cluster): a static shard map in which this member owns every shard.
    Cluster: the map comes from the operator's ConfigMap, the member reports through its Lease,
    and commands for other members' shards are forwarded to them.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings.resolved()
        self.journal = build_journal(s)
        self.read_model = build_read_model(s)
        self.entities = EntityManager(
            self.journal,
            EntitySettings(
                snapshot_every=s.snapshot_every,
                passivate_after=s.passivate_after,
                max_entities=s.max_entities,
                idempotency_keys=s.idempotency_keys,
                idempotency_window=s.idempotency_window,
            ),
            writer=s.member_name,
        )
        self.peers = None
        self.kube_api = None
        self.watch = None
        self.lease = None
        if s.cluster:
            from .adapters.forwarding import HttpPeerClient

            self.peers = HttpPeerClient(s.member_name, token=s.peer_token)
        self.member = Member(
            ShardingSettings(member=s.member_name, address_template=s.peer_address_template),
            self.entities,
            self.journal,
            self.read_model,
            ProjectorSettings(
                batch_size=s.projection_batch_size, poll_interval=s.projection_poll_interval
            ),
            status_sink=self._publish_status,
            peers=self.peers,
            address=s.peer_address or None,
            holds_lease=lambda: self.lease is None or self.lease.is_held(),
        )
        self._started = False
        from .observability import install as install_metrics

        self.metrics = install_metrics(self)  # /metrics: docs/operations.md, "Monitoring"

    async def _publish_status(self, status) -> None:
        if self.lease is not None:
            await self.lease.publish(status)

    async def start(self) -> None:
        s = self.settings
        log.info(
            "journal %s, read model %s, %d shards",
            _describe_journal(s.journal),
            redact_url(s.read_model),
            s.shards,
        )
        await self.journal.start()
        await self.read_model.start()
        if s.auto_migrate:
            await self.read_model.migrate()
        await self.entities.start()
        if not s.cluster:
            await self.member.apply_map(ShardMap.initial(s.shards, [s.member_name]))
        else:
            from .adapters.kube.client import api_client
            from .adapters.kube.lease import MemberLease
            from .adapters.kube.shardmap_watch import ShardMapWatch

            namespace = s.namespace or _incluster_namespace()
            self.kube_api = await api_client(s.kubeconfig)
            self.lease = MemberLease(
                self.kube_api,
                namespace,
                s.cluster,
                s.member_name,
                self.member.status,
                duration=s.lease_duration,
                renew_every=s.lease_renew_every,
            )
            self.lease.start()
            self.watch = ShardMapWatch(self.kube_api, namespace, s.cluster, self.member.apply_map)
            self.watch.start()
        self._started = True

    async def stop(self) -> None:
        if self.watch is not None:
            await self.watch.stop()
        await self.member.stop()
        if self.lease is not None:
            await self.lease.stop(release=True)
        await self.entities.close()
        if self.peers is not None:
            await self.peers.close()
        if self.kube_api is not None:
            await self.kube_api.close()
        await self.journal.close()
        await self.read_model.close()
        self._started = False

    async def readiness(self) -> dict[str, bool]:
        """What gates traffic. The read model is not part of it: while it is down, commands
        still work (they need only the journal) and queries answer 503 on their own; pulling
        the pod out of the Service would stop commands too."""
        checks = {
            "started": self._started,
            "shard_map": self.member.map is not None,
            "projections": all(p.is_alive for p in self.member.projectors.values()),
        }
        if self.lease is not None:
            checks["lease"] = self.lease.is_held()
        return checks

    def create_app(self) -> web.Application:
        from .adapters.http import HttpSettings, create_app

        middlewares = []
        if self.settings.auth == "jwt":
            from .adapters.http.auth import auth_middleware

            verifier = self.settings.jwt_verifier()
            log.info("authentication: %s", verifier.describe())  # names files, never secrets
            middlewares.append(auth_middleware(verifier))
        app = create_app(
            commands=self.member,
            queries=self.read_model,
            readiness=self.readiness,
            settings=HttpSettings(
                max_body_bytes=self.settings.max_body_bytes,
                request_timeout_seconds=self.settings.request_timeout,
            ),
            middlewares=middlewares,
        )
        if self.settings.cluster:
            from .adapters.forwarding import internal_routes

            app.router.add_routes(internal_routes(self.member, self.settings.peer_token))
        app["runtime"] = self
        return app


def _incluster_namespace() -> str:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip()
    except OSError:
        raise SystemExit("--namespace is required outside a pod") from None


def _describe_journal(url: str) -> str:
    return url.split("?")[0]


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM: then stop taking requests, finish in-flight ones, flush."""
    runtime = Runtime(settings)
    await runtime.start()
    runner = web.AppRunner(runtime.create_app(), access_log=None, shutdown_timeout=10.0)
    await runner.setup()
    site = web.TCPSite(runner, runtime.settings.host, runtime.settings.port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runtime.stop()
        raise SystemExit(f"cannot listen on {runtime.settings.host}:{runtime.settings.port}: {exc}")
    tune_for_serving()  # after startup: what it created is never garbage (gc_tuning.py)
    log.info(
        "thread-weaver serving on http://%s:%d (member %s)",
        runtime.settings.host,
        runtime.settings.port,
        runtime.settings.member_name,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()
        await runtime.stop()


def run(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)
