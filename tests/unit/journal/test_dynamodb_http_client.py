"""The journal's lean DynamoDB client: SigV4 signatures equal to botocore's, and the HTTP
transport under the retrying client against a scripted loopback HTTP server (answers, DynamoDB's
error bodies, cancelled transactions, throttling, 5xx pages, corrupt answers, dropped
connections), errors that name the operation and the table and never a secret."""

from __future__ import annotations

import datetime
import json
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from threadweaver.adapters.journal.dynamodb import DynamoDBJournal, DynamoDBSettings
from threadweaver.adapters.journal.dynamodb.client import (
    Attempt,
    ClientStats,
    Refused,
    RetryingClient,
    RetryPolicy,
)
from threadweaver.adapters.journal.dynamodb.credentials import (
    ChainCredentials,
    StaticCredentials,
    credential_source,
)
from threadweaver.adapters.journal.dynamodb.http_transport import HttpTransport
from threadweaver.adapters.journal.dynamodb.sigv4 import Credentials, Signer
from threadweaver.application.ports import ConcurrencyConflict, JournalError, JournalUnavailable

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
FAST = RetryPolicy(max_attempts=4, base_delay=0.0001, max_delay=0.001)
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def botocore_signature(host: str, region: str, op: str, body: bytes, creds: Credentials) -> str:
    request = AWSRequest(
        method="POST",
        url=f"http://{host}/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"DynamoDB_20120810.{op}",
            "Host": host,
        },
    )
    auth = SigV4Auth(
        BotoCredentials(creds.access_key, creds.secret_key, creds.token), "dynamodb", region
    )
    with mock.patch(
        "botocore.auth.get_current_datetime", return_value=datetime.datetime(2026, 1, 1)
    ):
        auth.add_auth(request)
    return request.headers["Authorization"]


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//session+token="])
@pytest.mark.parametrize("host", ["dynamodb.eu-west-1.amazonaws.com", "127.0.0.1:8000"])
def test_signature_equals_botocores(token, host):
    creds = Credentials(KEY_ID, SECRET, token)
    body = b'{"TableName":"t-journal","Item":{"pid":{"S":"thread-1"},"seq":{"N":"1"}}}'
    ours = Signer(host, "eu-west-1").headers("PutItem", body, creds, now=NOW)
    assert ours["X-Amz-Date"] == "20260101T000000Z"
    assert ours["Authorization"] == botocore_signature(host, "eu-west-1", "PutItem", body, creds)
    assert (ours.get("X-Amz-Security-Token") == token) or token is None


def test_the_signing_key_follows_the_secret_and_the_day():
    signer = Signer("h", "us-east-1")
    body = b"{}"
    a = signer.headers("Query", body, Credentials("K", "s1"), now=NOW)["Authorization"]
    b = signer.headers("Query", body, Credentials("K", "s2"), now=NOW)["Authorization"]
    c = signer.headers("Query", body, Credentials("K", "s1"), now=NOW + 86_400)["Authorization"]
    assert len({a, b, c}) == 3
    assert a == signer.headers("Query", body, Credentials("K", "s1"), now=NOW)["Authorization"]


# ---------------------------------------------------------------------------------------------
# the transport against a loopback server
# ---------------------------------------------------------------------------------------------

Handler = Callable[[str, dict[str, Any]], web.StreamResponse | None]  # None: drop it


def answer(status: int, payload: Any, *, crc: int | None = None) -> web.Response:
    body = json.dumps(payload).encode()
    headers = {"x-amz-crc32": str(zlib.crc32(body) if crc is None else crc)}
    return web.Response(
        status=status, body=body, headers=headers, content_type="application/x-amz-json-1.0"
    )


def error(code: str, message: str = "boom", status: int = 400, **extra: Any) -> web.Response:
    return answer(
        status, {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message, **extra}
    )


