"""Workload 6 C: client CPU per DynamoDB call, the journal's clients side by side.

The journal's hot request (a conditional PutItem of one event item, :mod:`codec`) sent to a
dynalite of the bench's own (pinned to the server core) by each client in this process (pinned
to the load core); the figure is this process's CPU time per call (``time.process_time``, so
dynalite's own CPU is not in it), `clients_concurrency` calls in flight, on uvloop as in the
runtime. Variants, interleaved round by round (medians):

  sdk            aioboto3/aiobotocore as the project builds it (RetryingClient over SdkTransport)
  http+botocore  aiohttp + botocore's SigV4Auth signer + orjson (HttpTransport, another signer)
  http           what the journal uses: aiohttp + sigv4.py + orjson (RetryingClient included)
  floor          bare HTTP/1.1 on asyncio streams, one connection per task, the request bytes
                 signed once (dynalite checks no signature): what any client must at least pay

Standalone: ``python -m bench.w6_clients`` (prints the JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from threadweaver.adapters.journal.dynamodb import codec
from threadweaver.adapters.journal.dynamodb.client import ClientStats, RetryPolicy, connect
from threadweaver.adapters.journal.dynamodb.settings import DynamoDBSettings
from threadweaver.adapters.journal.dynamodb.sigv4 import CONTENT_TYPE, TARGET_PREFIX
from threadweaver.application.ports import NewEvent

from .base import LOAD_CORE, log
from .profiles import Profile
from .stats import median

VARIANTS = ("sdk", "http+botocore", "http", "floor")
Call = Callable[[dict[str, Any]], Awaitable[Any]]
_ids = itertools.count(1)


def _put(table: str) -> dict[str, Any]:
    n = next(_ids)
    event = NewEvent("MessagesAdded", {"messages": [{"id": f"m{n}", "body": "hello " * 8}]})
    item = codec.event_item(f"thread-bench-{n}", 1, n % 1024, time.time_ns() // 1000, "", [event])
    return {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(pid)"}


class BotocoreSigner:
    """HttpTransport's signer replaced by botocore's SigV4Auth (the brief's middle option)."""

    def __init__(self, host: str, region: str) -> None:
        from botocore.auth import SigV4Auth

        self.host = host
        self.region = region
        self._auth = SigV4Auth
        self._url = f"http://{host}/"

    def headers(self, operation: str, body: bytes, creds: Any) -> dict[str, str]:
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        request = AWSRequest(
            method="POST",
            url=self._url,
            data=body,
            headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation},
        )
        boto = Credentials(creds.access_key, creds.secret_key, creds.token)
        self._auth(boto, "dynamodb", self.region).add_auth(request)
        return dict(request.headers.items())


@contextlib.asynccontextmanager
async def _client(variant: str, settings: DynamoDBSettings) -> AsyncIterator[Call]:
    retry = RetryPolicy()
    if variant in ("sdk", "http", "http+botocore"):
        transport = "sdk" if variant == "sdk" else "http"
        async with connect(settings, retry=retry, stats=ClientStats(), transport=transport) as c:
            if variant == "http+botocore":
                http: Any = c.transport
                http._signer = BotocoreSigner(http._signer.host, settings.region)
            yield lambda params: c.call("PutItem", params)
        return
    async with _Floor(settings) as floor:
        yield floor.put


class _Floor:
    """HTTP/1.1 keep-alive on asyncio streams, one connection per task (no pool, no signing per
    call, no JSON encoder beyond orjson): the least a DynamoDB call can cost in Python."""

    def __init__(self, settings: DynamoDBSettings) -> None:
        parts = urlsplit(settings.endpoint_url or "")
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.free: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.head = (
            "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: " + CONTENT_TYPE + "\r\n"
            "X-Amz-Target: " + TARGET_PREFIX + "PutItem\r\nX-Amz-Date: 20260101T000000Z\r\n"
            "Authorization: AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/dynamodb/"
            "aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: "
        ).replace("{host}", f"{self.host}:{self.port}")

    async def __aenter__(self) -> _Floor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for _, writer in self.free:
            writer.close()

    async def put(self, params: dict[str, Any]) -> Any:
        import orjson

        if self.free:
            reader, writer = self.free.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        body = orjson.dumps(params)
        writer.write(f"{self.head}{len(body)}\r\n\r\n".encode() + body)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        data = await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"floor: {head[:40]!r} {data[:200]!r}")
        self.free.append((reader, writer))
        return orjson.loads(data)


async def _measure(variant: str, settings: DynamoDBSettings, calls: int, tasks: int) -> float:
    """CPU seconds of this process per call of `variant` (after a warm-up)."""
    async with _client(variant, settings) as put:
        table = settings.journal_table

        async def worker(n: int) -> None:
            for _ in range(n):
                await put(_put(table))

        await asyncio.gather(*(worker(20) for _ in range(tasks)))  # connections, caches
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.gather(*(worker(calls // tasks) for _ in range(tasks)))
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    done = (calls // tasks) * tasks
    log(f"w6 clients: {variant}: {1e6 * cpu / done:.0f} µs CPU/call, {done / wall:.0f} calls/s")
    return cpu / done


def measure(settings: DynamoDBSettings, *, rounds: int, calls: int, tasks: int) -> dict[str, Any]:
    """Every variant `rounds` times, interleaved; medians and ratios to the SDK."""
    per: dict[str, list[float]] = {v: [] for v in VARIANTS}
    import uvloop  # the runtime's event loop

    for _ in range(rounds):
        for variant in VARIANTS:
            per[variant].append(uvloop.run(_measure(variant, settings, calls, tasks)))
    sdk = median(per["sdk"]) or 0.0
    out: dict[str, Any] = {}
    for variant, values in per.items():
        cpu = median(values) or 0.0
        out[variant] = {
            "cpu_us_per_call": round(1e6 * cpu, 1),
            "runs_us": [round(1e6 * v, 1) for v in values],
            "ratio_to_sdk": round(cpu / sdk, 3) if sdk else None,
        }
    return out


def run(p: Profile, work: Path, services: Any = None) -> dict[str, Any]:
    """Part C of workload 6: a fresh dynalite and journal tables, the variants measured."""
    from threadweaver.adapters.journal.dynamodb.tables import create_tables

    from .w6_production import Dynalite

    work.mkdir(parents=True, exist_ok=True)
    dynalite = Dynalite(work / "dynalite-clients").start()
    try:
        settings = DynamoDBSettings.from_url(dynalite.url + "&table-prefix=clients", environ={})
        asyncio.run(create_tables(settings, timeout=60))
        os.sched_setaffinity(0, {LOAD_CORE})
        results = measure(
            settings, rounds=p.clients_rounds, calls=p.clients_calls, tasks=p.clients_concurrency
        )
    finally:
        dynalite.stop()
    return {
        "variants": results,
        "calls": p.clients_calls,
        "rounds": p.clients_rounds,
        "concurrency": p.clients_concurrency,
        "operation": "PutItem (conditional, one event item)",
    }


if __name__ == "__main__":  # pragma: no cover
    import tempfile

    from .profiles import PROFILES

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(PROFILES["quick"], Path(tmp)), indent=1))
