"""Property-based conformance with schemathesis: a real aiohttp server (background thread,
127.0.0.1, random port) serving the app over the in-memory fakes; the schema is loaded from
its own /v1/openapi.json. Every documented operation gets a modest number of generated
requests (valid and invalid); no 5xx, and every response must conform to the document."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry

from tests.unit.http_adapter import fakes, stream_fakes
from threadweaver.adapters.http import OPENAPI_DOCUMENT, HttpSettings, create_app

# modest by default so the unit suite stays fast; raise it for a deeper run
MAX_EXAMPLES = int(os.environ.get("THREADWEAVER_SCHEMATHESIS_EXAMPLES", "30"))


class BackgroundServer:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, name="schemathesis-api", daemon=True)
        self.url = ""

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self.started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        assert self.started.wait(10), "the test server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _app() -> web.Application:
    journal = stream_fakes.MemoryJournal()
    gateway = stream_fakes.JournaledGateway(journal)
    queries = fakes.FakeQueries(gateway)
    # streams end after a moment: a response must end for schemathesis to check it
    hub, waiter = stream_fakes.stream_hub(
        journal, queries, stream_max_duration=0.2, stream_heartbeat=0.1
    )
    app = create_app(
        commands=gateway,
        queries=queries,
        settings=HttpSettings(metrics_registry=CollectorRegistry()),
        streams=hub,
        read_your_writes=waiter,
    )

    async def start_hub(_: web.Application) -> None:
        hub.start()  # its heartbeat timer wakes the streams (and ends them after 0.2 s)

    app.on_startup.append(start_hub)
    return app


# The schema is taken from the app at collection time (schemathesis' lazy `from_fixture` does
# not work with pytest 9); `test_served_document_is_the_tested_one` checks that the server
# serves exactly this document, loaded through `schemathesis.openapi.from_url`.
APP = _app()
schema = schemathesis.openapi.from_dict(APP[OPENAPI_DOCUMENT])
schema.config.generation.update(max_examples=MAX_EXAMPLES)
# an invalid body can also be too large: 413 is a rejection too
_rejection = schema.config.checks.negative_data_rejection
_rejection.expected_statuses = [*_rejection.expected_statuses, "413"]


@pytest.fixture(scope="module")
def server():
    with BackgroundServer(APP) as running:
        yield running


def test_served_document_is_the_tested_one(server):
    loaded = schemathesis.openapi.from_url(f"{server.url}/v1/openapi.json")
    assert loaded.raw_schema == schema.raw_schema
    assert len(list(schema.get_all_operations())) == 22


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case, server):
    response = case.call(base_url=server.url, timeout=10)
    assert response.status_code < 500, (case.method, case.path, response.text)
    case.validate_response(response)
