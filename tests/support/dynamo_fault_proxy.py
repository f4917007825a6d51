"""An HTTP proxy for the DynamoDB API (in front of dynalite) that injects faults and counts
requests. Faults, each a probability per request (`set(...)` changes them at any time):

- ``throttle``: 400 ProvisionedThroughputExceededException, the request not forwarded;
- ``server_error``: 500 InternalServerError, not forwarded; ``server_error_after``: 500 after a
  write was applied (DynamoDB's ambiguous failure);
- ``drop_before``: the connection reset before the request reaches the server;
- ``drop_after``: a write applied, then its connection reset (its answer lost);
- ``delay`` (with ``delay_seconds``): the request held up to that long before it is forwarded,
  so that concurrent writes reach the server in another order than they were sent (and stamped);
- ``reorder``: a write held until the next write has been applied (or ``reorder_window``
  passed): two concurrent writes swap places;
- ``outage``: every connection reset.

``delay``, ``reorder``, ``server_error_after`` and ``drop_after`` apply to the operations in
``writes`` (PutItem, TransactWriteItems by default). ``requests`` counts what arrived, by
operation (``faults`` what was injected). Runs its own event loop in a background thread; binds
127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import collections
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
SERVER_ERROR_BODY = (
    b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError",'
    b'"message":"Internal server error"}'
)
WRITES = ("PutItem", "TransactWriteItems")


class DynamoFaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        throttle: float = 0.0,
        drop_before: float = 0.0,
        drop_after: float = 0.0,
        server_error: float = 0.0,
        server_error_after: float = 0.0,
        delay: float = 0.0,
        delay_seconds: float = 0.04,
        reorder: float = 0.0,
        reorder_window: float = 0.2,
        writes: tuple[str, ...] = WRITES,
        seed: int = 7,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.throttle, self.drop_before, self.drop_after = throttle, drop_before, drop_after
        self.server_error, self.server_error_after = server_error, server_error_after
        self.delay, self.delay_seconds = delay, delay_seconds
        self.reorder, self.reorder_window = reorder, reorder_window
        self.writes = writes
        self.outage = False
        self.faults: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._held: collections.deque[asyncio.Event] = collections.deque()  # reordered writes
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
            if not hasattr(self, key):
                raise AttributeError(f"no fault {key!r}")
            setattr(self, key, value)

    def calm(self) -> None:
        """Every fault off (requests held for reordering are let go by their window)."""
        self.set(
            throttle=0.0,
            drop_before=0.0,
            drop_after=0.0,
            server_error=0.0,
            server_error_after=0.0,
            delay=0.0,
            reorder=0.0,
            outage=False,
        )

    def total(self) -> int:
        """Requests received so far, all operations."""
        return sum(self.requests.values())

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
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

    def _chance(self, probability: float) -> bool:
        return probability > 0 and self._random.random() < probability

    @staticmethod
    def _error(status: int, body: bytes) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/x-amz-json-1.0")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        operation = request.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
        self.requests[operation] += 1
        write = operation in self.writes
        if self.outage:
            self.faults["outage"] += 1
            return self._drop(request)
        if self._chance(self.throttle):
            self.faults["throttle"] += 1
            return self._error(400, THROTTLE_BODY)
        if self._chance(self.server_error):
            self.faults["server_error"] += 1
            return self._error(500, SERVER_ERROR_BODY)
        if self._chance(self.drop_before):
            self.faults["drop_before"] += 1
            return self._drop(request)
        if write and self._chance(self.delay):
            self.faults["delay"] += 1
            await asyncio.sleep(self._random.uniform(0, self.delay_seconds))
        released: asyncio.Event | None = None
        if write and self._chance(self.reorder):
            self.faults["reorder"] += 1
            released = asyncio.Event()
            self._held.append(released)
            try:  # until a later write has been applied
                await asyncio.wait_for(released.wait(), self.reorder_window)
            except TimeoutError:
                pass
            finally:
                if released in self._held:
                    self._held.remove(released)
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as upstream:
            payload = await upstream.read()
            status = upstream.status
            content_type = upstream.headers.get("Content-Type", "application/x-amz-json-1.0")
        if write and released is None and self._held:
            self._held.popleft().set()  # this one overtook a held write: let that one go
        if write and status == 200:
            if self._chance(self.drop_after):
                self.faults["drop_after_write"] += 1  # the write happened; its answer is lost
                return self._drop(request)
            if self._chance(self.server_error_after):
                self.faults["server_error_after_write"] += 1
                return self._error(500, SERVER_ERROR_BODY)
        return web.Response(status=status, body=payload, headers={"Content-Type": content_type})