class Script:
    """The loopback server's behaviour: `handler(op, body)`; every request is recorded."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.handler: Handler = lambda op, body: answer(200, {})


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Script]]:
    script = Script()

    async def handle(request: web.Request) -> web.StreamResponse:
        op = request.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
        body = json.loads(await request.read() or b"{}")
        script.requests.append((op, body, dict(request.headers)))
        response = script.handler(op, body)
        if response is None:  # drop the connection without an answer
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("dropped by the test server")
        return response

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", script
    await runner.cleanup()


@pytest.fixture
async def client(server) -> AsyncIterator[tuple[RetryingClient, Script]]:
    url, script = server
    settings = DynamoDBSettings(
        endpoint_url=url, table_prefix="unit", access_key_id=KEY_ID, secret_access_key=SECRET
    )
    transport = HttpTransport(settings, credential_source(settings))
    await transport.start()
    yield RetryingClient(transport, settings, FAST, ClientStats()), script
    await transport.close()


async def test_a_call_is_one_signed_post(client):
    c, script = client
    script.handler = lambda op, body: answer(200, {"Items": [{"pid": {"S": "p"}}], "Count": 1})
    got = await c.call("Query", {"TableName": "unit-journal", "Limit": 1, "ConsistentRead": True})
    assert got == {"Items": [{"pid": {"S": "p"}}], "Count": 1}
    ((op, body, headers),) = script.requests
    assert op == "Query" and body == {
        "TableName": "unit-journal",
        "Limit": 1,
        "ConsistentRead": True,
    }
    assert headers["Content-Type"] == "application/x-amz-json-1.0"
    assert headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-target" in headers["Authorization"]


async def test_a_refusal_is_returned_to_the_caller_with_its_reasons(client):
    c, script = client
    script.handler = lambda op, body: error(
        "TransactionCanceledException",
        "Transaction cancelled",
        CancellationReasons=[{"Code": "None"}, {"Code": "ConditionalCheckFailed"}],
    )
    with pytest.raises(Refused) as info:
        await c.call(
            "TransactWriteItems",
            {"TransactItems": []},
            table="unit-journal",
            refusals=("TransactionCanceledException",),
        )
    assert info.value.reasons == ["None", "ConditionalCheckFailed"]
    assert len(script.requests) == 1


async def test_contention_throttling_and_5xx_are_retried_then_succeed(client):
    c, script = client
    answers = [
        error(
            "TransactionCanceledException", CancellationReasons=[{"Code": "TransactionConflict"}]
        ),
        error("ProvisionedThroughputExceededException"),
        web.Response(status=503, text="<html>busy</html>"),
        answer(200, {}),
    ]
    script.handler = lambda op, body: answers.pop(0)
    assert await c.call("TransactWriteItems", {"TransactItems": []}) == {}
    assert len(script.requests) == 4 and c.stats.retries == 3 and c.stats.calls == 4


async def test_retries_are_bounded_and_name_the_operation_and_table(client):
    c, script = client
    script.handler = lambda op, body: error("ThrottlingException", "slow down")
    with pytest.raises(JournalUnavailable) as info:
        await c.call("PutItem", {"TableName": "unit-journal", "Item": {}})
    text = str(info.value)
    assert "PutItem" in text and "unit-journal" in text and "ThrottlingException" in text
    assert len(script.requests) == FAST.max_attempts


async def test_a_corrupt_answer_is_a_lost_answer(client):
    c, script = client
    answers = [answer(200, {"Item": {}}, crc=1), answer(200, {"Item": {"ok": {"BOOL": True}}})]
    script.handler = lambda op, body: answers.pop(0)
    attempt = Attempt()
    got = await c.call("GetItem", {"TableName": "unit-journal"}, attempt=attempt)
    assert got == {"Item": {"ok": {"BOOL": True}}} and attempt.ambiguous


@pytest.mark.parametrize(
    "code, expected",
    [
        ("ResourceNotFoundException", "unit-journal does not exist"),
        ("UnrecognizedClientException", "check the credentials"),
        ("ValidationException", "PutItem failed on unit-journal: ValidationException: bad"),
    ],
)
async def test_errors_name_the_table_and_operation_and_no_secret(client, code, expected):
    c, script = client
    script.handler = lambda op, body: error(code, "bad")
    with pytest.raises(JournalError) as info:
        await c.call("PutItem", {"TableName": "unit-journal", "Item": {}})
    assert expected in str(info.value)
    assert SECRET not in str(info.value) and not isinstance(info.value, JournalUnavailable)
    assert len(script.requests) == 1


async def test_the_journal_on_the_http_client_maps_a_failed_condition_to_a_conflict(server):
    url, script = server
    script.handler = lambda op, body: (
        error("ConditionalCheckFailedException", "The conditional request failed")
        if op == "PutItem"
        else answer(200, {})
    )
    settings = DynamoDBSettings(endpoint_url=url, table_prefix="unit")
    journal = DynamoDBJournal(settings, shards=8, transactions=False, retry=FAST)
    from threadweaver.adapters.journal.dynamodb.client import connect

    async with connect(settings, retry=FAST, stats=journal.client_stats) as c:
        journal._client = c
        from threadweaver.application.ports import NewEvent

        with pytest.raises(ConcurrencyConflict):
            await journal.append("thread-a", 0, [NewEvent("T", {})])
    assert [op for op, _, _ in script.requests] == ["PutItem"]


async def test_a_dropped_connection_is_retried(server):
    url, script = server
    drops = [True, False]

    def handler(op: str, body: dict[str, Any]) -> web.StreamResponse | None:
        return None if drops.pop(0) else answer(200, {"Table": {}})

    script.handler = handler
    settings = DynamoDBSettings(endpoint_url=url, table_prefix="unit")
    transport = HttpTransport(settings, credential_source(settings))
    await transport.start()
    try:
        c = RetryingClient(transport, settings, FAST, ClientStats())
        attempt = Attempt()
        got = await c.call("DescribeTable", {"TableName": "unit-journal"}, attempt=attempt)
        assert got == {"Table": {}} and attempt.ambiguous
    finally:
        await transport.close()
    assert len(script.requests) == 2


# ---------------------------------------------------------------------------------------------
# where the credentials come from
# ---------------------------------------------------------------------------------------------


def test_local_endpoint_gets_static_dummy_keys(monkeypatch):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONFIG_FILE",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    source = credential_source(DynamoDBSettings(endpoint_url="http://127.0.0.1:8000"))
    assert isinstance(source, StaticCredentials)


def test_a_local_endpoint_with_a_web_identity_token_uses_the_chain(monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(tmp_path / "token"))
    source = credential_source(DynamoDBSettings(endpoint_url="http://127.0.0.1:8000"))
    assert isinstance(source, ChainCredentials)


async def test_the_chain_reads_the_environment_once_per_check(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    chain = ChainCredentials(DynamoDBSettings(), check_every=3600)
    first = await chain.get()
    assert first == Credentials(KEY_ID, SECRET, None) and chain.method == "env"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDOTHER")
    assert await chain.get() is first  # not asked again before the check is due


async def test_no_credentials_anywhere_is_a_clear_error(monkeypatch, tmp_path):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    chain = ChainCredentials(DynamoDBSettings())
    with pytest.raises(JournalError, match="no usable AWS credentials"):
        await chain.get()
