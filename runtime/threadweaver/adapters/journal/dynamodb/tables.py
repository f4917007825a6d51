"""The DynamoDB journal's tables: their layout and provisioning (``threadweaver create-tables``
and the operator, which imports only this module and :mod:`.settings`).

``create_tables`` is idempotent: tables that exist already are checked (key schema, attribute
types, the ``shard_ts`` index) and accepted when they match, and a clear JournalError names what
differs otherwise. It waits until the tables and the index are ACTIVE. See docs/operations.md for
the layout, capacity modes and the IAM actions these functions need (CreateTable,
DescribeTable, DeleteTable; UpdateContinuousBackups when point-in-time recovery is asked for).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ....application.ports import JournalError
from .sdk import map_client_error, open_client
from .settings import DynamoDBSettings

__all__ = [
    "BILLING_MODES",
    "SHARD_INDEX",
    "create_tables",
    "delete_tables",
    "describe_tables",
    "journal_table_spec",
    "snapshot_table_spec",
]

log = logging.getLogger(__name__)

#: The journal table's global secondary index: HASH shard, RANGE ts (a projection's stream).
SHARD_INDEX = "shard_ts"
BILLING_MODES = ("PAY_PER_REQUEST", "PROVISIONED")
DEFAULT_TIMEOUT = 300.0


def journal_table_spec(
    name: str,
    billing_mode: str = "PAY_PER_REQUEST",
    read_capacity: int | None = None,
    write_capacity: int | None = None,
) -> dict[str, Any]:
    """CreateTable arguments of ``<prefix>-journal`` (HASH pid, RANGE seq; GSI shard_ts)."""
    index: dict[str, Any] = {
        "IndexName": SHARD_INDEX,
        "KeySchema": [
            {"AttributeName": "shard", "KeyType": "HASH"},
            {"AttributeName": "ts", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }
    spec: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": [
            {"AttributeName": "pid", "AttributeType": "S"},
            {"AttributeName": "seq", "AttributeType": "N"},
            {"AttributeName": "shard", "AttributeType": "N"},
            {"AttributeName": "ts", "AttributeType": "N"},
        ],
        "KeySchema": [
            {"AttributeName": "pid", "KeyType": "HASH"},
            {"AttributeName": "seq", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [index],
        "BillingMode": billing_mode,
    }
    if billing_mode == "PROVISIONED":
        throughput = {"ReadCapacityUnits": read_capacity, "WriteCapacityUnits": write_capacity}
        spec["ProvisionedThroughput"] = dict(throughput)
        # The index receives every event write and serves every projection read.
        index["ProvisionedThroughput"] = dict(throughput)
    return spec


def snapshot_table_spec(
    name: str,
    billing_mode: str = "PAY_PER_REQUEST",
    read_capacity: int | None = None,
    write_capacity: int | None = None,
) -> dict[str, Any]:
    """CreateTable arguments of ``<prefix>-snapshot`` (HASH pid)."""
    spec: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": [{"AttributeName": "pid", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pid", "KeyType": "HASH"}],
        "BillingMode": billing_mode,
    }
    if billing_mode == "PROVISIONED":
        # Snapshots are written every N events and read on entity start: a fraction suffices.
        spec["ProvisionedThroughput"] = {
            "ReadCapacityUnits": max(1, (read_capacity or 1) // 4),
            "WriteCapacityUnits": max(1, (write_capacity or 1) // 4),
        }
    return spec


def _validate(billing_mode: str, read_capacity: int | None, write_capacity: int | None) -> None:
    if billing_mode not in BILLING_MODES:
        raise ValueError(
            f"billing mode must be one of {', '.join(BILLING_MODES)}, not {billing_mode!r}"
        )
    if billing_mode == "PROVISIONED":
        if not read_capacity or not write_capacity or read_capacity < 1 or write_capacity < 1:
            raise ValueError("billing mode PROVISIONED needs read and write capacity >= 1")
    elif read_capacity is not None or write_capacity is not None:
        raise ValueError("read/write capacity only apply to billing mode PROVISIONED")


def _schema_problems(desc: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """How an existing table differs from what threadweaver needs (billing mode and capacity
    are not compared: they may be changed by an operator on purpose)."""
    problems: list[str] = []
    types = {a["AttributeName"]: a["AttributeType"] for a in desc.get("AttributeDefinitions", [])}
    want_types = {a["AttributeName"]: a["AttributeType"] for a in wanted["AttributeDefinitions"]}

    def keys(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
        return [(k["AttributeName"], k["KeyType"]) for k in schema]

    if keys(desc.get("KeySchema", [])) != keys(wanted["KeySchema"]):
        problems.append(
            f"key schema is {keys(desc.get('KeySchema', []))}, expected {keys(wanted['KeySchema'])}"
        )
    for want_index in wanted.get("GlobalSecondaryIndexes", []):
        have = {i["IndexName"]: i for i in desc.get("GlobalSecondaryIndexes", [])}
        index = have.get(want_index["IndexName"])
        if index is None:
            problems.append(f"index {want_index['IndexName']} is missing")
            continue
        if keys(index["KeySchema"]) != keys(want_index["KeySchema"]):
            problems.append(
                f"index {want_index['IndexName']} keys are "
                f"{keys(index['KeySchema'])}, expected {keys(want_index['KeySchema'])}"
            )
        projection = index.get("Projection", {}).get("ProjectionType")
        if projection != "ALL":
            problems.append(f"index {want_index['IndexName']} projects {projection}, expected ALL")
    for name, typ in want_types.items():
        if name in types and types[name] != typ:
            problems.append(f"attribute {name} has type {types[name]}, expected {typ}")
    return problems


def _billing_mode(desc: dict[str, Any]) -> str:
    return (desc.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")


def _active(desc: dict[str, Any]) -> bool:
    if desc.get("TableStatus") != "ACTIVE":
        return False
    return all(
        i.get("IndexStatus", "ACTIVE") == "ACTIVE" for i in desc.get("GlobalSecondaryIndexes", [])
    )


async def _describe(client: Any, settings: DynamoDBSettings, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return (await client.describe_table(TableName=name))["Table"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise map_client_error(exc, settings, name, "DescribeTable") from None


async def create_tables(
    settings: DynamoDBSettings,
    *,
    billing_mode: str = "PAY_PER_REQUEST",
    read_capacity: int | None = None,
    write_capacity: int | None = None,
    wait: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    point_in_time_recovery: bool = False,
) -> list[str]:
    """Create ``<prefix>-journal`` (with its ``shard_ts`` index) and ``<prefix>-snapshot`` when
    missing; check existing ones. Waits for ACTIVE when `wait`. Returns both table names.

    ``point_in_time_recovery`` also enables continuous backups (not on local servers).
    Raises ValueError for bad arguments, JournalError for a mismatching existing table, an
    unreachable endpoint or rejected credentials, TimeoutError when not ACTIVE in `timeout`.
    """
    from botocore.exceptions import ClientError

    _validate(billing_mode, read_capacity, write_capacity)
    specs = [
        journal_table_spec(settings.journal_table, billing_mode, read_capacity, write_capacity),
        snapshot_table_spec(settings.snapshot_table, billing_mode, read_capacity, write_capacity),
    ]
    deadline = time.monotonic() + timeout
    try:
        async with open_client(settings) as client:
            for spec in specs:
                name = spec["TableName"]
                desc = await _describe(client, settings, name)
                if desc is None:
                    try:
                        await client.create_table(**spec)
                        log.info("creating DynamoDB table %s (%s)", name, billing_mode)
                    except ClientError as exc:
                        if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                            raise map_client_error(exc, settings, name, "CreateTable") from None
                    desc = await _describe(client, settings, name)
                elif _billing_mode(desc) != billing_mode:
                    log.warning(
                        "DynamoDB table %s exists with billing mode %s, not %s: left "
                        "as it is (change it in AWS if you mean to)",
                        name,
                        _billing_mode(desc),
                        billing_mode,
                    )
                if desc is not None:
                    problems = _schema_problems(desc, spec)
                    if problems:
                        raise JournalError(
                            f"DynamoDB table {name} exists but does not have the layout "
                            f"threadweaver needs: {'; '.join(problems)}. Use another table "
                            "prefix, or delete the table if it holds nothing you need."
                        )
            if wait:
                for spec in specs:
                    await _wait_active(client, settings, spec["TableName"], deadline)
            if point_in_time_recovery:
                for spec in specs:
                    try:
                        await client.update_continuous_backups(
                            TableName=spec["TableName"],
                            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
                        )
                    except ClientError as exc:
                        raise map_client_error(
                            exc, settings, spec["TableName"], "UpdateContinuousBackups"
                        ) from None
    except (JournalError, ValueError, TimeoutError):
        raise
    except Exception as exc:
        raise _wrap(exc, settings) from None
    return [spec["TableName"] for spec in specs]


def _wrap(exc: BaseException, settings: DynamoDBSettings) -> JournalError:
    from botocore import exceptions as bex

    if isinstance(exc, (bex.ClientError, bex.NoCredentialsError, bex.PartialCredentialsError)):
        return map_client_error(exc, settings, None, "provisioning")
    return JournalError(
        f"cannot reach DynamoDB at {settings.describe()}: {type(exc).__name__}: {exc}"
    )


async def _wait_active(client: Any, settings: DynamoDBSettings, name: str, deadline: float) -> None:
    delay = 0.05
    while True:
        desc = await _describe(client, settings, name)
        if desc is not None and _active(desc):
            return
        if time.monotonic() >= deadline:
            state = desc.get("TableStatus") if desc else "missing"
            raise TimeoutError(f"DynamoDB table {name} is not ACTIVE in time (status {state})")
        await asyncio.sleep(delay)
        delay = min(2.0, delay * 1.5)


async def delete_tables(
    settings: DynamoDBSettings, *, wait: bool = True, timeout: float = DEFAULT_TIMEOUT
) -> list[str]:
    """Delete both tables (their data is gone for good); missing ones are fine. Returns the
    names of the tables that existed and were deleted."""
    from botocore.exceptions import ClientError

    deleted: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        async with open_client(settings) as client:
            for name in settings.tables:
                try:
                    await client.delete_table(TableName=name)
                    deleted.append(name)
                    log.info("deleting DynamoDB table %s", name)
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code")
                    if code == "ResourceNotFoundException":
                        continue
                    if code == "ResourceInUseException":  # being created or deleted: retry
                        await _wait_settled(client, settings, name, deadline)
                        try:
                            await client.delete_table(TableName=name)
                            deleted.append(name)
                        except ClientError as again:
                            if (
                                again.response.get("Error", {}).get("Code")
                                != "ResourceNotFoundException"
                            ):
                                raise map_client_error(
                                    again, settings, name, "DeleteTable"
                                ) from None
                        continue
                    raise map_client_error(exc, settings, name, "DeleteTable") from None
            if wait:
                for name in deleted:
                    await _wait_gone(client, settings, name, deadline)
    except (JournalError, TimeoutError):
        raise
    except Exception as exc:
        raise _wrap(exc, settings) from None
    return deleted


async def _wait_settled(
    client: Any, settings: DynamoDBSettings, name: str, deadline: float
) -> None:
    while True:
        desc = await _describe(client, settings, name)
        if desc is None or desc.get("TableStatus") in ("ACTIVE",):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"DynamoDB table {name} stays {desc.get('TableStatus')}")
        await asyncio.sleep(0.1)


async def _wait_gone(client: Any, settings: DynamoDBSettings, name: str, deadline: float) -> None:
    delay = 0.05
    while await _describe(client, settings, name) is not None:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"DynamoDB table {name} is still being deleted")
        await asyncio.sleep(delay)
        delay = min(2.0, delay * 1.5)


async def describe_tables(settings: DynamoDBSettings) -> dict[str, dict[str, Any] | None]:
    """State of both tables, by name: None when missing, else status, billing mode, item count
    and size (approximate, refreshed by DynamoDB every ~6 hours), index status, and the layout
    problems (empty when threadweaver can use it)."""
    out: dict[str, dict[str, Any] | None] = {}
    specs = {
        settings.journal_table: journal_table_spec(settings.journal_table),
        settings.snapshot_table: snapshot_table_spec(settings.snapshot_table),
    }
    try:
        async with open_client(settings) as client:
            for name, spec in specs.items():
                desc = await _describe(client, settings, name)
                if desc is None:
                    out[name] = None
                    continue
                out[name] = {
                    "name": name,
                    "status": desc.get("TableStatus"),
                    "active": _active(desc),
                    "billing_mode": _billing_mode(desc),
                    "read_capacity": (desc.get("ProvisionedThroughput") or {}).get(
                        "ReadCapacityUnits"
                    ),
                    "write_capacity": (desc.get("ProvisionedThroughput") or {}).get(
                        "WriteCapacityUnits"
                    ),
                    "item_count": desc.get("ItemCount"),
                    "size_bytes": desc.get("TableSizeBytes"),
                    "arn": desc.get("TableArn"),
                    "indexes": {
                        i["IndexName"]: i.get("IndexStatus")
                        for i in desc.get("GlobalSecondaryIndexes", [])
                    },
                    "problems": _schema_problems(desc, spec),
                }
    except JournalError:
        raise
    except Exception as exc:
        raise _wrap(exc, settings) from None
    return out
