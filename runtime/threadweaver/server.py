"""The composition root: builds the journal, read model, entities, read-model updaters and the
HTTP API from the resolved Settings (config.py), and runs them until a signal stops the process."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .adapters.readmodel import ReadModelSettings, SqlReadModel
from .adapters.readmodel.databases import database_of, open_database
from .adapters.readmodel.sql import redact_url
from .application import tracing
from .application.entities import EntityManager
from .application.ports import Journal, ReadModel
from .application.read_model_switch import SwitchableReadModel
from .application.read_your_writes import ReadYourWrites
from .application.sharding import Member, ShardingSettings
from .application.streams import StreamHub
from .config import Settings, StorageSettings, TracingSettings
from .gc_tuning import tune_for_serving
from .shards import MemberStatus, ShardMap

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

    from .adapters.forwarding import HttpPeerClient
    from .adapters.kube.lease import MemberLease
    from .adapters.kube.shardmap_watch import ShardMapWatch
    from .adapters.otel_tracing import OtelTracer

log = logging.getLogger(__name__)


def build_journal(storage: StorageSettings) -> Journal:
    if storage.journal.startswith("dynamodb:"):
        from .adapters.journal.dynamodb import DynamoDBJournal, DynamoDBSettings

        return DynamoDBJournal(DynamoDBSettings.from_url(storage.journal), shards=storage.shards)
    from .adapters.journal.sqlite import SqliteJournal

    return SqliteJournal(
        storage.sqlite_journal_path, shards=storage.shards, synchronous=storage.sync_mode
    )


def build_read_model(storage: StorageSettings) -> SqlReadModel:
    return SqlReadModel(ReadModelSettings(url=storage.read_model))


def build_streams(
    journal: Journal, read_model: SwitchableReadModel, settings: Settings
) -> tuple[ReadYourWrites, StreamHub]:
    """The read-your-writes waiter and the live streams' hub (application/streams.py)."""
    from .adapters.http.stream_wire import frame
    from .adapters.readmodel.applied_seq import SqlAppliedSeqs

    streams = settings.streams
    waiter = ReadYourWrites(
        SqlAppliedSeqs(lambda: read_model.for_queries), streams.read_your_writes_timeout
    )
    hub = StreamHub(
        journal,
        read_model,
        waiter,
        streams,
        frame,
        poll_interval=settings.projection.poll_interval,
    )
    return waiter, hub


def install_tracer(settings: TracingSettings, member: str) -> OtelTracer | None:
    """With an endpoint: the OpenTelemetry tracer, installed as the process's (tracing.py);
    without one nothing is imported and the no-op tracer stays."""
    if not settings.enabled:
        return None
    from .adapters.otel_tracing import OtelTracer, traces_url

    tracer = OtelTracer(
        settings.otel_endpoint, member=member, sample_ratio=settings.otel_sample_ratio
    )
    tracing.install(tracer)
    log.info("tracing: OTLP/HTTP to %s", traces_url(settings.otel_endpoint))
    return tracer


