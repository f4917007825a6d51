"""Tracing of the HTTP API (only with `--otel-endpoint`, server.py): a server span around each
request but the probes' and the metrics scrape, a child of the caller's W3C `traceparent` when
it sent one (a member forwarding a command, adapters/forwarding.py, or a traced client).

The span is named after the route's template (`POST /v1/threads/{thread_id}/messages/add`),
so that a span name does not carry an id.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...application.tracing import Tracer
from .errors import Handler

UNTRACED_PATHS = frozenset({"/live", "/ready", "/metrics"})
TRACE_HEADERS = ("traceparent", "tracestate")


def _route_template(request: web.Request) -> str:
    info = request.match_info.get_info()
    return str(info.get("formatter") or info.get("path") or request.path)


def tracing_middleware(tracer: Tracer) -> Any:
    @web.middleware
    async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in UNTRACED_PATHS or request.method == "OPTIONS":
            return await handler(request)
        headers = request.headers
        parent = {h: headers[h] for h in TRACE_HEADERS if h in headers}
        name = f"{request.method} {_route_template(request)}"
        attributes = {"http.request.method": request.method, "url.path": request.path}
        with tracer.span(name, kind="server", attributes=attributes, parent=parent or None):
            return await handler(request)

    return traced
