"""Fixtures for the HTTP adapter tests: fakes over the real domain, and aiohttp test clients.

`fakes.py` is loaded under a unique module name (this directory is not a package: a package
named `http` would shadow the standard library's)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from threadweaver.adapters.http import HttpSettings, create_app

_NAME = "threadweaver_tests_http_fakes"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).with_name("fakes.py"))
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _module
    _spec.loader.exec_module(_module)
fakes_module = sys.modules[_NAME]


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
