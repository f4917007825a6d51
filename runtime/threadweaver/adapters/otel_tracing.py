"""The tracing port (application/tracing.py) on OpenTelemetry: spans exported in batches to an
OTLP/HTTP endpoint (protobuf, `POST <endpoint>/v1/traces`), W3C trace context.

Imported only by the composition root, and only when `--otel-endpoint` is set; without it no
OpenTelemetry module is loaded. The SDK's own environment variables still apply (e.g.
`OTEL_BSP_SCHEDULE_DELAY`, the export interval in milliseconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..application.tracing import Attributes, SpanKind

TRACES_PATH = "/v1/traces"
SERVICE_NAME = "threadweaver"
_KINDS = {
    "internal": trace.SpanKind.INTERNAL,
    "server": trace.SpanKind.SERVER,
    "client": trace.SpanKind.CLIENT,
}


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector's base endpoint (`http://HOST:4318`); an
    endpoint that already ends with /v1/traces is taken as it is."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


class OtelTracer:
    enabled = True

    def __init__(
        self,
        endpoint: str,
        *,
        member: str,
        sample_ratio: float = 1.0,
        exporter: SpanExporter | None = None,
    ) -> None:
        """Spans go in batches to `endpoint` over OTLP/HTTP; with `exporter` (tests), each
        to it as it ends instead."""
        resource = Resource.create({"service.name": SERVICE_NAME, "service.instance.id": member})
        # ParentBased: a forwarded command follows the sampling decision of the first member
        self.provider = TracerProvider(
            resource=resource, sampler=ParentBased(TraceIdRatioBased(sample_ratio))
        )
        self.provider.add_span_processor(
            SimpleSpanProcessor(exporter)
            if exporter is not None
            else BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint)))
        )
        self._tracer = self.provider.get_tracer("threadweaver")
        self._propagator = TraceContextTextMapPropagator()

    @contextmanager
    def span(
        self,
        name: str,
        *,
        kind: SpanKind = "internal",
        attributes: Attributes | None = None,
        parent: Mapping[str, str] | None = None,
        links: Iterable[Mapping[str, str]] = (),
    ) -> Iterator[None]:
        context = self._propagator.extract(parent) if parent is not None else None
        span_links = [trace.Link(c) for c in map(self._span_context, links) if c.is_valid]
        with self._tracer.start_as_current_span(
            name, context=context, kind=_KINDS[kind], attributes=attributes, links=span_links
        ):
            yield

    def trace_context(self) -> dict[str, str] | None:
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier or None

    def current_ids(self) -> tuple[str, str] | None:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return format(context.trace_id, "032x"), format(context.span_id, "016x")

    def shutdown(self) -> None:
        """Export what is buffered, then stop (blocks: call it in a thread)."""
        self.provider.shutdown()

    def _span_context(self, carrier: Mapping[str, str]) -> Any:
        return trace.get_current_span(self._propagator.extract(carrier)).get_span_context()
