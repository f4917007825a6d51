"""A small HTTP/1.1 client for one origin: ``POST /`` with a body, keep-alive connections in a
bounded pool, TLS through the event loop's SSL support, time-outs on connecting and on the
answer. All DynamoDB's JSON protocol needs, at a fraction of a general client's CPU per request
(docs/benchmarks.md, bench/w6_clients.py): one buffer per connection, a protocol object that
parses the answer as it arrives, no middleware, cookies, redirects or per-request objects.

Answers are read by ``Content-Length`` or ``Transfer-Encoding: chunked``; ``Connection:
close`` is honoured. A connection that fails or times out is closed and never reused; a pooled
connection idle longer than `idle_timeout` is dropped before reuse (servers close idle ones on
their own schedule, Node's after 5 s). Failures raise :class:`HttpFailure`: whether the server
got the request is unknown, which the caller's retry rules handle.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

__all__ = ["HttpFailure", "Origin", "Response"]


class HttpFailure(Exception):
    """No complete answer (refused, reset, closed, timed out, malformed)."""


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; parses the answer to the request in flight."""

    __slots__ = ("_buf", "_head", "_length", "_waiter", "closed", "idle_since", "transport")

    def __init__(self) -> None:
        self.transport: Any = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._head: tuple[int, dict[str, str], int] | None = None  # status, headers, body start
        self._length = -1  # body length; -2: chunked
        self.closed = False
        self.idle_since = 0.0

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._waiter is not None:
            self._parse()
        elif data:  # nothing asked: a server speaking out of turn; this connection is done
            self.close()

    def eof_received(self) -> bool:
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(HttpFailure(f"connection closed: {exc or 'by the server'}"))

    # -- requests ----------------------------------------------------------------------------
    def request(self, data: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Response]:
        self._buf.clear()
        self._head = None
        self._length = -1
        self._waiter = waiter = loop.create_future()
        if self.closed or self.transport.is_closing():  # lost before this request was written
            waiter.set_exception(HttpFailure("connection closed before the request"))
        else:
            self.transport.write(data)
        return waiter

    def timed_out(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(HttpFailure("no answer in time"))
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _parse(self) -> None:
        buf = self._buf
        if self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self._fail("answer headers too long")
                return
            try:
                self._head = self._parse_head(bytes(buf[:end]), end + 4)
            except (ValueError, IndexError) as exc:
                self._fail(f"malformed answer: {exc}")
                return
        status, headers, start = self._head
        if self._length == -2:
            body = self._dechunk(start)
            if body is None:
                return
        else:
            if len(buf) - start < self._length:
                return
            body = bytes(buf[start : start + self._length])
        waiter, self._waiter = self._waiter, None
        if headers.get("connection", "").lower() == "close":
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(status, headers, body))

    def _parse_head(self, head: bytes, start: int) -> tuple[int, dict[str, str], int]:
        lines = head.decode("latin-1").split("\r\n")
        version, code = lines[0].split(" ", 2)[:2]
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not HTTP/1.x: {lines[0][:40]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._length = -2
        else:
            self._length = int(headers.get("content-length", "0"))
        return int(code), headers, start

    def _dechunk(self, start: int) -> bytes | None:
        """The whole chunked body once it has arrived, else None."""
        buf, pos = self._buf, start
        parts: list[bytes] = []
        while True:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return None
            size = int(bytes(buf[pos:end]).split(b";", 1)[0], 16)
            if size == 0:
                return b"".join(parts) if buf.find(b"\r\n", end + 2) >= 0 else None
            if len(buf) < end + 2 + size + 2:
                return None
            parts.append(bytes(buf[end + 2 : end + 2 + size]))
            pos = end + 2 + size + 2

    def _fail(self, why: str) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(HttpFailure(why))
        self.close()


class Origin:
    """Requests to one ``scheme://host:port``, over at most `max_connections` connections."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        max_connections: int = 64,
        connect_timeout: float = 5.0,
        read_timeout: float = 20.0,
        idle_timeout: float = 4.0,
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.connect_timeout, self.read_timeout, self.idle_timeout = (
            connect_timeout,
            read_timeout,
            idle_timeout,
        )
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False
        self.opened = 0  # connections opened (tests, metrics)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    async def post(self, data: bytes) -> Response:
        """Send `data` (the whole request: head and body) and return the answer."""
        if self._closed:
            raise HttpFailure("the client is closed")
        async with self._slots:
            conn = self._pooled() or await self._connect()
            loop = asyncio.get_running_loop()
            timer = loop.call_later(self.read_timeout, conn.timed_out)
            try:
                response = await conn.request(data, loop)
            except asyncio.CancelledError:
                conn.close()  # an answer may still come: the connection is unusable
                raise
            finally:
                timer.cancel()
            if not conn.closed and not self._closed:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            return response

    def _pooled(self) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed and time.monotonic() - conn.idle_since < self.idle_timeout:
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the connection is made, and a cancelled caller would go on
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    _Connection,
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls is not None else None,
                )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise HttpFailure(f"cannot connect to {self.host}:{self.port}: {exc!r}") from None
        self.opened += 1
        return conn
