"""Forwarding commands between members over HTTP: the client side (application.sharding's
`PeerClient`).

A member that receives a command for a shard it does not own sends the already-built domain
command once to the owner's internal API, `POST /internal/v1/execute` (adapters/http/internal.py,
which describes the answers), and turns the answer back into events or the owner's refusal. The
owner runs it only if it serves the shard itself (one hop, no loops). With a peer token
configured, both sides require it. With tracing on (application/tracing.py), the forwarding is a
client span whose W3C trace context (`traceparent`) the request carries, so that the owner's
spans continue the same trace.
"""

from __future__ import annotations

import logging

import aiohttp
import orjson

from ..application.codec import command_to_json, error_from_json, events_from_json
from ..application.gateway import ForwardRefused, ShardUnavailable
from ..application.ports import JournalError
from ..application.read_your_writes import Executed
from ..application.tracing import tracer
from ..domain import Command, Event
from .http.routes import INTERNAL_EXECUTE_PATH

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Threadweaver-Forwarded-By"


class HttpPeerClient:
    def __init__(self, member: str, token: str = "", timeout: float = 10.0) -> None:
        self.member = member
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout,
                json_serialize=lambda o: orjson.dumps(o).decode(),
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
            )
        return self._session

    async def forward(self, address: str, command: Command) -> list[Event]:
        traced = tracer()
        if not traced.enabled:
            return await self._forward(address, command, {})
        attributes = {"server.address": address, "threadweaver.command": type(command).__name__}
        with traced.span("forward command", kind="client", attributes=attributes):
            return await self._forward(address, command, traced.trace_context() or {})

    async def _forward(
        self, address: str, command: Command, trace_headers: dict[str, str]
    ) -> list[Event]:
        """`trace_headers`: the W3C trace context of the forwarding span (empty untraced)."""
        headers = {FORWARDED_HEADER: self.member, **trace_headers}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            async with self._client().post(
                f"http://{address}{INTERNAL_EXECUTE_PATH}",
                data=orjson.dumps({"command": command_to_json(command)}),
                headers={**headers, "Content-Type": "application/json"},
            ) as r:
                body = orjson.loads(await r.read())
                if r.status == 200:
                    # `seq`: the thread's seq after the command (absent from an older member)
                    return Executed(events_from_json(body["events"]), body.get("seq"))
                if r.status == 503:
                    unavailable = ForwardRefused if body.get("refused") else ShardUnavailable
                    raise unavailable(
                        body.get("error", "owner unavailable"),
                        retry_after=float(r.headers.get("Retry-After", 1)),
                    )
                if "refusal" in body:
                    raise error_from_json(body["refusal"])
                raise JournalError(f"owner at {address} answered {r.status}: {body.get('error')}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # The owner is unreachable (it may be dying): its shards move once its lease expires.
            raise ShardUnavailable(
                f"the owner of this thread ({address}) is unreachable: {type(exc).__name__}",
                retry_after=1,
            ) from exc
