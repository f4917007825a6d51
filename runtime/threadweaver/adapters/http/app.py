"""The aiohttp application of the HTTP API: `create_app`.

The router is filled from the route table (routes.py), and the OpenAPI document
(`GET /v1/openapi.json`) is built from the same table (openapi.py).

Middlewares, outermost first: `edge.edge_middleware` (metrics + DEBUG access log, CORS, errors:
everything becomes `{"error_messages": [...]}`), then the caller's `middlewares` (e.g.
`auth.auth_middleware` with `--auth jwt`), then the handler. They also run for the internal API,
a sub-app that `internal.add_internal_api` mounts on the app in a cluster.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from typing import Any

import orjson
from aiohttp import web

from ...application.gateway import CommandGateway
from ...application.ports import ReadModel
from ...application.read_your_writes import ReadYourWrites
from ...application.streams import StreamHub
from .edge import edge_middleware
from .handlers_chat import ChatCommandHandlers
from .handlers_commands import CommandHandlers
from .handlers_queries import QueryHandlers
from .metrics import HttpMetrics
from .openapi import build_document
from .probes import Probes, ping_readiness
from .read_your_writes import ReadYourWritesGroup
from .routes import ROUTES, add_routes
from .settings import HttpSettings
from .streams import StreamHandlers
from .wire import json_response

HTTP_SETTINGS = web.AppKey("threadweaver.http.settings", HttpSettings)
OPENAPI_DOCUMENT = web.AppKey("threadweaver.http.openapi", dict)
WELCOME = {"name": "thread-weaver", "api": "/v1", "openapi": "/v1/openapi.json"}


class _System:
    __slots__ = ("_openapi",)

    def __init__(self, document: dict[str, Any]) -> None:
        self._openapi = orjson.dumps(document)

    async def welcome(self, request: web.Request) -> web.Response:
        return json_response(WELCOME)

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")


def _version() -> str:
    try:
        return metadata.version("thread-weaver")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def create_app(
    *,
    commands: CommandGateway,
    queries: ReadModel,
    readiness: Callable[[], Awaitable[dict[str, bool]]] | None = None,
    settings: HttpSettings = HttpSettings(),
    middlewares: Sequence[Any] = (),
    streams: StreamHub | None = None,
    read_your_writes: ReadYourWrites | None = None,
) -> web.Application:
    """The HTTP API. `queries` is only used through its query methods (get_thread,
    list_threads, list_administrator_ids, list_member_ids, list_messages, ping).
    `readiness` defaults to pinging the read model. `middlewares` run inside the error
    middleware, closest to the handlers (see the module docstring). `streams` serves the live
    event streams (without it they answer 503); `read_your_writes` makes the thread's queries
    honour `min_seq` (without it `min_seq` is validated and not waited for)."""
    metrics = HttpMetrics.of(settings.metrics_registry)
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[edge_middleware(metrics, settings.max_body_bytes), *middlewares],
    )
    document = build_document(ROUTES, settings, _version())
    groups: dict[str, Any] = {
        "commands": CommandHandlers(commands, settings),
        "queries": ReadYourWritesGroup(
            "queries", QueryHandlers(queries, settings), read_your_writes
        ),
        "streams": StreamHandlers(streams),
        "probes": Probes(readiness or ping_readiness(queries)),
        "metrics": metrics,
        "system": _System(document),
        "chat": ChatCommandHandlers(commands, settings),
    }
    add_routes(app.router, ROUTES, groups)
    app[HTTP_SETTINGS] = settings
    app[OPENAPI_DOCUMENT] = document
    if streams is not None:
        hub = streams

        async def end_streams(_: web.Application) -> None:
            hub.end_streams()  # before aiohttp waits for the handlers to finish

        app.on_shutdown.append(end_streams)
    return app
