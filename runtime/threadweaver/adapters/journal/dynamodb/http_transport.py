"""The journal's DynamoDB transport: DynamoDB's JSON protocol over one aiohttp session, signed by
:mod:`.sigv4` with credentials from :mod:`.credentials`, bodies by orjson.

Chosen by measurement over aiobotocore (docs/benchmarks.md, bench/dynamodb_clients.py): a call
costs the client a fraction of the SDK's CPU, which builds a request object, runs its event
hooks and a user-agent string per call. What the SDK gave that matters is kept: TLS with
certificate verification (the default SSL context) to ``https://dynamodb.<region>.amazonaws.com``
or the configured endpoint, pooled keep-alive connections, the response's CRC32 checked
(``x-amz-crc32``; a mismatch is treated as a lost answer), and DynamoDB's error answers parsed
into :class:`.client.ServiceError`. Retries are the client's (:mod:`.client`).
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from .client import ConnectionFailure, ServiceError
from .credentials import CredentialSource
from .errors import reasons_from_message
from .settings import DynamoDBSettings
from .sigv4 import Signer

__all__ = ["HttpTransport", "endpoint_of"]

USER_AGENT = "threadweaver"


def endpoint_of(settings: DynamoDBSettings) -> str:
    return settings.endpoint_url or f"https://dynamodb.{settings.region}.amazonaws.com"


class HttpTransport:
    """See the module docstring. `start()` opens the session (inside the event loop)."""

    def __init__(
        self,
        settings: DynamoDBSettings,
        credentials: CredentialSource,
        *,
        max_connections: int = 64,
        connect_timeout: float = 5.0,
        read_timeout: float = 20.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        url = endpoint_of(settings)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"DynamoDB endpoint must be http(s)://HOST[:PORT], not {url!r}")
        self.url = f"{parts.scheme}://{parts.netloc}/"
        self.credentials = credentials
        self._signer = Signer(parts.netloc.lower(), settings.region)
        self._tls = parts.scheme == "https"
        self._ssl = ssl_context
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            ssl=(self._ssl or ssl.create_default_context()) if self._tls else False,
            ttl_dns_cache=60,
            keepalive_timeout=30,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            headers={"User-Agent": USER_AGENT},
            skip_auto_headers=("Accept-Encoding",),
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def send(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        session = self._session
        if session is None:
            raise ConnectionFailure("the DynamoDB client is closed")
        body = orjson.dumps(params)
        headers = self._signer.headers(operation, body, await self.credentials.get())
        try:
            async with session.post(self.url, data=body, headers=headers) as resp:
                data = await resp.read()
                status = resp.status
                crc = resp.headers.get("x-amz-crc32")
        except asyncio.CancelledError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ConnectionFailure(f"{type(exc).__name__}: {exc}") from None
        if crc is not None and crc.isdigit() and zlib.crc32(data) != int(crc):
            raise ConnectionFailure(f"CRC32 of the answer does not match ({len(data)} bytes)")
        if status == 200:
            try:
                out = orjson.loads(data) if data else {}
            except orjson.JSONDecodeError:
                raise ConnectionFailure(f"unreadable answer ({len(data)} bytes)") from None
            return out if isinstance(out, dict) else {}
        raise error_of(status, data)


def error_of(status: int, data: bytes) -> ServiceError:
    """DynamoDB's error answer: ``{"__type": "...#Code", "message": ..., "CancellationReasons":
    [{"Code": ...}, ...]}``; anything else (a proxy's 5xx page) keeps the status only."""
    try:
        payload = orjson.loads(data) if data else {}
    except orjson.JSONDecodeError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    code = str(payload.get("__type", "")).rsplit("#", 1)[-1]
    message = str(payload.get("message") or payload.get("Message") or "")
    if not code and not message:
        message = f"HTTP {status}: {data[:200].decode('utf-8', 'replace')}"
    reasons = payload.get("CancellationReasons")
    if isinstance(reasons, list):
        codes = [str(r.get("Code", "")) if isinstance(r, dict) else "" for r in reasons]
    elif code == "TransactionCanceledException":
        codes = reasons_from_message(message)
    else:
        codes = []
    return ServiceError(code, message, status, codes)
