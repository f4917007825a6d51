"""An HTTP proxy for the DynamoDB API (in front of dynalite) that injects faults:
throttling answers (ProvisionedThroughputExceededException), connections dropped before the
request reaches the server, connections dropped AFTER the server applied it (the ambiguous case
a conditional write must resolve), and a full outage (every connection refused with a reset).
Runs its own event loop in a background thread; binds 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections import Counter

import aiohttp
from aiohttp import web

THROTTLE_BODY = (
    b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",'
    b'"message":"The level of configured provisioned throughput for the table was exceeded."}'
)


class DynamoFaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        throttle: float = 0.0,
        drop_before: float = 0.0,
        drop_after: float = 0.0,
        seed: int = 7,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.throttle, self.drop_before, self.drop_after = throttle, drop_before, drop_after
        self.outage = False
        self.faults: Counter[str] = Counter()
        self._random = random.Random(seed)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DynamoFaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def set(self, **faults: float | bool) -> None:
        for key, value in faults.items():
            setattr(self, key, value)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        await self._runner.cleanup()
        await self._session.close()

    def _drop(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            transport.abort()
        raise ConnectionResetError("dropped by the fault proxy")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        target = request.headers.get("X-Amz-Target", "")
        if self.outage:
            self.faults["outage"] += 1
            return self._drop(request)
        roll = self._random.random()
        if roll < self.throttle:
            self.faults["throttle"] += 1
            return web.Response(
                status=400, body=THROTTLE_BODY, content_type="application/x-amz-json-1.0"
            )
        roll -= self.throttle
        if roll < self.drop_before:
            self.faults["drop_before"] += 1
            return self._drop(request)
        roll -= self.drop_before
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as upstream:
            payload = await upstream.read()
            status = upstream.status
            content_type = upstream.headers.get("Content-Type", "application/x-amz-json-1.0")
        if roll < self.drop_after and target.endswith(("PutItem", "TransactWriteItems")):
            self.faults["drop_after_write"] += 1  # the write happened; its answer is lost
            return self._drop(request)
        return web.Response(status=status, body=payload, headers={"Content-Type": content_type})
