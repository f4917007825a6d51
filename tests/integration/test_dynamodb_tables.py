"""Provisioning against a real DynamoDB API server (dynalite): create_tables / describe_tables /
delete_tables, as `threadweaver create-tables` and the operator call them."""

from __future__ import annotations

import pytest

from threadweaver.adapters.journal.dynamodb import SHARD_INDEX, DynamoDBSettings, open_client
from threadweaver.adapters.journal.dynamodb.tables import (
    create_tables,
    delete_tables,
    describe_tables,
)
from threadweaver.application.ports import JournalError


async def test_create_is_idempotent_and_describe_shows_the_layout(dynamodb_base_settings):
    s = dynamodb_base_settings
    try:
        assert await describe_tables(s) == {s.journal_table: None, s.snapshot_table: None}
        assert await create_tables(s) == [s.journal_table, s.snapshot_table]
        assert await create_tables(s) == [s.journal_table, s.snapshot_table]  # again: fine
        desc = await describe_tables(s)
        journal, snapshot = desc[s.journal_table], desc[s.snapshot_table]
        assert journal["status"] == "ACTIVE" and journal["active"]
        assert journal["indexes"] == {SHARD_INDEX: "ACTIVE"}
        assert journal["problems"] == [] and snapshot["problems"] == []
        assert journal["billing_mode"] == "PAY_PER_REQUEST"
        async with open_client(s) as client:
            table = (await client.describe_table(TableName=s.journal_table))["Table"]
        assert [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]] == [
            ("pid", "HASH"),
            ("seq", "RANGE"),
        ]
        (index,) = table["GlobalSecondaryIndexes"]
        assert [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]] == [
            ("shard", "HASH"),
            ("ts", "RANGE"),
        ]
        assert index["Projection"]["ProjectionType"] == "ALL"
        types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
        assert types == {"pid": "S", "seq": "N", "shard": "N", "ts": "N"}
    finally:
        deleted = await delete_tables(s)
    assert sorted(deleted) == sorted(s.tables)
    assert await describe_tables(s) == {s.journal_table: None, s.snapshot_table: None}
    assert await delete_tables(s) == []  # nothing left: fine


async def test_provisioned_capacity(dynamodb_base_settings):
    s = dynamodb_base_settings
    try:
        await create_tables(s, billing_mode="PROVISIONED", read_capacity=7, write_capacity=5)
        desc = await describe_tables(s)
        assert (
            desc[s.journal_table]["read_capacity"],
            desc[s.journal_table]["write_capacity"],
        ) == (7, 5)
        async with open_client(s) as client:
            table = (await client.describe_table(TableName=s.journal_table))["Table"]
        gsi = table["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"]
        assert (gsi["ReadCapacityUnits"], gsi["WriteCapacityUnits"]) == (7, 5)
    finally:
        await delete_tables(s)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"billing_mode": "ON_DEMAND"}, "billing mode"),
        ({"billing_mode": "PROVISIONED"}, "needs read and write capacity"),
        ({"billing_mode": "PROVISIONED", "read_capacity": 5, "write_capacity": 0}, "capacity"),
        ({"read_capacity": 5}, "only apply to billing mode PROVISIONED"),
    ],
)
async def test_bad_arguments(dynamodb_base_settings, kwargs, message):
    with pytest.raises(ValueError, match=message):
        await create_tables(dynamodb_base_settings, **kwargs)


async def test_existing_table_with_another_layout_is_refused(dynamodb_base_settings):
    s = dynamodb_base_settings
    async with open_client(s) as client:
        await client.create_table(
            TableName=s.journal_table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        )
    try:
        with pytest.raises(JournalError) as info:
            await create_tables(s)
        text = str(info.value)
        assert s.journal_table in text and "key schema" in text and "shard_ts is missing" in text
        assert (await describe_tables(s))[s.journal_table]["problems"]
    finally:
        await delete_tables(s)


async def test_unreachable_endpoint_is_a_journal_error(unused_tcp_port):
    s = DynamoDBSettings(endpoint_url=f"http://127.0.0.1:{unused_tcp_port}", table_prefix="none")
    with pytest.raises(JournalError, match="cannot reach DynamoDB"):
        await create_tables(s, timeout=5)
