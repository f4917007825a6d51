"""The TransactWriteItems emulator of tests/support/transaction_emulator.py, against dynalite:
it must answer the way DynamoDB does, or the journal's transactional path is tested against a
fiction. All or nothing, a condition checked on every item, the cancellation reasons in item
order, a repeated ClientRequestToken applied once, everything else passed through."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.transaction_emulator import TransactionEmulator, running_emulator
from threadweaver.adapters.journal.dynamodb import open_client


@pytest.fixture
async def emulated(dynamodb_settings) -> AsyncIterator[tuple[Any, TransactionEmulator, Any]]:
    """(an SDK client reaching dynalite through the emulator, the emulator, the settings)."""
    async with contextlib.AsyncExitStack() as stack:
        emulator = await stack.enter_async_context(running_emulator(dynamodb_settings.endpoint_url))
        settings = replace(dynamodb_settings, endpoint_url=emulator.url)
        client = await stack.enter_async_context(open_client(settings))
        yield client, emulator, settings


def key(pid: str, seq: int) -> dict[str, Any]:
    return {"pid": {"S": pid}, "seq": {"N": str(seq)}}


def put(table: str, pid: str, seq: int, condition: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "TableName": table,
        "Item": {**key(pid, seq), "payload": {"S": f"{pid}#{seq}"}},
    }
    if condition:
        spec["ConditionExpression"] = "attribute_not_exists(pid)"
    return {"Put": spec}


async def items(client: Any, table: str, pid: str) -> list[int]:
    resp = await client.query(
        TableName=table,
        KeyConditionExpression="pid = :p",
        ExpressionAttributeValues={":p": {"S": pid}},
        ConsistentRead=True,
    )
    return [int(i["seq"]["N"]) for i in resp["Items"]]


def token() -> str:
    return str(uuid.uuid4())


async def test_a_transaction_writes_every_item(emulated):
    client, emulator, settings = emulated
    table = settings.journal_table
    await client.transact_write_items(
        TransactItems=[put(table, "p", 1), put(table, "p", 2), put(table, "q", 1)],
        ClientRequestToken=token(),
    )
    assert await items(client, table, "p") == [1, 2]
    assert await items(client, table, "q") == [1]
    assert emulator.transactions == 1


async def test_one_failed_condition_cancels_all_with_reasons_in_item_order(emulated):
    client, emulator, settings = emulated
    table = settings.journal_table
    await client.put_item(TableName=table, Item={**key("p", 2), "payload": {"S": "there"}})
    with pytest.raises(ClientError) as info:
        await client.transact_write_items(
            TransactItems=[put(table, "p", 1), put(table, "p", 2), put(table, "p", 3)],
            ClientRequestToken=token(),
        )
    error = info.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in error["CancellationReasons"]] == [
        "None",
        "ConditionalCheckFailed",
        "None",
    ]
    assert "[None, ConditionalCheckFailed, None]" in error["Error"]["Message"]
    assert await items(client, table, "p") == [2]  # nothing of the transaction
    assert emulator.transactions == 0


async def test_a_repeated_token_is_applied_once(emulated):
    client, emulator, settings = emulated
    table = settings.journal_table
    same = token()
    request = dict(TransactItems=[put(table, "p", 1)], ClientRequestToken=same)
    await client.transact_write_items(**request)
    await client.delete_item(TableName=table, Key=key("p", 1))
    await client.transact_write_items(**request)  # a retry: answered, not applied again
    assert await items(client, table, "p") == []
    assert emulator.transactions == 1
    await client.transact_write_items(
        TransactItems=[put(table, "p", 1)], ClientRequestToken=token()
    )
    assert await items(client, table, "p") == [1]


async def test_unconditional_puts_deletes_and_updates(emulated):
    client, _, settings = emulated
    table = settings.journal_table
    await client.put_item(TableName=table, Item={**key("p", 1), "payload": {"S": "old"}})
    await client.put_item(TableName=table, Item={**key("p", 2), "payload": {"S": "gone"}})
    await client.transact_write_items(
        TransactItems=[
            put(table, "p", 1, condition=False),  # overwrites
            {"Delete": {"TableName": table, "Key": key("p", 2)}},
            {
                "Update": {
                    "TableName": table,
                    "Key": key("p", 3),
                    "UpdateExpression": "SET payload = :v",
                    "ExpressionAttributeValues": {":v": {"S": "updated"}},
                }
            },
        ],
        ClientRequestToken=token(),
    )
    got = {
        seq: (await client.get_item(TableName=table, Key=key("p", seq), ConsistentRead=True)).get(
            "Item"
        )
        for seq in (1, 2, 3)
    }
    assert got[1]["payload"] == {"S": "p#1"}
    assert got[2] is None
    assert got[3]["payload"] == {"S": "updated"}


async def test_unsupported_conditions_are_refused(emulated):
    client, emulator, settings = emulated
    table = settings.journal_table
    item = put(table, "p", 1)
    item["Put"]["ConditionExpression"] = "attribute_exists(pid)"
    with pytest.raises(ClientError) as info:
        await client.transact_write_items(TransactItems=[item], ClientRequestToken=token())
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert await items(client, table, "p") == []
    assert emulator.transactions == 0


async def test_other_operations_pass_through(emulated):
    client, _, settings = emulated
    table = settings.journal_table
    with pytest.raises(ClientError) as info:  # dynalite's own conditional check
        await client.put_item(
            TableName=table,
            Item={**key("p", 1), "payload": {"S": "x"}},
            ConditionExpression="attribute_exists(pid)",
        )
    assert info.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    desc = await client.describe_table(TableName=table)
    assert desc["Table"]["TableName"] == table
