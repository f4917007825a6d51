"""Prometheus metrics of the HTTP API, the outermost middleware, and `GET /metrics`.

- `threadweaver_http_requests_total{route,method,status}`: counter;
- `threadweaver_http_request_duration_seconds{route}`: histogram;
- `threadweaver_http_requests_in_flight`: gauge.

`route` is the route template (`/v1/threads/{thread_id}/destroy`), or `unmatched` for paths no
route serves, so label cardinality stays bounded. The same middleware logs each request at
DEBUG on the `threadweaver.http.access` logger.
"""
from __future__ import annotations

import logging
import time
import weakref
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest,
)

from .errors import Handler

access_log = logging.getLogger("threadweaver.http.access")

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0, 20.0)

_by_registry: "weakref.WeakKeyDictionary[CollectorRegistry, HttpMetrics]" = \
    weakref.WeakKeyDictionary()


class HttpMetrics:
    """The metrics of one registry (created once per registry: Prometheus names are unique)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter("threadweaver_http_requests_total",
                                "HTTP requests answered, by route template, method and status.",
                                ["route", "method", "status"], registry=registry)
        self.duration = Histogram("threadweaver_http_request_duration_seconds",
                                  "HTTP request latency by route template.", ["route"],
                                  buckets=_BUCKETS, registry=registry)
        self.in_flight = Gauge("threadweaver_http_requests_in_flight",
                               "HTTP requests being handled.", registry=registry)
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._durations: dict[str, Any] = {}

    @classmethod
    def of(cls, registry: CollectorRegistry | None) -> "HttpMetrics":
        registry = REGISTRY if registry is None else registry
        metrics = _by_registry.get(registry)
        if metrics is None:
            metrics = _by_registry[registry] = cls(registry)
        return metrics

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(route, method, str(status))
        counter.inc()
        duration = self._durations.get(route)
        if duration is None:
            duration = self._durations[route] = self.duration.labels(route)
        duration.observe(seconds)

    def middleware(self) -> Any:
        in_flight = self.in_flight
        observe = self.observe

        @web.middleware
        async def metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
            start = time.perf_counter()
            in_flight.inc()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                in_flight.dec()
                elapsed = time.perf_counter() - start
                resource = request.match_info.route.resource
                route = UNMATCHED if resource is None else resource.canonical
                method = request.method
                observe(route, method if method in _METHODS else "other", status, elapsed)
                if access_log.isEnabledFor(logging.DEBUG):
                    access_log.debug("%s %s -> %d in %.2f ms", method, request.path_qs, status,
                                     elapsed * 1000)

        return metrics

    async def handle(self, request: web.Request) -> web.Response:
        """GET /metrics: the Prometheus text exposition of this registry."""
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})