class Runtime:
    """Everything one runtime process runs.

    Embedded (no --cluster): a static shard map in which this member owns every shard.
    Cluster: the map comes from the operator's ConfigMap, the member reports through its Lease,
    and commands for other members' shards are forwarded to them.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings.resolved()
        cluster = s.cluster
        self.tracer = install_tracer(s.tracing, cluster.member_name)
        self.journal = build_journal(s.storage)
        # queries and RMUs through one port whose databases a rebuild can move (cluster mode)
        self.read_model = SwitchableReadModel(
            build_read_model(s.storage), database_of(s.storage.read_model)
        )
        self.entities = EntityManager(self.journal, s.entities, writer=cluster.member_name)
        self.peers: HttpPeerClient | None = None
        self.kube_api: ApiClient | None = None
        self.watch: ShardMapWatch | None = None
        self.lease: MemberLease | None = None
        if not cluster.embedded:
            from .adapters.forwarding import HttpPeerClient

            self.peers = HttpPeerClient(cluster.member_name, token=cluster.peer_token)
        self.member = Member(
            ShardingSettings(
                member=cluster.member_name, address_template=cluster.peer_address_template
            ),
            self.entities,
            self.journal,
            self.read_model,
            s.projection,
            status_sink=self._publish_status,
            peers=self.peers,
            address=cluster.peer_address or None,
            holds_lease=lambda: self.lease is None or self.lease.is_held(),
            open_read_model=None if cluster.embedded else self._open_read_model,
        )
        self.read_your_writes, self.streams = build_streams(self.journal, self.read_model, s)
        self._started = False
        from .observability import install as install_metrics

        self.metrics = install_metrics(self)  # /metrics: docs/operations.md, "Monitoring"

    async def _open_read_model(self, database: str) -> ReadModel:
        return await open_database(self.settings.storage.read_model, database)

    async def _publish_status(self, status: MemberStatus) -> None:
        if self.lease is not None:
            await self.lease.publish(status)

    async def start(self) -> None:
        storage, cluster = self.settings.storage, self.settings.cluster
        log.info(
            "journal %s, read model %s, %d shards",
            _describe_journal(storage.journal),
            redact_url(storage.read_model),
            storage.shards,
        )
        await self.journal.start()
        await self.read_model.start()
        if storage.auto_migrate:
            await self.read_model.migrate()
        await self.entities.start()
        self.streams.start()
        if cluster.embedded:
            await self.member.apply_map(ShardMap.initial(storage.shards, [cluster.member_name]))
        else:
            from .adapters.kube.client import api_client
            from .adapters.kube.lease import MemberLease
            from .adapters.kube.shardmap_watch import ShardMapWatch

            namespace = cluster.namespace or _incluster_namespace()
            self.kube_api = await api_client(cluster.kubeconfig)
            self.lease = MemberLease(
                self.kube_api,
                namespace,
                cluster.name,
                cluster.member_name,
                self.member.status,
                duration=cluster.lease_duration,
                renew_every=cluster.lease_renew_every,
            )
            self.lease.start()
            self.watch = ShardMapWatch(
                self.kube_api,
                namespace,
                cluster.name,
                self.member.apply_map,
                on_read_model=self.member.apply_read_model,
            )
            self.watch.start()
        self._started = True

    async def stop(self) -> None:
        if self.watch is not None:
            await self.watch.stop()
        await self.member.stop()
        if self.lease is not None:
            await self.lease.stop(release=True)
        await self.streams.close()
        await self.entities.close()
        if self.peers is not None:
            await self.peers.close()
        if self.kube_api is not None:
            await self.kube_api.close()
        await self.journal.close()
        await self.read_model.close()
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.shutdown)  # exports the last spans
            tracing.install(tracing.NOOP)
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
        from .adapters.http import add_internal_api, create_app

        middlewares = []
        if self.tracer is not None:
            from .adapters.http.tracing import tracing_middleware

            middlewares.append(tracing_middleware(self.tracer))
        if self.settings.auth.enabled:
            from .adapters.http.auth import auth_middleware

            verifier = self.settings.jwt_verifier()
            log.info("authentication: %s", verifier.describe())  # names files, never secrets
            middlewares.append(auth_middleware(verifier))
        app = create_app(
            commands=self.member,
            queries=self.read_model,
            readiness=self.readiness,
            settings=self.settings.http,
            middlewares=middlewares,
            streams=self.streams,
            read_your_writes=self.read_your_writes,
        )
        cluster = self.settings.cluster
        if not cluster.embedded and not cluster.internal_port:
            add_internal_api(app, self.member, cluster.peer_token)
        app["runtime"] = self
        return app

    def create_internal_app(self) -> web.Application | None:
        """The internal API on a listener of its own (`--internal-port` in a cluster), or None
        when it is served on the public port (or not at all: embedded)."""
        cluster = self.settings.cluster
        if cluster.embedded or not cluster.internal_port:
            return None
        from .adapters.http import internal_server_app

        middlewares = []
        if self.tracer is not None:  # the forwarded command's traceparent continues here
            from .adapters.http.tracing import tracing_middleware

            middlewares.append(tracing_middleware(self.tracer))
        return internal_server_app(self.member, cluster.peer_token, middlewares)


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
    server = runtime.settings.server
    listeners = [(runtime.create_app(), server.port)]
    internal = runtime.create_internal_app()
    if internal is not None:
        listeners.append((internal, runtime.settings.cluster.internal_port))
    runners: list[web.AppRunner] = []
    for app, port in listeners:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0)
        await runner.setup()
        runners.append(runner)
        try:
            await web.TCPSite(runner, server.host, port, reuse_address=True).start()
        except OSError as exc:
            for started in runners:
                await started.cleanup()
            await runtime.stop()
            raise SystemExit(f"cannot listen on {server.host}:{port}: {exc}") from None
    tune_for_serving()  # after startup: what it created is never garbage (gc_tuning.py)
    log.info(
        "thread-weaver serving on http://%s:%d (member %s)",
        server.host,
        server.port,
        runtime.settings.cluster.member_name,
    )
    if internal is not None:
        log.info("internal API on %s:%d", server.host, runtime.settings.cluster.internal_port)
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
        for runner in runners:
            await runner.cleanup()
        await runtime.stop()


def run(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)
