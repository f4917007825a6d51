"""DynamoDBJournal's failure handling, without a server: a scripted fake SDK client under the
journal's client (`RetryingClient` over `SdkTransport`) raises the errors botocore raises
(ClientError with DynamoDB's codes, connection errors), and one test runs both real transports
(the lean HTTP client and aiobotocore) against a loopback HTTP server that throttles, to prove
botocore's own retries are off and the journal client's bounded backoff is what runs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

from tests.unit.journal.fake_dynamodb import FAST, SECRET, client_error, ev, make_journal
from threadweaver.adapters.journal.dynamodb import DynamoDBJournal, DynamoDBSettings
from threadweaver.adapters.journal.dynamodb.client import RetryPolicy, connect
from threadweaver.application.ports import ConcurrencyConflict, JournalError, JournalUnavailable

# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
    ],
)
async def test_throttling_and_server_errors_are_retried(code):
    journal, fake = make_journal()
    fake.faults["put_item"] = [client_error(code, status=500 if "Internal" in code else 400)] * 3
    stored = await journal.append("thread-a", 0, [ev()])
    assert stored[0].seq == 1
    assert fake.calls["put_item"] == 4
    assert journal.retries == 3


async def test_connection_errors_are_retried():
    journal, fake = make_journal()
    fake.faults["query"] = [EndpointConnectionError(endpoint_url="http://127.0.0.1:9")] * 2
    assert await journal.highest_seq("thread-a") == 0
    assert fake.calls["query"] == 3


async def test_retries_are_bounded_then_unavailable():
    journal, fake = make_journal()
    fake.faults["put_item"] = [client_error("ThrottlingException")] * 50
    with pytest.raises(JournalUnavailable) as info:
        await journal.append("thread-a", 0, [ev()])
    assert fake.calls["put_item"] == FAST.max_attempts
    assert "ThrottlingException" in str(info.value)
    assert isinstance(info.value, JournalError)


async def test_unreachable_endpoint_becomes_unavailable():
    journal, fake = make_journal()
    fake.faults["get_item"] = [EndpointConnectionError(endpoint_url="http://127.0.0.1:9")] * 50
    with pytest.raises(JournalUnavailable, match="5 attempts"):
        await journal.load_snapshot("thread-a")


async def test_missing_table_is_a_clear_error_without_retries():
    journal, fake = make_journal()
    fake.faults["query"] = [
        client_error("ResourceNotFoundException", "Query", message="Requested resource not found")
    ]
    with pytest.raises(JournalError) as info:
        await journal.read("thread-a")
    assert not isinstance(info.value, JournalUnavailable)
    assert "unit-journal does not exist" in str(info.value)
    assert "threadweaver create-tables" in str(info.value)
    assert fake.calls["query"] == 1


@pytest.mark.parametrize(
    "code",
    [
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "AccessDeniedException",
        "ExpiredTokenException",
    ],
)
async def test_rejected_credentials_are_a_clear_error(code):
    journal, fake = make_journal()
    fake.faults["put_item"] = [client_error(code, message="The security token is invalid")]
    with pytest.raises(JournalError) as info:
        await journal.append("thread-a", 0, [ev()])
    text = str(info.value)
    assert code in text and "credentials" in text
    assert SECRET not in text and "AKIDUNIT" not in text
    assert fake.calls["put_item"] == 1


async def test_validation_errors_are_not_retried():
    journal, fake = make_journal()
    fake.faults["put_item"] = [
        client_error("ValidationException", message="Item size has exceeded the maximum")
    ]
    with pytest.raises(JournalError, match="Item size"):
        await journal.append("thread-a", 0, [ev()])
    assert fake.calls["put_item"] == 1


async def test_lost_response_of_our_own_write_is_not_a_conflict():
    journal, fake = make_journal()
    fake.faults["put_item"] = [("after", ConnectionClosedError(endpoint_url="http://x"))]
    stored = await journal.append("thread-a", 0, [ev(1)], writer="me")
    assert stored[0].seq == 1
    assert len(fake.items) == 1 and fake.calls["put_item"] == 2


async def test_lost_response_and_someone_else_won_is_a_conflict():
    journal, fake = make_journal()
    other = {
        "pid": {"S": "thread-a"},
        "seq": {"N": "1"},
        "shard": {"N": "0"},
        "ts": {"N": "5"},
        "type": {"S": "X"},
        "payload": {"S": "{}"},
    }

    def lost_and_other_wins() -> None:
        fake.items[("thread-a", 1)] = other

    fake.faults["put_item"] = [ConnectionClosedError(endpoint_url="http://x")]
    real_put = fake.put_item

    async def put_item(**kw: Any) -> Any:
        if fake.calls.get("put_item", 0) == 0:
            lost_and_other_wins()
        return await real_put(**kw)

    fake.put_item = put_item
    with pytest.raises(ConcurrencyConflict) as info:
        await journal.append("thread-a", 0, [ev(1)])
    assert info.value.seq == 1
    assert fake.items[("thread-a", 1)] is other


async def test_plain_conflict_is_not_retried():
    journal, fake = make_journal()
    await journal.append("thread-a", 0, [ev()])
    other, _ = make_journal(fake=fake)  # a writer that has not seen seq 1: it must try the put
    with pytest.raises(ConcurrencyConflict):
        await other.append("thread-a", 0, [ev()])
    assert fake.calls["put_item"] == 2 and other.retries == 0


async def test_transaction_conflict_names_the_first_existing_seq():
    journal, fake = make_journal()
    await journal.append("thread-a", 0, [ev(1), ev(2)])
    await journal.append("thread-a", 2, [ev(3)])
    with pytest.raises(ConcurrencyConflict) as info:
        await journal.append("thread-a", 1, [ev(9), ev(9), ev(9)])  # seqs 2..4: 2, 3 exist
    assert info.value.seq == 2
    assert sorted(fake.items) == [("thread-a", 1), ("thread-a", 2), ("thread-a", 3)]


async def test_cancelled_transaction_reasons_parsed_from_message_too():
    journal, fake = make_journal()
    fake.faults["transact_write_items"] = [
        client_error(
            "TransactionCanceledException",
            "TransactWriteItems",
            message="Transaction cancelled, please refer cancellation reasons for specific reasons "
            "[None, ConditionalCheckFailed]",
        )
    ]
    with pytest.raises(ConcurrencyConflict) as info:
        await journal.append("thread-b", 4, [ev(), ev()])
    assert info.value.seq == 6


async def test_transaction_contention_is_retried_with_the_same_token():
    journal, fake = make_journal()
    contention = client_error(
        "TransactionCanceledException",
        "TransactWriteItems",
        CancellationReasons=[{"Code": "TransactionConflict"}, {"Code": "None"}],
    )
    fake.faults["transact_write_items"] = [
        contention,
        client_error("ThrottlingException"),
        ("after", ConnectionClosedError(endpoint_url="x")),
    ]
    stored = await journal.append("thread-c", 0, [ev(1), ev(2)])
    assert [e.seq for e in stored] == [1, 2]
    assert fake.calls["transact_write_items"] == 4
    assert len(fake.seen_tokens) == 4 and len(set(fake.seen_tokens)) == 1  # one token: idempotent
    assert len(fake.tokens) == 1


async def test_batch_item_mode_prechecks_and_refuses_gaps():
    journal, fake = make_journal(transactions=False)
    await journal.append("thread-d", 0, [ev(1), ev(2), ev(3)])
    assert list(fake.items) == [("thread-d", 1)]  # one batch item
    assert fake.items[("thread-d", 1)]["last_seq"] == {"N": "3"}
    with pytest.raises(ConcurrencyConflict) as info:
        await journal.append("thread-d", 1, [ev()])  # seq 2 is inside the batch
    assert info.value.seq == 2
    with pytest.raises(JournalError, match="gap"):
        await journal.append("thread-d", 5, [ev()])
    assert [e.seq for e in await journal.append("thread-d", 3, [ev(4)])] == [4]
    assert "transact_write_items" not in fake.calls


async def test_offsets_of_one_writer_strictly_increase():
    journal, _fake = make_journal()
    offsets = []
    for i in range(50):
        stored = await journal.append(f"thread-{i % 3}", i // 3, [ev(i)])
        offsets.append(stored[0].offset)
    assert offsets == sorted(set(offsets))


async def test_too_many_events_in_one_append():
    journal, _ = make_journal()
    with pytest.raises(JournalError, match="at most 100"):
        await journal.append("thread-e", 0, [ev(i) for i in range(101)])


async def test_an_append_goes_on_when_its_awaiter_is_cancelled():
    journal, fake = make_journal()
    gate = asyncio.Event()
    real_put = fake.put_item

    async def slow_put(**kw: Any) -> Any:
        await gate.wait()
        return await real_put(**kw)

    fake.put_item = slow_put

    async def command() -> Any:
        return await journal.append_nowait("thread-a", 0, [ev(1)], writer="me")

    task = asyncio.ensure_future(command())
    await asyncio.sleep(0)
    task.cancel()  # the caller gives up (time-out) while the put is in flight
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not fake.items
    gate.set()
    await journal.close()  # waits for the append in flight
    assert list(fake.items) == [("thread-a", 1)]


def test_backoff_is_jittered_and_capped():
    policy = RetryPolicy(max_attempts=10, base_delay=0.1, max_delay=1.0)
    for attempt in range(10):
        for _ in range(20):
            assert 0.0 <= policy.delay(attempt) <= min(1.0, 0.1 * 2**attempt)


# ---------------------------------------------------------------------------------------------
# a real client against a throttling HTTP server on the loopback
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["http", "sdk"])
async def test_real_client_retries_throttling_with_own_policy_only(transport):
    from aiohttp import web

    hits: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(request.headers.get("X-Amz-Target", ""))
        body = {
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput for the table was exceeded.",
        }
        return web.Response(
            status=400, body=json.dumps(body).encode(), content_type="application/x-amz-json-1.0"
        )

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    journal = DynamoDBJournal(
        DynamoDBSettings(endpoint_url=f"http://127.0.0.1:{port}", table_prefix="unit"),
        shards=8,
        transactions=True,
        retry=FAST,
    )
    try:
        async with connect(
            journal.settings, retry=FAST, stats=journal.client_stats, transport=transport
        ) as client:
            journal._client = client
            with pytest.raises(JournalUnavailable, match="ProvisionedThroughputExceeded"):
                await journal.highest_seq("thread-a")
    finally:
        await runner.cleanup()
    assert hits == ["DynamoDB_20120810.Query"] * FAST.max_attempts


async def test_real_client_against_a_closed_port_is_unavailable():
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = DynamoDBSettings(endpoint_url=f"http://127.0.0.1:{port}", table_prefix="unit")
    journal = DynamoDBJournal(settings, shards=8, retry=FAST)
    with pytest.raises(JournalUnavailable):
        await asyncio.wait_for(journal.start(), 30)
    await journal.close()
