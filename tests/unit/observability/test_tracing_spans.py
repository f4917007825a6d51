"""Tracing (application/tracing.py, adapters/otel_tracing.py): off by default without importing
OpenTelemetry; with it, the request's trace context on the stored events' envelopes, a span
around the journal append, the projection's span linked to the command's, and the ids on JSON
log lines. Spans are collected in memory (the OTLP export: tests/e2e/test_tracing.py)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from threadweaver import logs
from threadweaver.adapters.journal.sqlite import SqliteJournal
from threadweaver.adapters.otel_tracing import OtelTracer, traces_url
from threadweaver.adapters.readmodel import ReadModelSettings, SqlReadModel
from threadweaver.application import tracing
from threadweaver.application.entities import EntityManager
from threadweaver.application.event_mapper import TRACE_CONTEXT
from threadweaver.application.projector import Projector, ProjectorSettings
from threadweaver.domain import AddMessages, CreateThread, NewMessage, new_ulid

ADMIN = new_ulid()
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER = {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"}


@pytest.fixture
def exported():
    exporter = InMemorySpanExporter()
    tracer = OtelTracer("", member="m-0", exporter=exporter)
    tracing.install(tracer)
    yield exporter
    tracing.install(tracing.NOOP)
    tracer.shutdown()


def by_name(exporter: InMemorySpanExporter, name: str) -> list:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_off_by_default_the_runtime_imports_no_opentelemetry(tmp_path):
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from threadweaver import cli, logs\n"
        "from threadweaver.application import tracing\n"
        "from threadweaver.config import Settings, StorageSettings\n"
        "from threadweaver.server import Runtime\n"
        f"r = Runtime(Settings(storage=StorageSettings(data_dir=Path({str(tmp_path)!r}))))\n"
        "assert r.tracer is None and tracing.tracer() is tracing.NOOP\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_noop_tracer_records_nothing():
    noop = tracing.NOOP
    assert not noop.enabled
    with noop.span("x", kind="server", parent=CALLER, links=[CALLER]):
        assert noop.trace_context() is None and noop.current_ids() is None


def test_the_traces_url_of_an_endpoint():
    assert traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


def test_a_span_continues_the_callers_trace_and_links_to_others(exported):
    tracer = tracing.tracer()
    other = {"traceparent": "00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01"}
    with tracer.span("request", kind="server", parent=CALLER, attributes={"a": 1}):
        trace_id, span_id = tracer.current_ids() or ("", "")
        assert trace_id == TRACE_ID
        assert tracer.trace_context() == {"traceparent": f"00-{TRACE_ID}-{span_id}-01"}
        with tracer.span("inner", links=[other, {"traceparent": "garbage"}]):
            pass
    (request,) = by_name(exported, "request")
    (inner,) = by_name(exported, "inner")
    assert request.kind == SpanKind.SERVER and request.parent.span_id == 0xB7AD6B7169203331
    assert request.resource.attributes["service.instance.id"] == "m-0"
    assert inner.parent.span_id == request.context.span_id
    assert [format(link.context.trace_id, "032x") for link in inner.links] == [
        "1af7651916cd43dd8448eb211c80319c"
    ]
    assert tracer.trace_context() is None and tracer.current_ids() is None


@pytest.fixture
async def stores(tmp_path):
    j = SqliteJournal(tmp_path / "j.db", shards=4, synchronous="off")
    rm = SqlReadModel(ReadModelSettings.sqlite(tmp_path / "rm.db"))
    await j.start()
    await rm.migrate()
    yield j, rm
    await j.close()
    await rm.close()


async def test_a_command_appends_in_a_span_and_the_projection_links_to_it(stores, exported):
    journal, read_model = stores
    entities = EntityManager(journal)
    tracer = tracing.tracer()
    tid = new_ulid()
    await entities.execute(CreateThread(tid, ADMIN, "untraced", (ADMIN,), (), None, None, 1))
    with tracer.span("request", kind="server", parent=CALLER):
        await entities.execute(AddMessages(tid, ADMIN, (NewMessage(new_ulid(), "hi"),), 2))
        carrier = tracer.trace_context()
    (request,) = by_name(exported, "request")
    untraced, append = by_name(exported, "journal append")
    assert untraced.parent is None and untraced.context.trace_id != request.context.trace_id
    assert append.parent.span_id == request.context.span_id
    assert append.attributes["threadweaver.pid"].endswith(tid)

    stored = await journal.read(append.attributes["threadweaver.pid"], 1)
    assert TRACE_CONTEXT not in stored[0].metadata  # created outside any span
    assert stored[1].metadata[TRACE_CONTEXT] == carrier

    projector = Projector(journal, read_model, 0, 4, ProjectorSettings(poll_interval=0.05))
    projector.start()
    await projector.wait_caught_up(5)
    await projector.stop()
    await entities.close()
    projections = by_name(exported, "project events")
    links = [(link.context.trace_id, link.context.span_id) for s in projections for link in s.links]
    assert (request.context.trace_id, request.context.span_id) in links
    assert all(s.parent is None for s in projections)  # a trace of its own, linked


def json_line(message: str) -> dict:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None)
    return json.loads(logs.JsonFormatter().format(record))


def test_json_log_lines_carry_the_current_span(exported):
    assert "trace_id" not in json_line("outside")
    tracer = tracing.tracer()
    with tracer.span("request", parent=CALLER):
        trace_id, span_id = tracer.current_ids() or ("", "")
        line = json_line("inside")
    assert line["trace_id"] == TRACE_ID == trace_id and line["span_id"] == span_id


def test_json_log_lines_have_no_ids_when_tracing_is_off():
    assert {"trace_id", "span_id"}.isdisjoint(json_line("off"))
