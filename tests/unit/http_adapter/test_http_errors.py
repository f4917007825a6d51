"""Every failure answers JSON `{"error_messages": [...]}`: body problems, routing, domain
refusals (upstream's messages), unavailability (503 + Retry-After), crashes (500)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

from threadweaver.adapters.http import HttpSettings
from threadweaver.application.gateway import NotOwner, ShardUnavailable
from threadweaver.application.ports import ConcurrencyConflict, JournalError, JournalUnavailable

T = "01BX5ZZKBKACTAV9WEVGEMMVS0"
A = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
DESTROY = f"/v1/threads/{T}/destroy"


async def error(resp, status):
    assert resp.status == status, await resp.text()
    assert resp.headers["Content-Type"] == "application/json"
    data = await resp.json()
    assert set(data) == {"error_messages"} and data["error_messages"]
    return data["error_messages"]


# --- bodies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"{", b"nul", b'{"a": }', b"\xff\xfe", b"[1,"])
async def test_malformed_json(client, gateway, raw):
    resp = await client.post(DESTROY, data=raw, headers={"Content-Type": "application/json"})
    (message,) = await error(resp, 400)
    assert message.startswith("The request content was malformed")
    assert gateway.commands == []


async def test_empty_body(client):
    resp = await client.post(DESTROY, data=b"", headers={"Content-Type": "application/json"})
    assert await error(resp, 400) == ["The request body is empty: a JSON object is expected."]


@pytest.mark.parametrize("raw", [b"[]", b"1", b'"x"', b"null", b"true"])
async def test_non_object_body(client, raw):
    resp = await client.post(DESTROY, data=raw, headers={"Content-Type": "application/json"})
    assert await error(resp, 400) == ["The request body must be a JSON object."]


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
        "application/jsonx",
        "multipart/form-data",
    ],
)
async def test_wrong_content_type_is_415(client, content_type):
    resp = await client.post(
        DESTROY, data=b'{"accountId": "x"}', headers={"Content-Type": content_type}
    )
    (message,) = await error(resp, 415)
    assert "application/json" in message


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        'Application/JSON;Charset="UTF-8"',
        "application/json; charset=utf8; foo=bar",
    ],
)
async def test_json_content_types_are_accepted(api, fakes, content_type):
    admin = fakes.ulid()
    thread_id = await api.create(admin)
    resp = await api.client.post(
        f"/v1/threads/{thread_id}/member-ids/join",
        data=f'{{"accountId":"{admin}","accountIds":[],"createAt":1}}',
        headers={"Content-Type": content_type},
    )
    assert resp.status == 200


async def test_missing_content_type_is_accepted_when_body_is_json(api, fakes):
    admin = fakes.ulid()
    thread_id = await api.create(admin)
    body = f'{{"accountId":"{admin}","createAt":1}}'.encode()
    # aiohttp's client adds application/octet-stream to bytes bodies unless told not to
    resp = await api.client.post(
        f"/v1/threads/{thread_id}/destroy", data=body, skip_auto_headers=["Content-Type"]
    )
    assert resp.status == 200, await resp.text()
    resp = await api.client.post(
        f"/v1/threads/{thread_id}/destroy", data=b"not json", skip_auto_headers=["Content-Type"]
    )
    (message,) = await error(resp, 400)
    assert message.startswith("The request content was malformed")


async def test_body_over_limit_is_413(make_client, registry):
    client = await make_client(settings=HttpSettings(max_body_bytes=100, metrics_registry=registry))
    body = b'{"accountId": "' + b"x" * 200 + b'"}'
    resp = await client.post(DESTROY, data=body, headers={"Content-Type": "application/json"})
    assert await error(resp, 413) == [
        "The request content was too large: at most 100 bytes are allowed."
    ]

    async def chunks():  # no Content-Length: aiohttp's client_max_size
        for _ in range(4):
            yield b" " * 60

    resp = await client.post(DESTROY, data=chunks(), headers={"Content-Type": "application/json"})
    assert await error(resp, 413) == [
        "The request content was too large: at most 100 bytes are allowed."
    ]


async def test_default_body_limit_is_one_mebibyte(client):
    body = b'{"pad": "' + b"x" * (1 << 20) + b'"}'
    resp = await client.post(DESTROY, data=body, headers={"Content-Type": "application/json"})
    await error(resp, 413)


# --- routing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/nope", "/v1", "/v1/threads/", f"/v1/threads/{T}/nope", "/v2/threads"]
)
async def test_unknown_path_is_404(client, path):
    assert await error(await client.get(path), 404) == [
        "The requested resource could not be found."
    ]


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("GET", DESTROY, "OPTIONS, POST"),
        ("DELETE", f"/v1/threads/{T}", "GET, OPTIONS"),
        ("PUT", "/v1/threads/create", "OPTIONS, POST"),
        ("GET", "/v1/threads/create", "OPTIONS, POST"),
        ("POST", "/live", "GET, OPTIONS"),
    ],
)
async def test_wrong_method_is_405_with_allow(client, method, path, allow):
    resp = await client.request(method, path)
    assert await error(resp, 405) == [f"HTTP method not allowed, supported methods: {allow}"]
    assert resp.headers["Allow"] == allow


# --- domain refusals --------------------------------------------------------------------------


async def test_forbidden_is_403_with_upstream_messages(api, fakes):
    admin, member, stranger = fakes.ulid(), fakes.ulid(), fakes.ulid()
    thread_id = await api.create(admin, [member])
    for route, body in [
        ("destroy", {}),
        ("administrator-ids/join", {"accountIds": [stranger]}),
        ("member-ids/join", {"accountIds": [stranger]}),
    ]:
        resp = await api.client.post(
            f"/v1/threads/{thread_id}/{route}", json={"accountId": member, "createAt": 1, **body}
        )
        assert await error(resp, 403) == ["The senderId is not the administrator"]
    resp = await api.client.post(
        f"/v1/threads/{thread_id}/messages/add",
        json={
            "accountId": stranger,
            "createAt": 1,
            "messages": [{"toAccountIds": [], "text": "hi"}],
        },
    )
    assert await error(resp, 403) == ["The senderId is not the member"]
    (mine,) = await api.add(thread_id, member, "mine")
    resp = await api.client.post(
        f"/v1/threads/{thread_id}/messages/remove",
        json={"accountId": admin, "messageIds": [mine], "createAt": 1},
    )
    assert await error(resp, 403) == ["The removerId is not the senderId"]
    resp = await api.client.post(
        f"/v1/threads/{thread_id}/messages/remove",
        json={"accountId": stranger, "messageIds": [], "createAt": 1},
    )
    assert await error(resp, 403) == ["The removerId is not the member"]


async def test_missing_and_destroyed_threads_are_404(api, fakes):
    admin = fakes.ulid()
    resp = await api.client.post(
        f"/v1/threads/{fakes.ulid()}/destroy", json={"accountId": admin, "createAt": 1}
    )
    assert await error(resp, 404) == ["thread is not found"]
    thread_id = await api.create(admin)
    await api.post(f"/v1/threads/{thread_id}/destroy", {"accountId": admin, "createAt": 2})
    resp = await api.client.post(
        f"/v1/threads/{thread_id}/member-ids/join",
        json={"accountId": admin, "accountIds": [], "createAt": 3},
    )
    assert await error(resp, 404) == ["already removed the thread"]


async def test_conflicts_are_409(make_client, fakes, gateway, queries, registry):
    client = await make_client(
        settings=HttpSettings(id_generator=lambda: T, metrics_registry=registry)
    )
    api = fakes.Api(client, gateway, queries)
    admin = fakes.ulid()
    assert await api.create(admin) == T
    resp = await client.post(
        "/v1/threads/create",
        json={
            "accountId": admin,
            "title": "t",
            "administratorIds": [admin],
            "memberIds": [],
            "createAt": 1,
        },
    )
    assert await error(resp, 409) == ["Already created"]
    resp = await client.post(
        f"/v1/threads/{T}/administrator-ids/leave",
        json={"accountId": admin, "accountIds": [admin], "createAt": 1},
    )
    assert await error(resp, 409) == ["Administrators can not be empty."]


# --- unavailability and crashes ----------------------------------------------------------------


@pytest.mark.parametrize(
    "retry_after, header",
    [(2.2, "3"), (1.0, "1"), (0.0, "0"), (0.01, "1"), (float("inf"), "1"), (float("nan"), "1")],
)
async def test_shard_unavailable_is_503_with_retry_after(client, gateway, retry_after, header):
    gateway.fail = ShardUnavailable("shard 7 is being handed off", retry_after=retry_after)
    resp = await client.post(DESTROY, json={"accountId": A, "createAt": 1})
    assert await error(resp, 503) == ["shard 7 is being handed off"]
    assert resp.headers["Retry-After"] == header


@pytest.mark.parametrize(
    "exc, retry",
    [
        (JournalUnavailable("throttled"), "1"),
        (JournalError("misconfigured"), None),
        (ConcurrencyConflict("thread-x", 3), None),
    ],
)
async def test_journal_errors_are_503(client, gateway, exc, retry):
    gateway.fail = exc
    resp = await client.post(DESTROY, json={"accountId": A, "createAt": 1})
    (message,) = await error(resp, 503)
    assert "journal" in message
    assert resp.headers.get("Retry-After") == retry


async def test_exploding_gateway_is_500_json_and_logged(client, gateway, caplog):
    gateway.fail = RuntimeError("boom")
    with caplog.at_level(logging.ERROR, logger="threadweaver.http"):
        resp = await client.post(DESTROY, json={"accountId": A, "createAt": 1})
    assert await error(resp, 500) == ["There was an internal server error."]
    record = next(r for r in caplog.records if r.name == "threadweaver.http")
    assert record.exc_info and "boom" in str(record.exc_info[1])


async def test_exploding_query_is_500_json(client, queries):
    queries.fail = KeyError("x")
    resp = await client.get(f"/v1/threads/{T}", params={"account_id": A})
    assert await error(resp, 500) == ["There was an internal server error."]


async def test_command_time_out_is_503(make_client, gateway, registry):
    client = await make_client(
        settings=HttpSettings(request_timeout_seconds=0.05, metrics_registry=registry)
    )
    gateway.delay = 1.0
    resp = await client.post(DESTROY, json={"accountId": A, "createAt": 1})
    (message,) = await error(resp, 503)
    assert "did not complete within 0.05 seconds" in message


async def test_query_time_out_is_503(make_client, queries, registry):
    client = await make_client(
        settings=HttpSettings(request_timeout_seconds=0.05, metrics_registry=registry)
    )
    queries.delay = 1.0
    resp = await client.get("/v1/threads", params={"account_id": A})
    await error(resp, 503)


async def test_timeout_error_raised_by_the_gateway_is_not_a_time_out(client, gateway):
    gateway.fail = TimeoutError("socket")
    resp = await client.post(DESTROY, json={"accountId": A, "createAt": 1})
    await error(resp, 500)


# --- NotOwner and the forwarding hook ------------------------------------------------------------


async def test_not_owner_reaches_a_forwarding_middleware(make_client, gateway):
    seen = []

    @web.middleware
    async def forward(request, handler):
        try:
            return await handler(request)
        except NotOwner as exc:
            seen.append((exc.owner, await request.read()))  # the body is still readable
            return web.json_response({"forwarded_to": exc.address})

    client = await make_client(middlewares=[forward])
    gateway.fail = NotOwner("pod-1", "10.0.0.1:8080")
    resp = await client.post(DESTROY, json={"accountId": A, "createAt": 1})
    assert resp.status == 200 and await resp.json() == {"forwarded_to": "10.0.0.1:8080"}
    assert seen[0][0] == "pod-1" and b'"accountId"' in seen[0][1]


async def test_errors_of_caller_middlewares_are_json(make_client):
    @web.middleware
    async def broken(request, handler):
        raise ValueError("broken forwarder")

    client = await make_client(middlewares=[broken])
    assert await error(await client.get("/live"), 500) == ["There was an internal server error."]


async def test_not_owner_nobody_forwarded_is_503(client, gateway):
    gateway.fail = NotOwner("pod-1", None)
    resp = await client.post(DESTROY, json={"accountId": A, "createAt": 1})
    (message,) = await error(resp, 503)
    assert "pod-1" in message and resp.headers["Retry-After"] == "1"


# --- CORS ---------------------------------------------------------------------------------------


async def test_cors_preflight(client):
    resp = await client.options(
        DESTROY,
        headers={
            "Origin": "https://example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-custom",
        },
    )
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Access-Control-Allow-Methods"] == "OPTIONS, POST"
    assert resp.headers["Access-Control-Allow-Headers"] == "content-type, x-custom"
    assert resp.headers["Access-Control-Max-Age"] == "1800"
    resp = await client.options("/v1/threads", headers={"Origin": "https://x"})
    assert resp.status == 204 and resp.headers["Allow"] == "GET, OPTIONS"


async def test_cors_preflight_on_unknown_path_is_404(client):
    resp = await client.options(
        "/nope", headers={"Origin": "https://x", "Access-Control-Request-Method": "GET"}
    )
    await error(resp, 404)


async def test_cors_headers_on_answers_and_errors(api, fakes):
    admin = fakes.ulid()
    thread_id = await api.create(admin)
    resp = await api.client.get(
        f"/v1/threads/{thread_id}",
        params={"account_id": admin},
        headers={"Origin": "https://example.com"},
    )
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await api.client.post(
        DESTROY,
        data=b"{",
        headers={"Origin": "https://example.com", "Content-Type": "application/json"},
    )
    assert resp.status == 400 and resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await api.client.get("/live")
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_request_is_logged_at_debug(client, caplog):
    with caplog.at_level(logging.DEBUG, logger="threadweaver.http.access"):
        await client.get("/live?x=1")
        await asyncio.sleep(0)
    assert any("GET /live?x=1 -> 200" in r.getMessage() for r in caplog.records)
