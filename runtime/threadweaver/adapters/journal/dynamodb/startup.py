"""What the DynamoDB journal checks when it starts: both tables exist and the journal has the
shard index (tables still being created are waited for, bounded), the meta item records the
shard count (first start) and matches it, and whether the server has TransactWriteItems."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from ....application.ports import JournalError
from . import codec
from .client import DynamoDBClient, Refused
from .settings import DynamoDBSettings
from .tables import SHARD_INDEX

__all__ = ["check_tables", "init_meta"]

log = logging.getLogger(__name__)

_CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"
_TRANSACTION_CANCELED = "TransactionCanceledException"


async def check_tables(
    client: DynamoDBClient, settings: DynamoDBSettings, wait_active: float = 60.0
) -> None:
    """Both tables exist (a clear error otherwise), the journal has the shard index, and
    tables still being created are waited for (bounded)."""
    deadline = time.monotonic() + wait_active
    for name in (settings.journal_table, settings.snapshot_table):
        while True:
            desc = (await client.call("DescribeTable", {"TableName": name}))["Table"]
            if desc.get("TableStatus") != "CREATING" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        if name == settings.journal_table:
            indexes = {i["IndexName"] for i in desc.get("GlobalSecondaryIndexes", [])}
            if SHARD_INDEX not in indexes:
                raise JournalError(
                    f"DynamoDB table {name} has no {SHARD_INDEX} index: it was not created "
                    "by threadweaver (run `threadweaver create-tables` with a new table "
                    "prefix)"
                )


async def init_meta(
    client: DynamoDBClient, settings: DynamoDBSettings, shards: int, transactions: bool | None
) -> bool:
    """Record the shard count (first start), check it, and return whether transactions work
    (`transactions`: None to detect, True to require them, False not to use them)."""
    table = settings.journal_table
    put = {
        "TableName": table,
        "Item": codec.meta_item(shards, time.time_ns() // 1000),
        "ConditionExpression": "attribute_not_exists(pid)",
    }
    if transactions is not False:
        try:
            await client.call(
                "TransactWriteItems",
                {"TransactItems": [{"Put": put}], "ClientRequestToken": str(uuid.uuid4())},
                table=table,
                refusals=(_TRANSACTION_CANCELED, "UnknownOperationException"),
            )
            transactions = True
        except Refused as exc:
            if exc.code == "UnknownOperationException":
                if transactions:
                    raise JournalError(
                        f"DynamoDB at {settings.describe()} does not support TransactWriteItems"
                    ) from None
                log.info(
                    "DynamoDB at %s has no TransactWriteItems: multi-event appends use batch items",
                    settings.describe(),
                )
                transactions = False
            else:  # TransactionCanceledException: the meta item exists already
                transactions = True
    if transactions is False:
        try:
            await client.call("PutItem", put, refusals=(_CONDITIONAL_CHECK_FAILED,))
        except Refused:
            pass
    got = await client.call(
        "GetItem", {"TableName": table, "Key": codec.meta_key(), "ConsistentRead": True}
    )
    stored = codec.meta_shards(got.get("Item"))
    if stored is not None and stored != shards:
        raise JournalError(
            f"DynamoDB table {table} was created for {stored} shards, not {shards}: the shard "
            "count is fixed at creation"
        )
    return transactions
