"""The journal's DynamoDB transport: DynamoDB's JSON protocol over :mod:`.http1` (a small
HTTP/1.1 client for one origin), signed by :mod:`.sigv4` with credentials from
:mod:`.credentials`, bodies by orjson.

Chosen by measurement (docs/benchmarks.md, bench/w6_clients.py): per call it costs the client a
fraction of aiobotocore's CPU (which builds a request object, runs its event hooks and a
user-agent string per call) and of aiohttp's. What the SDK gave that matters is kept: TLS with
certificate verification (the default SSL context) to ``https://dynamodb.<region>.amazonaws.com``
or the configured endpoint, pooled keep-alive connections, time-outs, the answer's CRC32 checked
(``x-amz-crc32``; a mismatch is treated as a lost answer), and DynamoDB's error answers parsed
into :class:`.client.ServiceError`. Retries are the client's (:mod:`.client`).
"""

from __future__ import annotations

import ssl
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from .client import ConnectionFailure, ServiceError
from .credentials import CredentialSource
from .errors import reasons_from_message
from .http1 import HttpFailure, Origin
from .settings import DynamoDBSettings
from .sigv4 import Signer

__all__ = ["HttpTransport", "endpoint_of"]

USER_AGENT = "threadweaver"


def endpoint_of(settings: DynamoDBSettings) -> str:
    return settings.endpoint_url or f"https://dynamodb.{settings.region}.amazonaws.com"


class HttpTransport:
    """See the module docstring. `start()` opens the connection pool (inside the event loop)."""

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
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = (
            (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        )
        self._max_connections = max_connections
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._origin: Origin | None = None

    @property
    def origin(self) -> Origin | None:
        return self._origin

    async def start(self) -> None:
        if self._origin is None:
            self._origin = Origin(
                self._host,
                self._port,
                tls=self._tls,
                max_connections=self._max_connections,
                connect_timeout=self._connect_timeout,
                read_timeout=self._read_timeout,
            )

    async def close(self) -> None:
        origin, self._origin = self._origin, None
        if origin is not None:
            await origin.close()

    async def send(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        origin = self._origin
        if origin is None:
            raise ConnectionFailure("the DynamoDB client is closed")
        body = orjson.dumps(params)
        headers = self._signer.headers(operation, body, await self.credentials.get())
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (
            f"POST / HTTP/1.1\r\n{head}User-Agent: {USER_AGENT}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        try:
            response = await origin.post(request)
        except HttpFailure as exc:
            raise ConnectionFailure(str(exc)) from None
        data = response.body
        crc = response.headers.get("x-amz-crc32")
        if crc is not None and crc.isdigit() and zlib.crc32(data) != int(crc):
            raise ConnectionFailure(f"CRC32 of the answer does not match ({len(data)} bytes)")
        if response.status == 200:
            try:
                out = orjson.loads(data) if data else {}
            except orjson.JSONDecodeError:
                raise ConnectionFailure(f"unreadable answer ({len(data)} bytes)") from None
            return out if isinstance(out, dict) else {}
        raise error_of(response.status, data)


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
