"""Fixtures for the HTTP adapter tests: fakes over the real domain, and aiohttp test clients."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from tests.unit.http_adapter import fakes as fakes_module
from threadweaver.adapters.http import HttpSettings, create_app


@pytest.fixture
def fakes() -> Any:
    return fakes_module


@pytest.fixture
def gateway() -> Any:
    return fakes_module.FakeGateway()


@pytest.fixture
def queries(gateway: Any) -> Any:
    return fakes_module.FakeQueries(gateway)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def make_client(gateway: Any, queries: Any, registry: CollectorRegistry):
    """make_client(**create_app_kwargs, settings_overrides...) -> started TestClient."""
    clients: list[TestClient] = []

    async def make(*, settings: HttpSettings | None = None, **kwargs: Any) -> TestClient:
        settings = settings or HttpSettings(metrics_registry=registry)
        kwargs.setdefault("commands", gateway)
        kwargs.setdefault("queries", queries)
        app = create_app(settings=settings, **kwargs)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: Any) -> TestClient:
    return await make_client()


@pytest.fixture
def api(client: TestClient, gateway: Any, queries: Any) -> Any:
    return fakes_module.Api(client, gateway, queries)
