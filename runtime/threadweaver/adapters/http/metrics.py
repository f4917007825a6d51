"""Prometheus metrics of the HTTP API, and `GET /metrics`.

- `threadweaver_http_requests_total{route,method,status}`: counter;
- `threadweaver_http_request_duration_seconds{route}`: histogram;
- `threadweaver_http_requests_in_flight`: gauge.

`route` is the route template (`/v1/threads/{thread_id}/destroy`), or `unmatched` for paths no
route serves, so label cardinality stays bounded. Each request is also logged at DEBUG on the
`threadweaver.http.access` logger.

The figures are kept in plain Python (a dict increment and a bucket search per request) and
handed to prometheus_client by a collector when `/metrics` is scraped: prometheus_client's own
metric objects take a lock per update, five updates per request, a cost measured on the command
path of the benchmarks. Everything runs on the event loop's thread, so no lock is needed.
"""

from __future__ import annotations

import bisect
import logging
import weakref
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ...application.stats import LATENCY_BUCKETS

access_log = logging.getLogger("threadweaver.http.access")

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
BUCKETS = LATENCY_BUCKETS  # one declaration: the runtime latencies compare bucket for bucket

_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, HttpMetrics] = (
    weakref.WeakKeyDictionary()
)


class _Latency:
    """One route's histogram: counts per bucket (the last one is +Inf) and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0


class HttpMetrics:
    """The metrics of one registry (created once per registry: Prometheus names are unique)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.in_flight = 0
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, _Latency] = {}
        registry.register(_Collector(self))

    @classmethod
    def of(cls, registry: CollectorRegistry | None) -> HttpMetrics:
        registry = REGISTRY if registry is None else registry
        metrics = _by_registry.get(registry)
        if metrics is None:
            metrics = _by_registry[registry] = cls(registry)
        return metrics

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        resource = request.match_info.route.resource
        route = UNMATCHED if resource is None else resource.canonical
        method = request.method
        if method not in _METHODS:
            method = "other"
        key = (route, method, status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        latency = self.latency.get(route)
        if latency is None:
            latency = self.latency[route] = _Latency()
        latency.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        latency.total += seconds
        if access_log.isEnabledFor(logging.DEBUG):
            access_log.debug(
                "%s %s -> %d in %.2f ms", method, request.path_qs, status, seconds * 1000
            )

    async def handle(self, request: web.Request) -> web.Response:
        """GET /metrics: the Prometheus text exposition of this registry."""
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


class _Collector:
    """Exposes an HttpMetrics' figures at scrape time."""

    def __init__(self, metrics: HttpMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return list(self._families(empty=True))

    def collect(self) -> Iterator[Metric]:
        return self._families(empty=False)

    def _families(self, empty: bool) -> Iterator[Metric]:
        m = self._metrics
        requests = CounterMetricFamily(
            "threadweaver_http_requests",
            "HTTP requests answered, by route template, method and status.",
            labels=["route", "method", "status"],
        )
        duration = HistogramMetricFamily(
            "threadweaver_http_request_duration_seconds",
            "HTTP request latency by route template.",
            labels=["route"],
        )
        if not empty:
            for (route, method, status), count in list(m.requests.items()):
                requests.add_metric([route, method, str(status)], count)
            for route, latency in list(m.latency.items()):
                cumulative, buckets = 0, []
                for bound, count in zip((*map(str, BUCKETS), "+Inf"), latency.counts):
                    cumulative += count
                    buckets.append((bound, cumulative))
                duration.add_metric([route], buckets, latency.total)
        yield requests
        yield duration
        yield GaugeMetricFamily(
            "threadweaver_http_requests_in_flight",
            "HTTP requests being handled.",
            value=0 if empty else m.in_flight,
        )
