"""Probes, metrics, the welcome document, and the OpenAPI document (valid 3.1, and listing
exactly what the router serves, with the validators' limits)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

# schemathesis is a test dependency: if this import moves, the test must fail, not skip.
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from threadweaver.adapters.http import OPENAPI_DOCUMENT, ROUTES, HttpSettings, create_app
from threadweaver.domain import limits


async def test_welcome(client):
    resp = await client.get("/")
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
    assert await resp.json() == {
        "name": "thread-weaver",
        "api": "/v1",
        "openapi": "/v1/openapi.json",
    }


async def test_live(client):
    resp = await client.get("/live")
    assert resp.status == 200 and await resp.json() == {"status": "live"}


async def test_ready_with_all_checks_true(make_client):
    async def readiness():
        return {"journal": True, "readModel": True}

    client = await make_client(readiness=readiness)
    resp = await client.get("/ready")
    assert resp.status == 200
    assert await resp.json() == {
        "status": "ready",
        "checks": {"journal": True, "readModel": True},
        "failing": [],
    }


async def test_ready_names_failing_checks(make_client):
    async def readiness():
        return {"journal": True, "readModel": False, "shards": False}

    client = await make_client(readiness=readiness)
    resp = await client.get("/ready")
    assert resp.status == 503 and resp.headers["Content-Type"] == "application/json"
    data = await resp.json()
    assert data["status"] == "not ready" and data["failing"] == ["readModel", "shards"]
    assert data["checks"] == {"journal": True, "readModel": False, "shards": False}
    assert data["error_messages"] == ["not ready: readModel, shards"]


async def test_ready_when_readiness_raises(make_client):
    async def readiness():
        raise ConnectionError("down")

    client = await make_client(readiness=readiness)
    resp = await client.get("/ready")
    assert resp.status == 503
    assert (await resp.json())["failing"] == ["readiness"]


async def test_ready_defaults_to_read_model_ping(client, queries):
    resp = await client.get("/ready")
    assert resp.status == 200 and (await resp.json())["checks"] == {"readModel": True}
    queries.ping_error = OSError("no database")
    resp = await client.get("/ready")
    assert resp.status == 503 and (await resp.json())["failing"] == ["readModel"]


async def test_metrics(client, api, fakes):
    await api.create(fakes.ulid())
    await client.get("/nope")
    await client.get("/nope2")
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert (
        'threadweaver_http_requests_total{method="POST",route="/v1/threads/create",'
        'status="200"} 1.0'
    ) in text
    assert (
        'threadweaver_http_requests_total{method="GET",route="unmatched",status="404"} 2.0'
    ) in text
    assert (
        'threadweaver_http_request_duration_seconds_count{route="/v1/threads/create"} 1.0' in text
    )
    assert "threadweaver_http_requests_in_flight 1.0" in text  # this very request


async def test_metrics_default_to_the_global_registry(gateway, queries):
    from prometheus_client import REGISTRY

    a = create_app(commands=gateway, queries=queries)
    b = create_app(commands=gateway, queries=queries)  # no duplicate registration error
    assert a is not b
    assert REGISTRY.get_sample_value("threadweaver_http_requests_in_flight") is not None


# --- OpenAPI -------------------------------------------------------------------------------------


@pytest.fixture
async def document(client):
    resp = await client.get("/v1/openapi.json")
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
    return await resp.json()


async def test_openapi_document_is_valid(document):
    errors = [e.message for e in OPENAPI_31_VALIDATOR.iter_errors(document)]
    assert errors == []
    broken = {**document, "paths": {"/x": {"get": {"responses": {"200": {}}}}}}
    assert list(OPENAPI_31_VALIDATOR.iter_errors(broken))  # the validator does validate


async def test_openapi_refs_resolve(document):
    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for item in node:
                yield from refs(item)

    for ref in refs(document):
        target = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]


async def test_openapi_lists_exactly_the_served_routes(client, document):
    served = {(route.method, route.resource.canonical) for route in client.app.router.routes()}
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert documented == served
    assert len(served) == len(ROUTES) == 22
    operation_ids = [
        op["operationId"] for item in document["paths"].values() for op in item.values()
    ]
    assert len(set(operation_ids)) == len(operation_ids)


async def test_openapi_operations_document_parameters_and_responses(document):
    for path, item in document["paths"].items():
        for method, op in item.items():
            names = {p["name"] for p in op.get("parameters", [])}
            if "{thread_id}" in path:
                assert "thread_id" in names
            if path.startswith("/v1/threads") and method == "get":
                assert "account_id" in names
                assert {"200", "400", "500", "503"} <= set(op["responses"])
            if method == "post":
                assert op["requestBody"]["required"] is True
                assert {"200", "400", "409", "413", "415", "500", "503"} <= set(op["responses"])
                assert "Retry-After" in op["responses"]["503"]["headers"]
            for response in op["responses"].values():
                assert response["content"]


async def test_openapi_schemas_carry_the_validation_rules(document):
    schemas = document["components"]["schemas"]
    create = schemas["CreateThreadRequest"]
    assert set(create["required"]) == {
        "accountId",
        "title",
        "administratorIds",
        "memberIds",
        "createAt",
    }
    assert create["properties"]["title"]["maxLength"] == limits.TITLE_MAX_LENGTH
    assert create["properties"]["remarks"]["maxLength"] == limits.REMARKS_MAX_LENGTH
    assert create["properties"]["remarks"]["type"] == ["string", "null"]
    assert create["properties"]["administratorIds"]["minItems"] == 1
    assert create["properties"]["administratorIds"]["maxItems"] == limits.IDS_PER_REQUEST_LIMIT
    assert "minItems" not in create["properties"]["memberIds"]
    assert create["properties"]["createAt"]["minimum"] == 0
    add = schemas["AddMessagesRequest"]
    assert add["properties"]["messages"]["maxItems"] == limits.MESSAGES_PER_REQUEST_LIMIT
    message = add["properties"]["messages"]["items"]
    assert message["properties"]["text"]["maxLength"] == limits.TEXT_MAX_LENGTH
    assert set(message["required"]) == {"toAccountIds", "text"}
    assert schemas["Ulid"]["minLength"] == schemas["Ulid"]["maxLength"] == 26
    assert "replyMessageId" in schemas["ThreadMessageJson"]["properties"]


async def test_openapi_follows_settings(gateway, queries, registry):
    app = create_app(
        commands=gateway,
        queries=queries,
        settings=HttpSettings(default_limit=5, max_limit=50, metrics_registry=registry),
    )
    op = app[OPENAPI_DOCUMENT]["paths"]["/v1/threads"]["get"]
    limit = next(p for p in op["parameters"] if p["name"] == "limit")
    assert limit["schema"]["default"] == 5 and limit["schema"]["maximum"] == 50


async def test_ulid_pattern_agrees_with_the_validator(document):
    import re

    from threadweaver.domain.ids import is_ulid

    pattern = re.compile(document["components"]["schemas"]["Ulid"]["pattern"])
    samples = [
        "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "01arz3ndektsv4rrffq69g5fav",
        "8" + "0" * 25,
        "7" + "Z" * 25,
        "0" * 25 + "I",
        "0" * 25 + "l",
        "0" * 25 + "o",
        "0" * 25 + "U",
        "0" * 25 + "u",
        "0" * 25,
        "0" * 27,
        "0" * 25 + "-",
    ]
    for sample in samples:
        assert bool(pattern.match(sample)) == is_ulid(sample), sample


async def test_live_answers_while_a_command_is_in_flight(client, gateway, fakes):
    gateway.delay = 0.3
    slow = asyncio.ensure_future(
        client.post(
            f"/v1/threads/{fakes.ulid()}/destroy", json={"accountId": fakes.ulid(), "createAt": 1}
        )
    )
    await asyncio.sleep(0.05)
    resp = await client.get("/live")
    assert resp.status == 200 and not slow.done()
    (await slow).release()


def test_handlers_are_registered_without_head(gateway, queries, registry):
    app = create_app(
        commands=gateway, queries=queries, settings=HttpSettings(metrics_registry=registry)
    )
    assert all(r.method in ("GET", "POST") for r in app.router.routes())
    assert isinstance(app, web.Application)
