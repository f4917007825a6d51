"""A small Server-Sent Events client for the tests and benchmarks (aiohttp): parses
`text/event-stream` as the WHATWG spec does (fields `id`, `event`, `data`, comment lines), keeps
the last event id, and reconnects with `Last-Event-ID` on request."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass(frozen=True, slots=True)
class SseEvent:
    id: str | None
    event: str
    data: str

    @property
    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def seq(self) -> int:
        return int(self.json["seq"])


@dataclass(slots=True)
class SseParser:
    """Feed it bytes; it returns the complete events (comments counted, not returned)."""

    last_id: str | None = None
    comments: int = 0
    _buffer: bytes = b""
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _id: str | None = None
    _has_id: bool = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        self._buffer += chunk
        out: list[SseEvent] = []
        while True:
            line, sep, rest = self._buffer.partition(b"\n")
            if not sep:
                return out
            self._buffer = rest
            text = line.decode().rstrip("\r")
            if text == "":
                if self._data:
                    if self._has_id:
                        self.last_id = self._id
                    out.append(
                        SseEvent(self.last_id, self._event or "message", "\n".join(self._data))
                    )
                self._data, self._event, self._has_id = [], "", False
                continue
            if text.startswith(":"):
                self.comments += 1
                continue
            name, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
            elif name == "id":
                self._id, self._has_id = value, True


class SseStream:
    """One connection: `await stream.next()` returns the next event (or raises
    asyncio.TimeoutError / EOFError when the server ended the stream)."""

    def __init__(self, response: aiohttp.ClientResponse, parser: SseParser) -> None:
        self.response = response
        self.parser = parser
        self.pending: list[SseEvent] = []
        self.ended = False

    @property
    def status(self) -> int:
        return self.response.status

    async def next(self, timeout: float = 10.0) -> SseEvent:
        async with asyncio.timeout(timeout):
            while not self.pending:
                chunk = await self.response.content.readany()
                if not chunk:
                    self.ended = True
                    raise EOFError("the server ended the stream")
                self.pending.extend(self.parser.feed(chunk))
        return self.pending.pop(0)

    async def take(self, count: int, timeout: float = 10.0) -> list[SseEvent]:
        return [await self.next(timeout) for _ in range(count)]

    async def until_end(self, timeout: float = 10.0) -> list[SseEvent]:
        """Every event until the server ends the stream."""
        events: list[SseEvent] = []
        try:
            while True:
                events.append(await self.next(timeout))
        except EOFError:
            return events

    async def wait_open(self, timeout: float = 10.0) -> None:
        """Until the server's first comment (`: connected`): the subscription is registered."""
        async with asyncio.timeout(timeout):
            while self.parser.comments == 0:
                chunk = await self.response.content.readany()
                if not chunk:
                    raise EOFError("the server ended the stream")
                self.pending.extend(self.parser.feed(chunk))

    def close(self) -> None:
        self.response.close()


async def connect(
    session: aiohttp.ClientSession,
    url: str,
    *,
    last_event_id: str | None = None,
    headers: dict[str, str] | None = None,
    wait_open: bool = True,
) -> SseStream:
    """GET `url` as an event stream; a non-200 answer is returned unread (check `.status`)."""
    sent = {"Accept": "text/event-stream", **(headers or {})}
    if last_event_id is not None:
        sent["Last-Event-ID"] = last_event_id
    response = await session.get(url, headers=sent, timeout=aiohttp.ClientTimeout(total=None))
    stream = SseStream(response, SseParser(last_id=last_event_id))
    if response.status == 200 and wait_open:
        await stream.wait_open()
    return stream
