"""The tracing middleware (adapters/http/tracing.py): a server span per request, named after
the route's template, continuing the caller's traceparent; none for probes and /metrics."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from threadweaver.adapters.http.tracing import tracing_middleware
from threadweaver.adapters.otel_tracing import OtelTracer

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
async def traced(make_client):
    exporter = InMemorySpanExporter()
    tracer = OtelTracer("", member="m-0", exporter=exporter)
    client = await make_client(middlewares=[tracing_middleware(tracer)])
    yield client, exporter
    tracer.shutdown()


async def test_a_request_is_a_server_span_of_the_callers_trace(traced):
    client, exporter = traced
    headers = {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"}
    r = await client.get("/v1/threads/01HZX3V8Y5K2M3N4P5Q6R7S8T9", headers=headers)
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /v1/threads/{thread_id}" and span.kind == SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent.span_id == 0xB7AD6B7169203331
    assert span.attributes["url.path"] == "/v1/threads/01HZX3V8Y5K2M3N4P5Q6R7S8T9"
    assert r.status in (200, 400, 404)


async def test_without_a_traceparent_a_request_starts_a_trace(traced):
    client, exporter = traced
    await client.get("/")
    (span,) = exporter.get_finished_spans()
    assert span.parent is None and span.name == "GET /"


async def test_probes_and_metrics_are_not_traced(traced):
    client, exporter = traced
    for path in ("/live", "/ready", "/metrics"):
        await client.get(path)
    assert exporter.get_finished_spans() == ()
