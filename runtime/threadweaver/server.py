"""The composition root: builds the journal, read model, entities, read-model updaters and the
HTTP API from Settings, and runs them until a signal stops the process."""
from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web

from .application.entities import EntityManager, EntitySettings
from .application.ports import Journal
from .application.projector import Projector, ProjectorSettings
from .adapters.readmodel import ReadModelSettings, SqlReadModel
from .adapters.readmodel.sql import redact_url
from .config import Settings

log = logging.getLogger(__name__)


def build_journal(settings: Settings) -> Journal:
    if settings.journal.startswith("dynamodb:"):
        from .adapters.journal.dynamodb import DynamoDBJournal, DynamoDBSettings
        return DynamoDBJournal(DynamoDBSettings.from_url(settings.journal), shards=settings.shards)
    from .adapters.journal.sqlite import SqliteJournal
    return SqliteJournal(settings.sqlite_journal_path, shards=settings.shards,
                         synchronous=settings.sync_mode)


def build_read_model(settings: Settings) -> SqlReadModel:
    return SqlReadModel(ReadModelSettings(url=settings.read_model))


class Runtime:
    """Everything one runtime process runs. Embedded mode: this member owns every shard."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.resolved()
        self.journal = build_journal(self.settings)
        self.read_model = build_read_model(self.settings)
        self.entities = EntityManager(self.journal, EntitySettings(
            snapshot_every=self.settings.snapshot_every,
            passivate_after=self.settings.passivate_after,
            max_entities=self.settings.max_entities), writer=self.settings.member_name)
        self.projector_settings = ProjectorSettings(
            batch_size=self.settings.projection_batch_size,
            poll_interval=self.settings.projection_poll_interval)
        self.projectors: list[Projector] = []
        self._started = False

    async def start(self) -> None:
        s = self.settings
        log.info("journal %s, read model %s, %d shards", _describe_journal(s.journal),
                 redact_url(s.read_model), s.shards)
        await self.journal.start()
        await self.read_model.start()
        if s.auto_migrate:
            await self.read_model.migrate()
        await self.entities.start()
        self.projectors = [Projector(self.journal, self.read_model, 0, s.shards,
                                     self.projector_settings)]
        for p in self.projectors:
            p.start()
        self._started = True

    async def stop(self) -> None:
        for p in self.projectors:
            await p.stop()
        await self.entities.close()
        await self.journal.close()
        await self.read_model.close()
        self._started = False

    async def readiness(self) -> dict[str, bool]:
        checks = {"started": self._started,
                  "projections": all(p.is_alive for p in self.projectors)}
        try:
            await asyncio.wait_for(self.read_model.ping(), 2.0)
            checks["read_model"] = True
        except Exception:
            checks["read_model"] = False
        return checks

    def create_app(self) -> web.Application:
        from .adapters.http import HttpSettings, create_app
        app = create_app(commands=self.entities, queries=self.read_model,
                         readiness=self.readiness,
                         settings=HttpSettings(max_body_bytes=self.settings.max_body_bytes,
                                               request_timeout_seconds=self.settings.request_timeout))
        app["runtime"] = self
        return app


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
    log.info("thread-weaver serving on http://%s:%d (member %s)", runtime.settings.host,
             runtime.settings.port, runtime.settings.member_name)
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
