"""Workload 6 C: client CPU per DynamoDB call, the journal's clients side by side.

The journal's hot request (a conditional PutItem of one event item, :mod:`codec`) sent to a
dynalite of the bench's own (pinned to the server core) by each client in this process (pinned
to the load core); the figure is this process's CPU time per call (``time.process_time``, so
dynalite's own CPU is not in it), `clients_concurrency` calls in flight, on uvloop as in the
runtime. Variants, interleaved round by round (medians):

  sdk              aioboto3/aiobotocore as the project builds it (RetryingClient over
                   SdkTransport)
  aiohttp+botocore aiohttp + botocore's SigV4Auth signer + orjson
  aiohttp          aiohttp + sigv4.py + orjson
  http             what the journal uses: http1.py + sigv4.py + orjson (HttpTransport)
  floor            bare HTTP/1.1 on asyncio streams, one connection per task, the request bytes
                   signed once (dynalite checks no signature): what any client must at least pay
(every variant but the floor under the journal's RetryingClient).

Group commit: the same client writing `clients_group` one-event appends of different pids as
`clients_group` PutItems or as ONE TransactWriteItems (what a DynamoDB group commit would send),
against tests/support/transaction_emulator.py in a child process on the server core in front of
the dynalite (dynalite has no transactions): this process's CPU per event, both ways.

Standalone: ``python -m bench.w6_clients`` (prints the JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from threadweaver.adapters.journal.dynamodb import codec
from threadweaver.adapters.journal.dynamodb.client import (
    ClientStats,
    RetryingClient,
    RetryPolicy,
    connect,
)
from threadweaver.adapters.journal.dynamodb.credentials import credential_source
from threadweaver.adapters.journal.dynamodb.http_transport import HttpTransport, error_of
from threadweaver.adapters.journal.dynamodb.settings import DynamoDBSettings
from threadweaver.adapters.journal.dynamodb.sigv4 import CONTENT_TYPE, TARGET_PREFIX
from threadweaver.application.ports import NewEvent

from .base import LOAD_CORE, log
from .profiles import Profile
from .stats import median

VARIANTS = ("sdk", "aiohttp+botocore", "aiohttp", "http", "floor")
Call = Callable[[dict[str, Any]], Awaitable[Any]]
_ids = itertools.count(1)


def _put(table: str) -> dict[str, Any]:
    n = next(_ids)
    event = NewEvent("MessagesAdded", {"messages": [{"id": f"m{n}", "body": "hello " * 8}]})
    item = codec.event_item(f"thread-bench-{n}", 1, n % 1024, time.time_ns() // 1000, "", [event])
    return {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(pid)"}


class AiohttpTransport(HttpTransport):
    """HttpTransport's requests sent by an aiohttp session instead of http1.py."""

    async def start(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=4),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            headers={"User-Agent": "threadweaver"},
        )

    async def close(self) -> None:
        await self._session.close()

    async def send(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        import orjson

        body = orjson.dumps(params)
        headers = self._signer.headers(operation, body, await self.credentials.get())
        async with self._session.post(self.url, data=body, headers=headers) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise error_of(resp.status, data)
        return dict(orjson.loads(data))


class BotocoreSigner:
    """The signer replaced by botocore's SigV4Auth (aiohttp with botocore's signer)."""

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
    if variant in ("sdk", "http"):
        async with connect(settings, retry=retry, stats=ClientStats(), transport=variant) as c:
            yield lambda params: c.call("PutItem", params)
        return
    if variant.startswith("aiohttp"):
        transport = AiohttpTransport(settings, credential_source(settings))
        if variant == "aiohttp+botocore":
            transport._signer = BotocoreSigner(transport._signer.host, settings.region)  # type: ignore[assignment]
        await transport.start()
        try:
            client = RetryingClient(transport, settings, retry, ClientStats())
            yield lambda params: client.call("PutItem", params)
        finally:
            await transport.close()
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


_EMULATOR = """
import asyncio, sys
from tests.support.transaction_emulator import TransactionEmulator

async def main():
    emulator = TransactionEmulator(sys.argv[1])
    await emulator.start()
    print(emulator.url, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def _group(settings: DynamoDBSettings, events: int, group: int, transact: bool) -> float:
    """CPU seconds of this process per event, `group` appends at a time as PutItems (in
    parallel) or one TransactWriteItems."""
    async with connect(settings, retry=RetryPolicy(), stats=ClientStats()) as c:
        table = settings.journal_table

        async def batch() -> None:
            puts = [_put(table) for _ in range(group)]
            if transact:
                items = [{"Put": put} for put in puts]
                await c.call("TransactWriteItems", {"TransactItems": items})
            else:
                await asyncio.gather(*(c.call("PutItem", put) for put in puts))

        for _ in range(5):
            await batch()
        cpu0 = time.process_time()
        for _ in range(events // group):
            await batch()
        cpu = time.process_time() - cpu0
    return cpu / ((events // group) * group)


def measure_group(
    settings: DynamoDBSettings, work: Path, *, rounds: int, events: int, group: int
) -> dict[str, Any]:
    import subprocess
    import sys

    import uvloop

    from .base import REPO, SERVER_CORE
    from .processes import spawn, stop

    proc = spawn(
        [sys.executable, "-c", _EMULATOR, settings.endpoint_url or ""],
        core=SERVER_CORE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().decode().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the transaction emulator did not start: {url!r}")
        emulated = DynamoDBSettings(
            endpoint_url=url, region=settings.region, table_prefix=settings.table_prefix
        )
        per: dict[str, list[float]] = {"puts": [], "transaction": []}
        for _ in range(rounds):
            for kind in per:
                per[kind].append(uvloop.run(_group(emulated, events, group, kind == "transaction")))
    finally:
        stop(proc, timeout=10.0)
    puts, transaction = median(per["puts"]) or 0.0, median(per["transaction"]) or 0.0
    log(
        f"w6 clients: {group} appends as PutItems {1e6 * puts:.0f} µs CPU/event, "
        f"as one TransactWriteItems {1e6 * transaction:.0f} µs CPU/event"
    )
    return {
        "group": group,
        "events": events,
        "puts_cpu_us_per_event": round(1e6 * puts, 1),
        "transaction_cpu_us_per_event": round(1e6 * transaction, 1),
        "ratio": round(transaction / puts, 3) if puts else None,
    }


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
        group = measure_group(
            settings, work, rounds=p.clients_rounds, events=p.clients_calls // 2, group=8
        )
    finally:
        dynalite.stop()
    return {
        "variants": results,
        "group_commit": group,
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
