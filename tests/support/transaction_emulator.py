"""A TransactWriteItems emulator in front of dynalite, which has no transactions, so that the
DynamoDB journal's transactional path (conditional Put per event, as on AWS) runs against a
real server in the tests. Its own tests: tests/integration/test_dynamodb_transaction_emulator.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["TransactionEmulator", "running_emulator"]


class TransactionEmulator:
    """An HTTP front for `upstream` (dynalite) that adds TransactWriteItems the way DynamoDB
    answers it (condition checked on every item, all or nothing, TransactionCanceledException
    with CancellationReasons, ClientRequestToken idempotency). Writes are serialised by one lock,
    so a transaction is atomic with respect to every other write that goes through the emulator.
    Conditions supported: attribute_not_exists(x) and none. Test use only."""

    WRITES = frozenset(
        {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
    )

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.lock = asyncio.Lock()
        self.tokens: set[str] = set()
        self.key_names: dict[str, list[str]] = {}
        self.transactions = 0  # applied (a repeated token and a cancelled one do not count)
        self.url = ""
        self._runner: Any = None
        self._session: Any = None

    async def start(self) -> None:
        import aiohttp
        from aiohttp import web

        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _upstream(self, op: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"DynamoDB_20120810.{op}",
            "X-Amz-Date": "20240101T000000Z",
            "Authorization": "AWS4-HMAC-SHA256 Credential=emulator/20240101/us-east-1/dynamodb/"
            "aws4_request, SignedHeaders=host, Signature=0",
        }
        async with self._session.post(self.upstream + "/", data=body, headers=headers) as resp:
            data = await resp.read()
            keep = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() in ("x-amzn-requestid", "x-amz-crc32")
            }
            return resp.status, data, keep

    async def _call(self, op: str, payload: dict[str, Any]) -> dict[str, Any]:
        status, data, _ = await self._upstream(op, json.dumps(payload).encode())
        if status != 200:
            raise RuntimeError(f"upstream {op}: {status} {data[:300]!r}")
        return json.loads(data)

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        op = request.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
        body = await request.read()
        if op == "TransactWriteItems":
            async with self.lock:
                status, payload = await self._transact(json.loads(body))
            return web.Response(
                status=status,
                body=json.dumps(payload).encode(),
                content_type="application/x-amz-json-1.0",
            )
        if op in self.WRITES:
            async with self.lock:
                status, data, headers = await self._upstream(op, body)
        else:
            status, data, headers = await self._upstream(op, body)
        return web.Response(
            status=status, body=data, headers=headers, content_type="application/x-amz-json-1.0"
        )

    async def _keys(self, table: str) -> list[str]:
        if table not in self.key_names:
            desc = await self._call("DescribeTable", {"TableName": table})
            self.key_names[table] = [k["AttributeName"] for k in desc["Table"]["KeySchema"]]
        return self.key_names[table]

    async def _transact(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        token = req.get("ClientRequestToken")
        if token and token in self.tokens:
            return 200, {}
        items = req.get("TransactItems") or []
        plan: list[tuple[str, dict[str, Any]]] = []
        reasons: list[dict[str, str]] = []
        for entry in items:
            ((kind, spec),) = entry.items()
            table = spec["TableName"]
            names = await self._keys(table)
            source = spec["Item"] if kind == "Put" else spec["Key"]
            key = {n: source[n] for n in names}
            condition = (spec.get("ConditionExpression") or "").strip()
            if condition and not condition.startswith("attribute_not_exists("):
                return 400, {
                    "__type": "com.amazon.coral.validate#ValidationException",
                    "message": f"the emulator supports attribute_not_exists only: {condition}",
                }
            failed = False
            if condition:
                got = await self._call(
                    "GetItem", {"TableName": table, "Key": key, "ConsistentRead": True}
                )
                failed = "Item" in got
            reasons.append(
                {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
                if failed
                else {"Code": "None"}
            )
            plan.append((kind, spec))
        if any(r["Code"] != "None" for r in reasons):
            codes = ", ".join(r["Code"] for r in reasons)
            return 400, {
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "Message": "Transaction cancelled, please refer cancellation reasons for "
                f"specific reasons [{codes}]",
                "CancellationReasons": reasons,
            }
        for kind, spec in plan:
            if kind == "Put":
                await self._call("PutItem", {"TableName": spec["TableName"], "Item": spec["Item"]})
            elif kind == "Delete":
                await self._call("DeleteItem", {"TableName": spec["TableName"], "Key": spec["Key"]})
            elif kind == "Update":
                args = {k: v for k, v in spec.items() if k != "ConditionExpression"}
                await self._call("UpdateItem", args)
        if token:
            self.tokens.add(token)
        self.transactions += 1
        return 200, {}


@contextlib.asynccontextmanager
async def running_emulator(upstream: str) -> AsyncIterator[TransactionEmulator]:
    """An emulator in front of `upstream` (an http:// endpoint), listening on 127.0.0.1 (an
    ephemeral port: `emulator.url`) for the block."""
    emulator = TransactionEmulator(upstream)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.close()
